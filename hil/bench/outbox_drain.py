"""Benchmark: the outbox drain after a day offline — 5 000 entry records queued for three destinations (the lot's
back office over the webhook, XFT and tdzn, each an emulator on the rig), uploaded once they are reachable again.

How the backlog is made: the store is filled directly, before the daemon starts (one transaction through the
store's own commit path: the records as a lane writes them, each with its outbox row per destination, stamped
over the past 24 hours), so the daemon starts with the whole backlog due, as it finds it when the network comes
back. Then the daemon (its own process) runs with the three emulators up, each destination at its configured
rate limit. Per destination: drain time = from its first upload to its last, plus one interval (1 / rate), read
from the outbox rows' done_at; the ideal = records ÷ rate; the figure = drain ÷ ideal (goal <= 1.05).

Not included: after a real outage the relay only learns that a destination is back at its head item's next
retry, up to the backoff cap (service/outbox.py Backoff.cap_s) after the network returns; that wait comes on top.

    python -m hil.bench.outbox_drain [--records 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hil.bench.figures import Figure, Figures, ratio_at_most
from hil.daemon_process import DaemonProcess
from hil.emulators.backoffice import Backoffice
from hil.emulators.barrier_io import Physics
from hil.platforms import Platforms
from hil.rig import Rig, RigLane

RATES = {"webhook": 100.0, "xft": 100.0, "tdzn": 50.0}  # uploads per second, as configured for the daemon
LANE = "in1"


@dataclass(frozen=True)
class Drain:
    destination: str
    records: int
    rate: float
    first: float  # epoch seconds of the first and the last upload marked done
    last: float
    done: int

    @property
    def seconds(self) -> float:
        return self.last - self.first + 1 / self.rate

    @property
    def ideal(self) -> float:
        return self.records / self.rate

    def line(self) -> str:
        return (f"  {self.destination:8} {self.done:5d} of {self.records} uploaded at {self.rate:g}/s: "
                f"{self.seconds:7.1f} s, ideal {self.ideal:7.1f} s, ratio {self.seconds / self.ideal:.3f}")


async def fill(database: Path, records: int) -> None:
    """The backlog: `records` entries at lane in1 over the past 24 h, queued for every destination."""
    from lanectl.adapters.store import SqliteStore
    from lanectl.core import effects as fx
    from lanectl.core.lane import LaneState, make_id

    store = SqliteStore(database, destinations=tuple(RATES))
    await store.open()
    try:
        now = datetime.now(ZoneInfo("Asia/Shanghai"))
        effects: list[fx.Effect] = []
        for seq in range(1, records + 1):
            at = now - timedelta(hours=24) + timedelta(seconds=seq * 86400 / records)
            record_id = make_id(LANE, at, seq)
            effects.append(fx.NewRecord(record_id, LANE, "entry", f"粤E{seq:05d}", "blue", at.isoformat(), "inside",
                                        "temporary", "temporary"))
            effects.append(fx.Publish(record_id, "entry"))
        await store.commit_lane(LANE, LaneState(seq=records).to_dict(), effects, now)
    finally:
        await store.close()


def progress(database: Path) -> dict[str, tuple[int, int, float, float]]:
    """destination -> (done, pending, first done_at, last done_at) as epoch seconds."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        out = {}
        for dest in RATES:
            done, first, last = conn.execute("SELECT COUNT(*), MIN(done_at), MAX(done_at) FROM outbox WHERE "
                                             "destination=? AND status='done'", (dest,)).fetchone()
            pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE destination=? AND status='pending'",
                                   (dest,)).fetchone()[0]
            stamp = (lambda s: datetime.fromisoformat(s).timestamp() if s else 0.0)
            out[dest] = (done, pending, stamp(first), stamp(last))
        return out
    finally:
        conn.close()


async def measure(records: int) -> list[Drain]:
    workdir = Path(tempfile.mkdtemp(prefix="lanectl-drain-", dir="/tmp"))
    platforms = await Platforms(("xft", "tdzn")).start()
    office = Backoffice()
    await office.start()
    rig = Rig(workdir, [RigLane(LANE, "entry", 1)], baudrate=None, physics=Physics(rise_s=0.05, fall_s=0.05),
              led_boards=False, barrier_tcp=True, secrets=platforms.secrets(),
              lane_extra=platforms.lane_extra(exit_lanes=()),
              site_overrides={**platforms.site(),
                              "uploads": {"webhook": {"url": office.url, "rate_per_s": RATES["webhook"]}}})
    await rig.start()
    socket = workdir / "control.sock"
    config = rig.write_config(workdir / "etc", socket)
    _set_rates(config)
    database = workdir / "lanectl.db"
    daemon = DaemonProcess(config, socket, workdir / "daemon.log", log_level="WARNING")
    try:
        await fill(database, records)
        await daemon.start()
        if platforms.http_port:
            platforms.connect(platforms.http_port)
        deadline = time.monotonic() + records / min(RATES.values()) * 2 + 60
        while True:
            state = progress(database)
            if all(pending == 0 for _, pending, _, _ in state.values()):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the outbox did not drain: {state}; see {workdir / 'daemon.log'}")
            await asyncio.sleep(0.5)
    finally:
        await daemon.stop()
        await rig.stop()
        await office.stop()
        await platforms.stop()
    shutil.rmtree(workdir, ignore_errors=True)  # kept when the run failed
    return [Drain(dest, records, RATES[dest], first, last, done) for dest, (done, _, first, last) in state.items()]


def _set_rates(config: Path) -> None:
    """The platforms' rate limits in the site file (the webhook's is written with its section)."""
    import yaml

    site = yaml.safe_load((config / "site.yaml").read_text())
    for name in ("xft", "tdzn"):
        site["payments"][name]["rate_per_s"] = RATES[name]
    (config / "site.yaml").write_text(yaml.safe_dump(site, allow_unicode=True, sort_keys=False))


def figures_of(drains: list[Drain]) -> Figures:
    return {f"{d.destination}: {d.records:,} records at {d.rate:g}/s, drain vs records / rate":
            Figure(d.seconds, "s", d.ideal, "ratio <= 1.05", ratio_at_most(1.05)) for d in drains}


async def figures(smoke: bool = False) -> dict[str, Figures]:
    records = 60 if smoke else 5000
    print(f"outbox drain: {records} entry records queued for {', '.join(RATES)} over the past 24 h")
    drains = await measure(records)
    print("\n".join(d.line() for d in drains), flush=True)
    return {"outbox drain": figures_of(drains)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000)
    args = ap.parse_args()
    drains = asyncio.run(measure(args.records))
    print("\n".join(d.line() for d in drains))


if __name__ == "__main__":
    main()
