"""Benchmark: two booths on one real Mosquitto, the broker stopped mid-run (issue 17 "Done when").

Booth A runs the entry lanes (in1, in2), booth B the exit lanes (out1, out2): each its own `lanectl run` process,
its own SQLite database and its own rig (pty serial lines, Modbus barrier emulator with physics, cameras). The
bench starts Mosquitto itself (hil/mosquitto.py: password file + ACL on a free loopback port; persistence on and
set_tcp_nodelay, as docs/site-bus.md sets up a lot's broker: the booths' sessions survive its restart). Cars enter at A,
stay a few seconds and leave at B; the exit is free within the tariff's free minutes when B knows the entry, and
costs the no-entry fee (the barrier stays down: the car is counted unmatched) when it does not.

When a third of the cars have entered the broker is stopped for --outage-s seconds. Cars keep entering at A and
leaving at B meanwhile: the lanes never wait for the bus. What the bench expects of the exits (decided, and
printed with the figures): a car whose entry was made before the broker stopped (at least 1 s before) may leave
during the outage, since B already holds its entry; a car that entered during the outage (or in its last second
before) stays parked until the queued records have caught up after the broker is back, then leaves. So every exit
is expected to find its own entry; an exit at B before its entry arrived would be decided locally as a car with
no entry record (docs/site-bus.md, Replication) and is counted separately here.

Figures:
  * exits matched to their own entry: the exit record at B carries the entry record id made at A
  * records lost: messages of each booth (its outbox, numbered per booth) the other booth does not hold at the end
  * duplicates: a car entered twice at A, left twice at B, or two exits on one entry
  * replication lag (booth's record committed -> the other booth holds it and every earlier one), outside the
    outage, sampled by reading both databases every 5 ms (goal p99 <= 50 ms)
  * catch-up: broker back -> every record queued during the outage sent by its booth's outbox and held by the other
    booth (a catch-up answer can bring them there sooner; the booth's own relay may still be in its backoff)
  * a forged, an expired and a replayed remote open to A are refused, nothing opened by them (a genuine open,
    sent once, is the control: it opens, and its replay does not)

    python -m hil.bench.site_bus [--cars 200] [--outage-s 60] [--seed S]

Exit status 0 when every figure meets its goal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import asyncio
import random
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from hil.bench.figures import Figure, Figures, value_at_most
from hil.daemon_process import DaemonProcess
from hil.emulators.barrier_io import Physics
from hil.mosquitto import Mosquitto
from hil.rig import Rig, RigLane

PARK = "demo"
LAG_GOAL_MS = 50.0
SAMPLE_S = 0.005
POLL_MS = 10  # the daemons poll the barrier modules' inputs this often
SETTLE_S = 1.0  # an entry made this close before the broker stops is treated as made during the outage
# Mosquitto leaves Nagle's algorithm on by default: a small packet (a PUBACK, a forwarded record) can then wait
# for the peer's delayed ACK, about 40 ms on Linux. A lot's broker should set this (docs/site-bus.md).
NODELAY = "set_tcp_nodelay true\n"
ENTRY_LANES = ("in1", "in2")
EXIT_LANES = ("out1", "out2")


def acl(users: list[str]) -> str:
    return "".join(f"user {u}\ntopic readwrite lanectl/#\n" for u in users)


@dataclass
class Booth:
    name: str
    rig: Rig
    daemon: DaemonProcess
    db: Path
    _ro: Optional[sqlite3.Connection] = None

    def read(self) -> sqlite3.Connection:
        """A read-only connection to the booth's database (WAL: never in the daemon's way)."""
        if self._ro is None:
            self._ro = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, check_same_thread=False)
            self._ro.row_factory = sqlite3.Row
        return self._ro

    def holds_of(self, other: str) -> int:
        row = self.read().execute("SELECT upto FROM site_peers WHERE booth=?", (other,)).fetchone()
        return row["upto"] if row else 0

    def messages(self) -> list[tuple[int, float]]:
        """(seq, unix time the record was committed) of every message this booth queued for the bus."""
        return [(r["seq"], datetime.fromisoformat(r["created_at"]).timestamp()) for r in self.read().execute(
            "SELECT seq, created_at FROM outbox WHERE destination='site_bus' ORDER BY seq")]

    def max_seq(self) -> int:
        row = self.read().execute("SELECT COALESCE(MAX(seq), 0) AS n FROM outbox WHERE destination='site_bus'")
        return row.fetchone()["n"]

    def pending(self, upto: int) -> int:
        """How many of this booth's messages up to seq `upto` its outbox has not sent yet."""
        return self.read().execute("SELECT COUNT(*) FROM outbox WHERE destination='site_bus' AND status='pending' "
                                   "AND seq <= ?", (upto,)).fetchone()[0]

    def close(self) -> None:
        if self._ro is not None:
            self._ro.close()


@dataclass
class Run:
    cars: list[str]
    outage_s: float
    entered: dict[str, float] = field(default_factory=dict)  # plate -> unix time its entry barrier opened
    exited: dict[str, float] = field(default_factory=dict)
    not_let_in: list[str] = field(default_factory=list)
    not_let_out: list[str] = field(default_factory=list)
    t_stop: Optional[float] = None
    t_back: Optional[float] = None
    t_caught_up: Optional[float] = None
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    first_held: dict[tuple[str, int], float] = field(default_factory=dict)  # (booth, seq) -> when the other held it

    def waits_for_catch_up(self, plate: str) -> bool:
        """Entered during the outage (or just before it): leaves only once the records have caught up."""
        return self.t_stop is not None and self.entered[plate] >= self.t_stop - SETTLE_S and not self.caught_up.is_set()


async def start_booth(root: Path, name: str, lanes: list[RigLane], broker: Mosquitto, password: str,
                      site_key: str) -> Booth:
    workdir = root / name
    workdir.mkdir(parents=True)
    site_bus = {"enabled": True, "booth_id": name, "brokers": [broker.uri], "username": f"booth{name}",
                "password": {"secret": "bus_password"}, "keepalive_s": 5, "site_key": {"secret": "site_key"}}
    # free for half an hour: a car B knows leaves at once; one it does not know owes the no-entry fee and waits
    tariffs = {"default": {"free_minutes": 30, "first_minutes": 60, "first_fen": 500, "increment_minutes": 60,
                           "increment_fen": 100, "no_entry": "fixed", "no_entry_fen": 1000}}
    rig = Rig(workdir, lanes, baudrate=9600, physics=Physics(rise_s=0.2, fall_s=0.2), led_boards=False,
              poll_ms=POLL_MS,
              site_overrides={"park_id": PARK, "site_bus": site_bus, "tariffs": tariffs,
                              "vehicles": {"whitelist": {}, "blacklist": {}, "stored_value": {}}},
              secrets={"bus_password": password, "site_key": site_key})
    await rig.start()
    socket = workdir / "control.sock"
    config = rig.write_config(workdir / "etc", socket)
    daemon = DaemonProcess(config, socket, workdir / "daemon.log",
                           log_level=os.environ.get("SITE_BUS_BENCH_LOG", "WARNING"))  # DEBUG: the daemons' detail
    await daemon.start()
    return Booth(name, rig, daemon, workdir / "lanectl.db")


async def sample(a: Booth, b: Booth, run: Run) -> None:
    """When each booth first held each of the other's messages (site_peers.upto: every message up to it)."""
    held = {"A": 0, "B": 0}
    while True:
        now = time.time()
        for mine, other in ((a, b), (b, a)):
            try:
                upto = other.holds_of(mine.name)
            except sqlite3.OperationalError:  # busy for a moment: the next sample reads it
                continue
            for seq in range(held[mine.name] + 1, upto + 1):
                run.first_held[(mine.name, seq)] = now
            held[mine.name] = max(held[mine.name], upto)
        await asyncio.sleep(SAMPLE_S)


async def outage(broker: Mosquitto, a: Booth, b: Booth, run: Run, trigger: int) -> None:
    while len(run.entered) < trigger:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(broker.stop)  # off the loop: the rigs' emulators run on it
    run.t_stop = time.time()
    print(f"  broker stopped after {len(run.entered)} entries; {run.outage_s:g} s outage", flush=True)
    await asyncio.sleep(run.outage_s)
    targets = {a.name: a.max_seq(), b.name: b.max_seq()}  # queued before the broker is back
    await asyncio.to_thread(broker.start)
    run.t_back = time.time()
    # caught up: each booth's queued records sent by its own outbox (not only answered to a catch-up request: its
    # relay may still be waiting out the backoff of the outage, and new records would queue behind) and held by
    # the other booth
    while not (b.holds_of("A") >= targets["A"] and a.holds_of("B") >= targets["B"]
               and not a.pending(targets["A"]) and not b.pending(targets["B"])):
        await asyncio.sleep(SAMPLE_S)
    run.t_caught_up = time.time()
    run.caught_up.set()


async def drive(a: Booth, b: Booth, run: Run, stay_s: float, rng: random.Random) -> None:
    arrivals: asyncio.Queue[str] = asyncio.Queue()
    leaving: asyncio.Queue[str] = asyncio.Queue()
    for plate in run.cars:
        arrivals.put_nowait(plate)
    stays: list[asyncio.Task[None]] = []

    async def stay(plate: str) -> None:
        await asyncio.sleep(stay_s * rng.uniform(0.5, 1.5))
        if run.waits_for_catch_up(plate):
            await run.caught_up.wait()
        leaving.put_nowait(plate)

    async def entry_lane(lane: str) -> None:
        while not arrivals.empty():
            plate = arrivals.get_nowait()
            result = await a.rig.car(lane, plate, wait_open_s=8.0, drive_s=0.05, on_safety_s=0.2)
            if result.passed:
                run.entered[plate] = time.time()
                stays.append(asyncio.create_task(stay(plate)))
            else:
                run.not_let_in.append(plate)
            await a.rig.wait_down(lane, timeout=5.0)

    async def exit_lane(lane: str) -> None:
        while True:
            plate = await leaving.get()
            try:
                result = await b.rig.car(lane, plate, wait_open_s=5.0, drive_s=0.05, on_safety_s=0.2)
                if result.passed:
                    run.exited[plate] = time.time()
                else:
                    run.not_let_out.append(plate)
                await b.rig.wait_down(lane, timeout=5.0)
            finally:
                leaving.task_done()

    exits = [asyncio.create_task(exit_lane(lane)) for lane in EXIT_LANES]
    await asyncio.gather(*(entry_lane(lane) for lane in ENTRY_LANES))
    await asyncio.gather(*stays)
    await leaving.join()
    for task in exits:
        task.cancel()
    await asyncio.gather(*exits, return_exceptions=True)


# ------------------------------------------------------------------------------------------ remote commands
async def remote_opens(broker: Mosquitto, console_password: str, site_key: str, a: Booth) -> dict[str, Any]:
    """A forged (wrong key), an expired and a replayed open to A's in1, and one genuine open (the control)."""
    from lanectl.adapters.mqtt_bus import MqttBus
    from lanectl.config.base import SecretRef
    from lanectl.config.site_bus import SiteBusConfig
    from lanectl.protocols.site_commands import CommandRefused, RemoteCommand, decode_reply, encode
    from lanectl.service.site_bus import topic

    key = site_key.encode()
    replies: dict[str, dict[str, Any]] = {}

    async def on_reply(_topic: str, payload: bytes) -> None:
        try:
            reply = decode_reply(payload, {"site": key})  # signed by the booth with the site key
        except CommandRefused:
            return  # not a booth's answer: the command it should answer then times out, and the bench fails
        replies[reply["id"]] = reply

    cfg = SiteBusConfig(enabled=True, booth_id="console1", brokers=(broker.uri,), username="console",
                        password=SecretRef(env="UNUSED"), keepalive_s=5)
    bus = MqttBus(cfg, PARK, password=console_password, client_id="bench-console", presence=False,
                  retry_min_s=0.05, retry_max_s=0.5)
    bus.subscribe(topic(PARK, "console1", "replies", "+"), on_reply)
    task = asyncio.create_task(bus.run())

    def command(reason: str, issued: int, expires: int) -> RemoteCommand:
        return RemoteCommand(id=str(uuid.uuid4()), kind="open", booth="A", operator="bench", reason=reason,
                             issued_at=issued, expires_at=expires, issuer="console1", key_id="site", lane="in1")

    async def send(cmd: RemoteCommand, payload: bytes, again: bool = False) -> dict[str, Any]:
        if again:
            replies.pop(cmd.id, None)
        await bus.publish(topic(PARK, "A", "commands"), payload, qos=1)
        async with asyncio.timeout(10):
            while cmd.id not in replies:
                await asyncio.sleep(0.01)
        return replies[cmd.id]

    try:
        async with asyncio.timeout(10):
            while not bus.connected:
                await asyncio.sleep(0.02)
        now = int(time.time())
        forged = command("bench: forged", now, now + 30)
        expired = command("bench: expired", now - 120, now - 60)
        genuine = command("bench: genuine", now, now + 30)
        genuine_bytes = encode(genuine, key)
        outcome = {
            "forged": (await send(forged, encode(forged, b"not-the-site-key-" + secrets.token_bytes(8)))),
            "expired": await send(expired, encode(expired, key)),
            "genuine": await send(genuine, genuine_bytes),
        }
        outcome["replayed"] = await send(genuine, genuine_bytes, again=True)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    opens = {r["reason"]: r["n"] for r in a.read().execute(
        "SELECT reason, COUNT(*) AS n FROM barrier_actions WHERE command='open' AND operator LIKE '%@console1' "
        "GROUP BY reason")}
    return {"replies": outcome, "opens": opens}


# ---------------------------------------------------------------------------------------------------- figures
def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def report(a: Booth, b: Booth, run: Run, remote: dict[str, Any], status: dict[str, Any],
           fig: Optional[Figures] = None) -> bool:
    """Print the figures (a line that misses its goal says FAILS); True if every goal is met. `fig` collects them
    for `python -m hil.bench all`."""
    ok = True
    fig = {} if fig is None else fig

    def line(text: str, good: bool = True) -> None:
        nonlocal ok
        ok = ok and good
        print(f"  {text}{'' if good else '   <-- FAILS'}")

    n = len(run.cars)
    entries = {r["plate"]: r for r in a.read().execute("SELECT * FROM records WHERE kind='entry'")}
    entry_rows = a.read().execute("SELECT plate, COUNT(*) AS n FROM records WHERE kind='entry' GROUP BY plate")
    exit_rows = list(b.read().execute("SELECT * FROM records WHERE kind='exit'"))
    exits: dict[str, list[sqlite3.Row]] = {}
    for r in exit_rows:
        exits.setdefault(r["plate"], []).append(r)
    matched = sum(1 for p in run.cars if p in entries and len(exits.get(p, [])) == 1
                  and exits[p][0]["entry_record_id"] == entries[p]["record_id"] and p in run.exited)
    no_entry = sum(1 for r in exit_rows if not r["entry_record_id"])
    during = [p for p, t in run.exited.items() if run.t_stop and run.t_back and run.t_stop <= t <= run.t_back]
    entered_during = [p for p, t in run.entered.items() if run.t_stop and run.t_back and run.t_stop <= t <= run.t_back]
    print(f"two booths on one Mosquitto (loopback): A = entry lanes {', '.join(ENTRY_LANES)}, B = exit lanes "
          f"{', '.join(EXIT_LANES)}, each its own daemon process and database; {n} cars; broker stopped "
          f"{run.outage_s:g} s mid-run")
    print(f"  the outage: {len(entered_during)} cars entered at A and {len(during)} left at B while the broker was "
          f"down; cars that entered during it (or within {SETTLE_S:g} s before) left after the catch-up")
    line(f"exits matched to their own entry: {matched}/{n}", matched == n)
    fig["exits matched to their own entry"] = Figure(matched, "cars", None, f"= {n}", lambda f: f.value == n)
    line(f"exits decided without the entry (no entry record at B): {no_entry}", no_entry == 0)
    if run.not_let_in or run.not_let_out:
        line(f"cars not let in: {len(run.not_let_in)}, not let out: {len(run.not_let_out)}", False)
    lost = {x.name: max(0, x.max_seq() - y.holds_of(x.name)) for x, y in ((a, b), (b, a))}
    line(f"records lost: {sum(lost.values())} (A sent {a.max_seq()}, B holds {b.holds_of('A')}; "
         f"B sent {b.max_seq()}, A holds {a.holds_of('B')})", sum(lost.values()) == 0)
    fig["records lost"] = Figure(sum(lost.values()), "records", None, "= 0", value_at_most(0))
    twice_in = sum(r["n"] - 1 for r in entry_rows if r["n"] > 1)
    twice_out = sum(len(v) - 1 for v in exits.values() if len(v) > 1)
    by_entry: dict[str, int] = {}
    for r in exit_rows:
        if r["entry_record_id"]:
            by_entry[r["entry_record_id"]] = by_entry.get(r["entry_record_id"], 0) + 1
    shared = sum(v - 1 for v in by_entry.values() if v > 1)
    dropped = sum(s.get("duplicate", 0) for s in status.values())
    line(f"duplicates: {twice_in + twice_out + shared} (copies received again by catch-up and dropped: {dropped})",
         twice_in + twice_out + shared == 0)
    fig["duplicates"] = Figure(twice_in + twice_out + shared, "records", None, "= 0", value_at_most(0))
    still_inside = a.read().execute("SELECT COUNT(*) FROM records WHERE kind='entry' AND status='inside'").fetchone()[0]
    line(f"entries closed at A by B's exits: {len(entries) - still_inside}/{len(entries)}", still_inside == 0)

    lags, queued, detail = [], 0, ["booth\tseq\tcommitted\theld_by_other\tlag_ms\n"]
    for booth in (a, b):
        for seq, committed in booth.messages():
            held = run.first_held.get((booth.name, seq))
            if held is None:
                continue
            if run.t_stop is not None and run.t_stop - SETTLE_S <= committed <= (run.t_caught_up or float("inf")):
                queued += 1
                continue
            lags.append(max(0.0, held - committed) * 1000)
            detail.append(f"{booth.name}\t{seq}\t{committed:.6f}\t{held:.6f}\t{lags[-1]:.1f}\n")
    detail.append(f"# broker stopped {run.t_stop}, back {run.t_back}, caught up {run.t_caught_up}\n")
    (a.rig.workdir.parent / "lags.tsv").write_text("".join(detail))  # with --keep: each record's lag
    if lags:
        p50, p99 = pct(lags, 50), pct(lags, 99)
        line(f"replication lag outside the outage ({len(lags)} records, committed -> held by the other booth, "
             f"sampled every {SAMPLE_S * 1000:g} ms): p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(lags):.1f} ms "
             f"(goal p99 <= {LAG_GOAL_MS:g} ms)", p99 <= LAG_GOAL_MS)
        fig["replication lag p99, outside the outage"] = Figure(p99, "ms", None, f"<= {LAG_GOAL_MS:g} ms",
                                                                value_at_most(LAG_GOAL_MS))
    else:
        line("replication lag: no record outside the outage", False)
    if run.t_back is not None and run.t_caught_up is not None:
        line(f"catch-up after the outage: {run.t_caught_up - run.t_back:.2f} s from the broker back to every one of "
             f"the {queued} records queued around the outage sent and held by the other booth")
        fig["catch-up after the outage"] = Figure(run.t_caught_up - run.t_back, "s")
    else:
        line("catch-up after the outage: did not happen", False)

    replies, opens = remote["replies"], remote["opens"]
    for name, code in (("forged", "bad_signature"), ("expired", "expired"), ("replayed", "replayed")):
        reply = replies[name]
        refused = not reply.get("ok") and reply.get("code") == code
        opened = opens.get(f"bench: {name}", 0) + (opens.get("bench: genuine", 0) - 1 if name == "replayed" else 0)
        line(f"{name} remote open: {'refused (' + str(reply.get('code')) + ')' if not reply.get('ok') else 'RUN'}, "
             f"opened {opened}", refused and opened == 0)
        fig[f"{name} remote opens that opened"] = Figure(opened if refused else max(1, opened), "opens", None, "= 0",
                                                         value_at_most(0))
    genuine_opened = opens.get("bench: genuine", 0)
    line(f"genuine remote open (the control): {'ran' if replies['genuine'].get('ok') else 'refused'}, opened "
         f"{genuine_opened}", bool(replies["genuine"].get("ok")) and genuine_opened == 1)
    return ok


async def main_async(n: int, outage_s: float, seed: int, stay_s: float, keep: bool, nodelay: bool = True,
                     base: str = "/tmp", fig: Optional[Figures] = None) -> bool:
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="lc-sb-", dir=base))  # short: control sockets must fit in 107 bytes
    passwords = {u: secrets.token_urlsafe(12) for u in ("boothA", "boothB", "console")}
    site_key = secrets.token_urlsafe(24)
    broker = Mosquitto(root / "mosquitto", users=passwords, acl=acl(list(passwords)),
                       options=NODELAY if nodelay else "", persistence=True)  # as docs/site-bus.md sets a lot's up
    broker.configure()
    broker.start()
    booths: list[Booth] = []
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    cars = [f"粤{rng.choice(letters)}{i:05d}" for i in range(1, n + 1)]
    run = Run(cars, outage_s)
    sampler: Optional[asyncio.Task[None]] = None
    try:
        a = await start_booth(root, "A", [RigLane(lane, "entry", i + 1) for i, lane in enumerate(ENTRY_LANES)],
                              broker, passwords["boothA"], site_key)
        booths.append(a)
        b = await start_booth(root, "B", [RigLane(lane, "exit", i + 1) for i, lane in enumerate(EXIT_LANES)],
                              broker, passwords["boothB"], site_key)
        booths.append(b)
        for booth in booths:  # both on the bus before the first car
            async with asyncio.timeout(20):
                while not (await booth.daemon.client.status()).get("site_bus", {}).get("connected"):
                    await asyncio.sleep(0.05)
        sampler = asyncio.create_task(sample(a, b, run))
        cut = asyncio.create_task(outage(broker, a, b, run, max(1, n // 3)))
        async with asyncio.timeout(n * 5 + outage_s + 120):  # a stuck lane ends the run, not the machine
            await drive(a, b, run, stay_s, rng)
        await asyncio.wait_for(cut, outage_s + 120)
        async with asyncio.timeout(60):  # the last records (the exits' closing snapshots) reach the other booth
            while not (b.holds_of("A") >= a.max_seq() and a.holds_of("B") >= b.max_seq()):
                await asyncio.sleep(0.05)
        remote = await remote_opens(broker, passwords["console"], site_key, a)
        status = {bo.name: (await bo.daemon.client.status()).get("site_replication", {}) for bo in booths}
        return report(a, b, run, remote, status, fig)
    finally:
        if sampler is not None:
            sampler.cancel()
        for booth in booths:
            booth.close()
            try:
                await booth.daemon.stop()
            finally:
                await booth.rig.stop()
        broker.stop()
        if keep:
            print(f"  (kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


async def figures(smoke: bool = False) -> dict[str, Figures]:
    """For `python -m hil.bench all`: 200 cars and a 60 s outage (smoke: 10 cars, 3 s)."""
    fig: Figures = {}
    await main_async(10 if smoke else 200, 3.0 if smoke else 60.0, 17, 1.5 if smoke else 3.0, False, fig=fig)
    return {"site bus, two booths": fig}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cars", type=int, default=200)
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--stay-s", type=float, default=3.0, help="how long a car stays, on average (0.5x-1.5x)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    ap.add_argument("--base", default="/tmp", metavar="DIR",
                    help="where the work directory goes (the databases: their disk's fsync time is in the lag)")
    ap.add_argument("--nagle", action="store_true", help="leave the broker's default (no set_tcp_nodelay)")
    args = ap.parse_args(argv)
    if args.cars < 3 or args.outage_s <= 0:
        ap.error("--cars at least 3, --outage-s above 0")
    return 0 if asyncio.run(main_async(args.cars, args.outage_s, args.seed, args.stay_s, args.keep,
                                       not args.nagle, args.base)) else 1


if __name__ == "__main__":
    sys.exit(main())
