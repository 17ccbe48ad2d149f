"""Fee engine throughput: random 1-30 day stays on a two-segment day/night tariff with caps.

    python -m hil.bench.fee_throughput [--fees N] [--seed S]

Prints fees per second, p50/p99 time per fee and the worst time of a 30-day stay, in ms. Seeded, so two
runs on one machine compute the same fees.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import datetime, timedelta, timezone

from hil.bench.figures import Figure, Figures, percentile, value_at_most
from lanectl.core.tariff import TariffRule, compute_fee

SITE_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

DAY_NIGHT = TariffRule.model_validate({
    "free_minutes": 30,
    "cap_fen": 3000,
    "cap_period": "calendar_day",
    "segments": [
        {"name": "day", "start": "08:00", "end": "20:00", "first_minutes": 60, "first_fen": 500,
         "increment_minutes": 30, "increment_fen": 100, "cap_fen": 2500},
        {"name": "night", "start": "20:00", "end": "08:00", "increment_minutes": 120, "increment_fen": 100,
         "cap_fen": 600},
    ],
})


def _random_stay(rng: random.Random, min_days: int, max_days: int) -> tuple[datetime, datetime]:
    entered = datetime(2026, 1, 1, tzinfo=SITE_TZ) + timedelta(minutes=rng.randrange(365 * 24 * 60),
                                                             seconds=rng.randrange(60))
    length = timedelta(minutes=rng.randrange(min_days * 24 * 60, max_days * 24 * 60 + 1))
    return entered, entered + length


def _time_fees(stays: list[tuple[datetime, datetime]]) -> tuple[list[float], float]:
    """Per-fee seconds and the total wall time."""
    per_fee = []
    begin = time.perf_counter()
    for entered, left in stays:
        start = time.perf_counter()
        compute_fee(DAY_NIGHT, entered, left)
        per_fee.append(time.perf_counter() - start)
    return per_fee, time.perf_counter() - begin


def measure(fees: int, seed: int, months: int = 200) -> tuple[list[float], float, list[float]]:
    """Per-fee seconds of `fees` random 1-30 day stays, their wall time, per-fee seconds of 30-day stays."""
    rng = random.Random(seed)
    _time_fees([_random_stay(rng, 1, 2) for _ in range(50)])  # warm up
    per_fee, wall = _time_fees([_random_stay(rng, 1, 30) for _ in range(fees)])
    month, _ = _time_fees([_random_stay(rng, 30, 30) for _ in range(months)])
    return per_fee, wall, month


def figures(smoke: bool = False) -> dict[str, Figures]:
    per_fee, wall, month = measure(200 if smoke else 3000, 20261122, 20 if smoke else 200)
    print(f"{len(per_fee)} fees of 1-30 day stays: {len(per_fee) / wall:,.0f} fees/s; 30-day stay p50 "
          f"{statistics.median(month) * 1000:.3f} ms, p99 {percentile(month, 0.99) * 1000:.3f} ms", flush=True)
    return {"fee engine": {
        "fees per second, 1-30 day stays": Figure(len(per_fee) / wall, "fees/s"),
        f"30-day stay p99 (of {len(month)})": Figure(percentile(month, 0.99) * 1000, "ms", None, "<= 1 ms",
                                                     value_at_most(1.0)),
    }}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fees", type=int, default=3000, help="random 1-30 day stays to price")
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args(argv)
    per_fee, wall, month = measure(args.fees, args.seed)

    ms = sorted(s * 1000 for s in per_fee)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"tariff: day 08:00-20:00 / night 20:00-08:00, segment caps, {DAY_NIGHT.cap_fen} fen per calendar day")
    print(f"fees:            {len(ms)} random stays of 1-30 days (seed {args.seed})")
    print(f"throughput:      {len(ms) / wall:,.0f} fees/s")
    print(f"per fee:         p50 {statistics.median(ms):.3f} ms   p99 {p99:.3f} ms   max {ms[-1]:.3f} ms")
    print(f"30-day stay:     p50 {statistics.median(month) * 1000:.3f} ms   worst {max(month) * 1000:.3f} ms "
          f"of {len(month)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
