"""Run every bench and print one markdown table of figures, same-run baselines, ratios and goals.

    python -m hil.bench all [--smoke] [--runs N] [--out PATH] [--only NAME ...]

Each bench prints its own lines as it goes; the table comes last, on stdout and (with --out) in a file.
`--smoke` runs tiny sizes: it proves every bench runs and reports its rows, its figures mean nothing.
`--runs N` repeats the decision-latency runs (bare path, then daemon) and keeps the worst.
Timing figures depend on what else the machine runs: read the ratios to the same-run baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
import time
from pathlib import Path
from typing import Any, Callable

from hil.bench import (camera_push, decision_latency, decision_path, fee_throughput, flood, fsync, lanes_scale,
                       migration, outbox_drain, signfree_exit, site_bus)
from hil.bench.figures import Figures, markdown


def _decision(smoke: bool, runs: int) -> Any:
    return decision_latency.figures(smoke, runs)


BENCHES: dict[str, Callable[[bool, int], Any]] = {
    "decision_latency": _decision,
    "decision_path": lambda smoke, runs: decision_path.figures(smoke),
    "fsync": lambda smoke, runs: fsync.figures(smoke),
    "signfree_exit": lambda smoke, runs: signfree_exit.figures(smoke),
    "camera_push": lambda smoke, runs: camera_push.figures(smoke),
    "fee_throughput": lambda smoke, runs: fee_throughput.figures(smoke),
    "flood": lambda smoke, runs: flood.figures(smoke),
    "migration": lambda smoke, runs: migration.figures(smoke),
    "site_bus": lambda smoke, runs: site_bus.figures(smoke),
    "lanes_scale": lambda smoke, runs: lanes_scale.figures(smoke),
    "outbox_drain": lambda smoke, runs: outbox_drain.figures(smoke),
}


def run_all(smoke: bool, runs: int, only: list[str]) -> dict[str, Figures]:
    out: dict[str, Figures] = {}
    for name, bench in BENCHES.items():
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        started = time.monotonic()
        result = bench(smoke, runs)
        if inspect.isawaitable(result):
            result = asyncio.run(result)
        out.update(result)
        print(f"   ({time.monotonic() - started:.1f} s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.bench", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["all"])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks every bench runs")
    ap.add_argument("--runs", type=int, default=3, help="decision-latency runs; the worst is reported")
    ap.add_argument("--out", type=Path, help="also write the table to this file")
    ap.add_argument("--only", nargs="+", choices=list(BENCHES), default=[], help="run only these benches")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs: at least 1")
    table = markdown(run_all(args.smoke, args.runs, args.only))
    print(("\nsmoke sizes: the figures below only show that each bench ran\n" if args.smoke else "\n") + table)
    if args.out is not None:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
