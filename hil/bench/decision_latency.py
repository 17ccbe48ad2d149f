"""Benchmark: plate line written → OPEN coil seen by the IO emulator, for a whitelisted car.

The daemon runs as its own process against the rig at 9600 baud line-speed emulation (camera line and
RS-485 bus). The floor is the wire time of the same bytes — the plate line plus the write-coil request —
measured on the same cables in the same run; the figure that matters is the ratio (target ≤ 1.2).
Also prints the daemon's peak RSS with 2 lanes.

    python -m hil.bench.decision_latency [--cars 200] [--baud 9600]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
from pathlib import Path

from hil.daemon_process import DaemonProcess
from hil.emulators.barrier_io import Physics
from hil.rig import Rig, RigLane
from hil.wire import wire_time

WRITE_COIL_REQUEST = 8  # bytes: unit, fc 5, address (2), value (2), CRC (2)
IDLE_S = 0.5  # > the 300 ms coil pulse + a 50 ms poll


def plates(n: int) -> list[str]:
    return [f"粤B{10000 + i:05d}" for i in range(n)]


async def run(cars: int, baud: int, poll_ms: int = 50) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="lanectl-bench-", dir="/tmp"))
    rig = Rig(workdir, [RigLane("in1", "entry", 1), RigLane("in2", "entry", 2)], baudrate=baud,
              physics=Physics(rise_s=0.05, fall_s=0.05), poll_ms=poll_ms,
              site_overrides={"vehicles": {"whitelist": {p: {} for p in plates(cars)}}})
    await rig.start()
    socket = workdir / "control.sock"
    daemon = DaemonProcess(rig.write_config(workdir / "etc", socket), socket, workdir / "daemon.log",
                           log_level="WARNING")
    try:
        await daemon.start()
        await asyncio.sleep(0.5)
        latencies, floors = [], []
        for i, plate in enumerate(plates(cars)):
            result = await rig.car("in1", plate, wait_open_s=5.0, drive_s=0.05, on_safety_s=0.2)
            if not result.opened:
                raise SystemExit(f"car {i} ({plate}) was not let in: see {workdir / 'daemon.log'}")
            line = len(f"{plate},blue,95\r\n".encode("gbk"))
            floors.append(wire_time(line + WRITE_COIL_REQUEST, baud))
            latencies.append(result.t_open - result.t_plate)
            await rig.wait_down("in1", timeout=5.0)
            # The next car meets a lane at rest: the daemon has seen the arm down and the CLOSE pulse is over.
            await asyncio.sleep(IDLE_S)
        rss = daemon.peak_rss_kib()
    finally:
        await daemon.stop()
        await rig.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    lat = sorted(latencies)
    p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    floor = statistics.median(floors)
    print(f"decision latency, plate line written -> OPEN coil seen, {cars} whitelisted cars at {baud} baud, "
          f"inputs polled every {poll_ms} ms on the same bus")
    print(f"  wire-time floor (plate line + write-coil request): {floor * 1000:7.2f} ms")
    print(f"  p50 {p50 * 1000:7.2f} ms   ratio to floor {p50 / floor:5.2f}   (target <= 1.2)")
    print(f"  p99 {p99 * 1000:7.2f} ms   ratio to floor {p99 / floor:5.2f}")
    print(f"  max {lat[-1] * 1000:7.2f} ms")
    print(f"daemon peak RSS with 2 lanes: {rss / 1024:.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cars", type=int, default=200)
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--poll-ms", type=int, default=50, help="the daemon's barrier input polling period")
    args = ap.parse_args()
    asyncio.run(run(args.cars, args.baud, args.poll_ms))


if __name__ == "__main__":
    main()
