"""What every bench returns: named figures, each with the baseline measured in the same run (when it has one),
the ratio or difference to it, and the goal it is held to; and the markdown table `python -m hil.bench all`
prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

Check = Callable[["Figure"], bool]


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str  # ms, MiB, fees/s, ...
    baseline: Optional[float] = None  # the same-run reference, in the same unit
    goal: str = ""  # as written in the table, e.g. "ratio <= 1.15"
    check: Optional[Check] = None  # None: informational

    @property
    def ratio(self) -> Optional[float]:
        return self.value / self.baseline if self.baseline else None

    @property
    def passed(self) -> Optional[bool]:
        return None if self.check is None else self.check(self)


Figures = dict[str, Figure]


def ratio_at_most(limit: float) -> Check:
    return lambda f: f.ratio is not None and f.ratio <= limit


def over_baseline_at_most(limit: float) -> Check:
    return lambda f: f.baseline is not None and f.value - f.baseline <= limit


def value_at_most(limit: float) -> Check:
    return lambda f: f.value <= limit


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1) — with 200 values, p99 is the 2nd worst."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _num(x: Optional[float]) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.2f}"


def markdown(figures: dict[str, Figures]) -> str:
    """One table: bench, figure, value, baseline, ratio, goal, pass/fail."""
    lines = ["| bench | figure | value | baseline | ratio | goal | result |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for bench, rows in figures.items():
        for name, f in rows.items():
            result = {None: "", True: "pass", False: "**FAIL**"}[f.passed]
            lines.append(f"| {bench} | {name} | {_num(f.value)} {f.unit} | "
                         f"{_num(f.baseline) + ' ' + f.unit if f.baseline is not None else '—'} | "
                         f"{_num(f.ratio)} | {f.goal} | {result} |")
    return "\n".join(lines) + "\n"
