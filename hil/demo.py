"""`python -m hil.demo` (also `scripts/demo` and `lanectl demo`): the real daemon on the built-in simulated lane.

The HIL rig (hil/rig.py) emulates the devices behind real pty serial lines — a Modbus RTU barrier IO module
per lane with barrier physics on one RS-485 bus, a plate camera per lane — writes a configuration pointing the
daemon at them, starts the daemon in this process and plays a scenario (hil/scenarios/demo.yaml): cars
entering and leaving, a refused car, a booth cash payment and operator releases through the control socket
(or the booth console: `--booth-via console|person`, hil/console_booth.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from lanectl.core import effects as fx

BOOTHS = {"socket": "the control socket", "console": "the console's HTTP API (account booth)",
          "person": "YOU, in the console (the demo waits for the barrier)"}


class Printer:
    """One line per happening, time since start, lane column: what an integrator watches on a bench."""

    def __init__(self, out=sys.stdout) -> None:
        self.t0 = time.monotonic()
        self.out = out

    def line(self, who: str, lane: str, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.2f}s] {lane:5} {who:7} {text}", file=self.out, flush=True)

    def rig(self, lane: str, text: str) -> None:
        self.line("rig", lane, text)

    def effects(self, lane: str, effects: list[fx.Effect]) -> None:
        for e in effects:
            if isinstance(e, fx.Log) and e.level != "info" or isinstance(e, fx.Log) and (
                    e.message.startswith(("entry", "exit", "operator", "payment"))):
                fields = " ".join(f"{k}={v}" for k, v in e.fields if k != "lane" and v not in ("", None))
                self.line("lanectl", lane, f"{e.message}: {fields}")
            elif isinstance(e, fx.OpenBarrier):
                who = f" by {e.operator}" if e.operator else ""
                self.line("lanectl", lane, f"OPEN ({e.authority}: {e.reason}{who})")
            elif isinstance(e, fx.CloseBarrier):
                self.line("lanectl", lane, f"CLOSE ({e.reason})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.demo",
                                description="run the daemon on the built-in simulated lane (HIL rig)")
    p.add_argument("--scenario", default="demo", help="scenario name in hil/scenarios or a YAML path")
    p.add_argument("--baud", type=int, default=9600, help="emulate RS-485 line speed (0: off)")
    p.add_argument("--keep", metavar="DIR", help="keep the demo's config and database in DIR")
    p.add_argument("--log-level", default="WARNING", help="daemon log level shown beside the demo output")
    p.add_argument("--booth-via", choices=BOOTHS, default="socket",
                   help="who takes the scenario's booth (operator) steps: socket = the control socket; console = "
                        "the console's HTTP API as account booth (login, CSRF, release); person = you, in the "
                        "console in a browser (the demo says what to do and waits for the barrier)")
    p.add_argument("--booth-cases", action="store_true",
                   help="play only the scenario's booth cases (each operator step with its car and the platform "
                        "steps naming it): a practice run for an operator, e.g. with --booth-via person")
    p.add_argument("--serve", action="store_true",
                   help="keep the daemon and the rig running after the scenario (the console stays up) until Ctrl-C")
    p.add_argument("--console-listen", metavar="HOST:PORT", default="",
                   help="where the LAN face serving the console listens (default: 127.0.0.1 on a free port; "
                        "0.0.0.0:8080 lets the other machines of the LAN in)")
    args = p.parse_args(argv)
    try:
        return run_demo(scenario=args.scenario, baud=args.baud or None, keep=args.keep, log_level=args.log_level,
                        booth_via=args.booth_via, serve=args.serve, console_listen=args.console_listen,
                        only_booth_cases=args.booth_cases)
    except KeyboardInterrupt:
        return 130


def run_demo(*, scenario: str = "demo", baud: Optional[int] = 9600, keep: Optional[str] = None,
             log_level: str = "WARNING", booth_via: str = "socket", serve: bool = False,
             console_listen: str = "", only_booth_cases: bool = False) -> int:
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    from hil.scenario import ScenarioError, booth_cases, load_scenario
    try:
        scn = load_scenario(scenario)
        scn = booth_cases(scn) if only_booth_cases else scn
    except ScenarioError as exc:
        print(f"lanectl demo: {exc}", file=sys.stderr)
        return 2
    # unix socket paths are short (~107 bytes): keep the rig under /tmp unless told otherwise
    workdir = Path(keep).resolve() if keep else Path(tempfile.mkdtemp(prefix="lanectl-demo-", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_demo(scn, workdir, baud, booth_via=booth_via, serve=serve,
                                 console_listen=console_listen))
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def console_accounts(etc: Path) -> dict[str, tuple[str, str]]:
    """The demo's console accounts, fresh passwords each run: name -> (role, password), written (scrypt hashed)
    to the console's users file in the demo's configuration."""
    from lanectl.adapters.console.accounts import User, hash_password, write_users
    accounts = {"booth": ("operator", secrets.token_urlsafe(9)), "chief": ("supervisor", secrets.token_urlsafe(9))}
    write_users(etc / "console-users.yaml",
                {name: User(name, role, hash_password(password)) for name, (role, password) in accounts.items()})
    return accounts


def console_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()  # every address of this machine: name it the way the LAN does
    return f"http://{host}:{port}/console/"


async def _demo(scn, workdir: Path, baud: Optional[int], *, booth_via: str = "socket", serve: bool = False,
                console_listen: str = "") -> int:
    from hil.console_booth import ConsoleBooth, PersonAtTheConsole
    from hil.emulators.backoffice import Backoffice
    from hil.platforms import Platforms, free_port
    from hil.rig import Rig
    from hil.scenario import ScenarioPlayer
    from lanectl.adapters.control_client import ControlClient
    from lanectl.bootstrap import build_app
    from lanectl.config import load_config

    lan: dict[str, str] = {}  # the rig's own choice (127.0.0.1, a free port) unless told where the LAN face listens
    lan_port = 0
    if console_listen:
        host, _, port = console_listen.rpartition(":")
        if not port.isdigit() or int(port) > 65535:
            print(f"lanectl demo: --console-listen {console_listen!r}: expected HOST:PORT, e.g. 0.0.0.0:8080",
                  file=sys.stderr)
            return 2
        lan_port = int(port) or free_port()
        lan = {"listen": f"{host or '127.0.0.1'}:{lan_port}"}
    printer = Printer()
    print(f"lanectl demo — scenario {scn.name!r}: {scn.description.strip()}")
    print(f"rig in {workdir}; serial lines at {baud or 'unpaced'} baud; daemon config in {workdir / 'etc'}\n")
    office = Backoffice()  # the lot's back office: every record is uploaded to it through the outbox
    await office.start()
    platforms = await Platforms(scn.platforms).start()  # payment platform emulators (Bolink ...)
    # the booth console on the LAN face (never the platforms' face), with the demo's two accounts
    site = {"uploads": {"webhook": {"url": office.url, "rate_per_s": 5}}, **platforms.site(),
            "console": {"enabled": True}, **({"lan": lan} if lan else {}), **scn.site}
    rig = Rig(workdir, scn.lanes, baudrate=baud, say=printer.rig, site_overrides=site,
              board_said=lambda lane, text: printer.line("board", lane, text),
              lane_extra=platforms.lane_extra() if scn.platforms else {}, secrets=platforms.secrets(),
              lan_port=lan_port)  # the rig's HTTP cameras push to the same LAN face
    await rig.start()
    control_socket = workdir / "control.sock"
    etc = rig.write_config(workdir / "etc", control_socket)
    accounts = console_accounts(etc)
    config = load_config(etc)
    if scn.inside:
        await rig.seed_inside(config.site.database, scn.inside)
        for car in scn.inside:
            printer.rig(str(car["lane"]), f"{car['plate']} has been parked for {car.get('minutes_ago', 180)} min")
    app = build_app(config, on_effects=printer.effects)
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    booth: Optional[ConsoleBooth] = None
    try:
        await asyncio.wait_for(app.ready.wait(), 15)
        platforms.connect(app.http.port)
        assert app.lan is not None
        url = console_url(config.site.lan.host, app.lan.port)
        print(f"booth console: {url}")
        for name, (role, password) in accounts.items():
            print(f"  account {name:6} password {password}  ({role})")
        print(f"the scenario's booth steps go through {BOOTHS[booth_via]}\n")
        control = ControlClient(str(control_socket))
        if booth_via == "console":
            booth = ConsoleBooth(f"http://127.0.0.1:{app.lan.port}", "booth", accounts["booth"][1])
            await booth.login()
        person = PersonAtTheConsole(printer.rig, rig.wait_open, url) if booth_via == "person" else None
        player = ScenarioPlayer(rig, control, platforms=platforms, booth=booth or person or control)
        outcomes = await player.play(scn)
        await player.settle()
        records = await app.store.records(limit=100)
        actions = await app.store.barrier_actions(limit=100)
        for _ in range(50):  # let the outbox finish its last uploads
            if not (await app.store.outbox_summary())["pending"]:
                break
            await asyncio.sleep(0.1)
        code = _report(rig, office, platforms, records, actions, outcomes)
        if serve:
            print(f"\nthe daemon keeps running (--serve): console {url} (accounts above); Ctrl-C stops it")
            done = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):  # either one: stop and clean up (also when SIGINT is
                asyncio.get_running_loop().add_signal_handler(sig, done.set)  # ignored, as in a background job)
            await done.wait()
        return code
    finally:
        if booth is not None:
            await booth.close()
        stop.set()
        await asyncio.wait_for(daemon, 15)
        await rig.stop()
        await office.stop()
        await platforms.stop()


def _report(rig, office, platforms, records, actions, outcomes) -> int:

    print("\nrecords in the local store (newest first):")
    for r in records:
        paid = f" paid {r['paid_fen'] / 100:.2f}" if r["paid_fen"] else ""
        due = f" due {r['due_fen'] / 100:.2f}" if r["due_fen"] else ""
        picture = f"  picture {Path(r['image']).name}" if r.get("image") else ""
        by = f" by {r['operator']}" if r.get("operator") else ""
        print(f"  {r['record_id']:28} {r['kind']:7} {r['plate'] or '(none)':9} {r['status']:17}"
              f" {r['reason']}{by}{due}{paid}{picture}")
    opens = [a for a in actions if a["command"] == "open"]
    print(f"\nbarrier commands: {len(opens)} OPEN, {len(actions) - len(opens)} CLOSE, all written ahead "
          f"(statuses: {sorted({a['status'] for a in actions})})")
    assert rig.io is not None
    hits = sum(b.arm_hits for b in rig.io.barriers.values())
    refused = sum(b.close_refused for b in rig.io.barriers.values())
    print(f"barrier emulator: arm hits {hits}, CLOSE refused while occupied {refused}")
    shown = {lane: len(board.outputs) for lane, board in rig.boards.items()}
    bad = sum(len(board.rejected) + board.stats.bad_crc for board in rig.boards.values())
    print(f"LED/voice boards: messages decoded {shown}, frames rejected or bad CRC {bad}")
    kinds = [r.kind for r in office.received]
    print(f"back office: {len(kinds)} uploads received through the outbox "
          f"({kinds.count('entry')} entries, {kinds.count('exit')} exits, {kinds.count('release')} releases)")
    if platforms.bolink is not None:
        orders = list(platforms.bolink.orders.values())
        uploads = [u.path.rsplit("/", 1)[-1] for u in platforms.bolink.uploads]
        print(f"bolink platform: {len(orders)} orders ({sum(o.status == 'paid' for o in orders)} paid by the "
              f"platform), uploads: " + ", ".join(f"{p} ×{uploads.count(p)}" for p in sorted(set(uploads))) +
              f"; pushes acknowledged {sum(p.acked for p in platforms.bolink.pushes)}/{len(platforms.bolink.pushes)}")
    if platforms.xft is not None:
        x = platforms.xft
        print(f"xft platform: {len(x.entries)} entries reported (entry/v2), {len(x.orders)} exit orders "
              f"({sum(o.state == '00' for o in x.orders.values())} paid), notifies acknowledged "
              f"{sum(n.acked for n in x.notifies)}/{len(x.notifies)}, calls {dict(x.calls)}")
    if platforms.tdzn is not None:
        t = platforms.tdzn
        print(f"tdzn platform: {len(t.entries)} enterNotify, {len(t.leaves)} leaveNotify (with pay orders), "
              f"{len(t.bills)} preLeaveNotify bills ({sum(b.paid for b in t.bills.values())} paid); "
              f"calls to the lane: {sum(v for k, v in t.counters.items() if k.startswith('out:'))}")
    failed = [o for o in outcomes if not o.ok]
    print("\nscenario:")
    for o in outcomes:
        print(f"  {'ok ' if o.ok else 'FAIL'} step {o.index}: {o.what}: expected {o.expected}, got {o.got}")
    ok = not failed and hits == 0 and refused == 0
    print(f"\n{'demo finished: every step behaved as expected' if ok else 'demo finished WITH FAILURES'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
