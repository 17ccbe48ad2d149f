"""Benchmark: `lanectl status` latency and the daemon's log growth while N idle TCP connections are held open
to its public HTTP port — the flood that used to exhaust the unit's 1024 descriptors.

The daemon runs as its own process with the unit's open-file limit (--nofile, default 1024) and one lane
without devices. Baseline in the same run: the status latency before the flood.

    python -m hil.bench.flood [--connections 2000] [--nofile 1024] [--calls 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from hil.bench.figures import Figure, Figures, value_at_most
from hil.daemon_process import DaemonProcess


def write_config(d: Path) -> Path:
    etc = d / "etc"
    (etc / "lanes").mkdir(parents=True)
    site = {"park_id": "bench", "database": str(d / "lanectl.db"), "http": {"listen": "127.0.0.1:0"},
            "lan": {"listen": "127.0.0.1:0"},
            "control": {"socket": str(d / "control.sock")},
            "tariffs": {"default": {"first_minutes": 60, "first_fen": 500, "increment_minutes": 60,
                                    "increment_fen": 100}}}
    (etc / "site.yaml").write_text(yaml.safe_dump(site))
    (etc / "lanes" / "in1.yaml").write_text("id: in1\ndirection: entry\n")
    return etc


async def latencies(daemon: DaemonProcess, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        started = time.monotonic()
        await daemon.client.status()
        out.append(time.monotonic() - started)
    return out


async def hold(port: int, n: int) -> list[socket.socket]:
    """n TCP connections to the port, opened in batches of 100 (each batch bounded), held idle (the server may
    close those over its limit)."""
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []

    async def one() -> None:
        s = socket.socket()
        s.setblocking(False)
        socks.append(s)
        await loop.sock_connect(s, ("127.0.0.1", port))

    for i in range(0, n, 100):
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(min(100, n - i)))), 30)
    return socks


def ms(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms "
            f"({len(values)} calls)")


async def measure(connections: int, nofile: int, calls: int, quiet: bool = False) -> dict[str, float]:
    """Status latencies (s) before and during the flood, the flood's opening time and the log's growth."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < connections + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, connections + 200), hard))
    workdir = Path(tempfile.mkdtemp(prefix="lanectl-flood-", dir="/tmp"))
    daemon = DaemonProcess(write_config(workdir), workdir / "control.sock", workdir / "daemon.log", nofile=nofile)
    socks: list[socket.socket] = []
    try:
        await daemon.start()
        port = (await daemon.client.status())["http_port"]
        baseline = await latencies(daemon, calls)
        before = os.path.getsize(daemon.log_path)
        started = time.monotonic()
        socks = await hold(port, connections)
        opened_s = time.monotonic() - started
        flooded = await latencies(daemon, calls)
        growth = os.path.getsize(daemon.log_path) - before
        if not quiet:
            print(f"daemon open-file limit {nofile}; {connections} idle connections opened in {opened_s:.1f} s")
            print(f"status before the flood: {ms(baseline)}")
            print(f"status during the flood: {ms(flooded)}")
            print(f"log growth during the flood: {growth} bytes")
    finally:
        for s in socks:
            s.close()
        await daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"before_max": max(baseline), "during_max": max(flooded), "before_median": statistics.median(baseline),
            "during_median": statistics.median(flooded), "growth": float(growth)}


async def figures(smoke: bool = False) -> dict[str, Figures]:
    connections = 200 if smoke else 2000
    m = await measure(connections, 1024, 5 if smoke else 20)
    return {"flood": {
        f"status median, {connections} idle connections": Figure(m["during_median"] * 1000, "ms",
                                                                 m["before_median"] * 1000),
        f"status worst, {connections} idle connections": Figure(m["during_max"] * 1000, "ms", m["before_max"] * 1000,
                                                                "<= 1000 ms", value_at_most(1000.0)),
        "log growth during the flood": Figure(m["growth"] / 1024, "KiB", None, "< 10 KiB", value_at_most(10.0)),
    }}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--nofile", type=int, default=1024, help="the daemon's open-file limit (the unit's)")
    ap.add_argument("--calls", type=int, default=20, help="status calls measured before and during the flood")
    args = ap.parse_args()
    asyncio.run(measure(args.connections, args.nofile, args.calls))


if __name__ == "__main__":
    main()
