"""The bare-minimum path a lane decision could take, as its own process: read a plate line from the camera's tty,
write the OPEN coil with pymodbus, nothing else (no rules, no database, no input polling, no logging).

The latency benches run it on the same rig cables as the daemon, back to back with the daemon's cars, and
report the daemon's figures as ratios to it — so the machine's noise of that run is in both.
It uses the same libraries the daemon does (pyserial-asyncio-fast, pymodbus' async RTU client), so the ratio
is the cost of the daemon's design, not of the libraries.

    python -m hil.bench.bare_path CAMERA_TTY BUS_TTY --baud 9600 --unit 1

Prints `ready` once both ports are open; then, per plate line, writes coil 0 ON (the OPEN pulse's rising
edge) and OFF again (so the next line makes a new edge). Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import serial_asyncio_fast
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.framer import FramerType

OPEN_COIL = 0


async def serve(camera: str, bus: str, baud: int, unit: int) -> None:
    reader, _writer = await serial_asyncio_fast.open_serial_connection(url=camera, baudrate=baud)
    client = AsyncModbusSerialClient(bus, framer=FramerType.RTU, baudrate=baud, timeout=0.5, retries=0,
                                     reconnect_delay=0)
    if not await client.connect():
        raise SystemExit(f"cannot open {bus}")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            line = asyncio.create_task(reader.readline())
            await asyncio.wait({line, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not line.done():
                line.cancel()
                break
            if not line.result().strip():
                continue
            await client.write_coil(OPEN_COIL, True, device_id=unit)
            await client.write_coil(OPEN_COIL, False, device_id=unit)
    finally:
        client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("camera")
    ap.add_argument("bus")
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--unit", type=int, default=1)
    args = ap.parse_args()
    asyncio.run(serve(args.camera, args.bus, args.baud, args.unit))


if __name__ == "__main__":
    main()
