"""Benchmark: plate line written → OPEN coil seen, for a Bolink sign-free (wallet) exit, against the platform
emulator answering at once and after 200 ms.

The reference is a free exit (whitelisted car) at the same lane in the same run: same wire, same lane, no
platform. What the daemon adds on top of the platform's answer time is

    overhead = p50(sign-free exit) - p50(free exit) - the platform's answer delay

(the settlement's attempt written ahead, the signed 3.2 request and its answer over local HTTP, the payment
confirmed to the lane, the commit). The daemon runs as its own process at 9600-baud line emulation.

    python -m hil.bench.signfree_exit [--cars 20]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
from pathlib import Path

from hil.bench.figures import Figure, Figures, over_baseline_at_most, percentile
from hil.daemon_process import DaemonProcess
from hil.emulators import bolink as emu
from hil.emulators.barrier_io import Physics
from hil.platforms import BOLINK_PARK, Platforms
from hil.rig import Rig, RigLane


def plates(prefix: str, n: int) -> list[str]:
    return [f"粤{prefix}{10000 + i:05d}" for i in range(n)]


async def exits(rig: Rig, cars: list[str]) -> list[float]:
    latencies = []
    for plate in cars:
        result = await rig.car("out1", plate, wait_open_s=10.0, drive_s=0.05, on_safety_s=0.2)
        if not result.opened:
            raise SystemExit(f"{plate} was not let out")
        latencies.append(result.t_open - result.t_plate)
        await rig.wait_down("out1", timeout=5.0)
        await asyncio.sleep(0.5)  # the next car meets a lane at rest
    return latencies


async def measure(n: int, baud: int) -> tuple[list[float], list[float], list[float]]:
    """Latencies (s) of free exits (the reference), sign-free exits answered at once, after 200 ms."""
    workdir = Path(tempfile.mkdtemp(prefix="lanectl-bench-", dir="/tmp"))
    free, at_once, slow = plates("F", n), plates("G", n), plates("H", n)
    platforms = await Platforms(("bolink",), window_s=30.0).start()
    assert platforms.bolink is not None
    rig = Rig(workdir, [RigLane("in1", "entry", 1), RigLane("out1", "exit", 2)], baudrate=baud,
              physics=Physics(rise_s=0.05, fall_s=0.05),
              site_overrides={**platforms.site(), "vehicles": {"whitelist": {p: {} for p in free}}},
              lane_extra={"out1": {"payments": ["bolink"], "channel_id": "A1"}}, secrets=platforms.secrets())
    await rig.start()
    socket = workdir / "control.sock"
    config = rig.write_config(workdir / "etc", socket)
    await rig.seed_inside(workdir / "lanectl.db", [{"plate": p, "lane": "in1", "minutes_ago": 30}
                                                  for p in at_once + slow])
    daemon = DaemonProcess(config, socket, workdir / "daemon.log", log_level="WARNING")
    try:
        await daemon.start()
        platforms.connect((await daemon.client.status())["http_port"])
        for plate in at_once + slow:
            platforms.bolink.sign_free.add(plate)
            platforms.bolink.scripts[plate] = emu.pay_now() if plate in at_once else emu.slow(0.2, emu.pay_now())
            entry = next(r for r in await daemon.client.records(plate=plate) if r["kind"] == "entry")
            await platforms.bolink.push_notice_car_owner(BOLINK_PARK, plate, order_id=entry["record_id"])
        await asyncio.sleep(0.5)
        reference = await exits(rig, free)
        now = await exits(rig, at_once)
        later = await exits(rig, slow)
    finally:
        await daemon.stop()
        await rig.stop()
        await platforms.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return reference, now, later


def report(n: int, baud: int, reference: list[float], now: list[float], later: list[float]) -> None:
    def p50(xs: list[float]) -> float:
        return statistics.median(xs) * 1000

    def p95(xs: list[float]) -> float:
        return sorted(xs)[min(len(xs) - 1, int(len(xs) * 0.95))] * 1000

    print(f"sign-free exit, plate line written -> OPEN coil seen, {n} cars each, {baud} baud, daemon as its own "
          f"process, Bolink emulator on local HTTP")
    print(f"  free exit (reference, no platform):   p50 {p50(reference):7.1f} ms   p95 {p95(reference):7.1f} ms")
    for label, xs, delay in (("platform answers at once:", now, 0.0), ("platform answers after 200 ms:", later, 200.0)):
        overhead = p50(xs) - p50(reference) - delay
        print(f"  {label:38} p50 {p50(xs):7.1f} ms   p95 {p95(xs):7.1f} ms   daemon overhead on top of the "
              f"platform: {overhead:6.1f} ms ({p50(xs) / p50(reference):4.2f}x the free exit)")


async def figures(smoke: bool = False) -> dict[str, Figures]:
    """The overhead on top of the platform's answer at p99: value = p99 less the platform's delay, baseline =
    the free exit's p99 in the same run."""
    n = 3 if smoke else 20
    reference, now, later = await measure(n, 9600)
    report(n, 9600, reference, now, later)
    base = percentile(reference, 0.99) * 1000
    return {"sign-free exit": {
        f"p99 less the platform's delay ({delay} ms)": Figure(percentile(xs, 0.99) * 1000 - delay, "ms", base,
                                                             "<= free exit + 5 ms", over_baseline_at_most(5.0))
        for delay, xs in ((0, now), (200, later))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cars", type=int, default=20)
    ap.add_argument("--baud", type=int, default=9600)
    args = ap.parse_args()
    report(args.cars, args.baud, *asyncio.run(measure(args.cars, args.baud)))


if __name__ == "__main__":
    main()
