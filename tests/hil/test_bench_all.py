"""`python -m hil.bench all --smoke`: every bench runs at tiny sizes and reports its rows in the one table.
No timing is asserted (the figures of a smoke run mean nothing, and CI machines are noisy); what is checked is
that each bench ran to the end and produced every row it promises, with its same-run baseline where it has
one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hil.bench.figures import Figure, markdown, over_baseline_at_most, ratio_at_most, value_at_most
from lanectl.adapters.store import MIGRATIONS

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_ROWS = [  # (bench, figure) — the baseline column is filled where the bench measures one
    ("decision latency 9600", "9600 baud p50, worst of 1", True),
    ("decision latency 9600", "9600 baud p99, worst of 1", True),
    ("decision latency 115200", "115200 baud p99, worst of 1", True),
    ("decision latency 9600", "daemon peak RSS, 2 lanes", False),
    ("sign-free exit", "p99 less the platform's answer time (0 ms delay)", True),
    ("sign-free exit", "p99 less the platform's answer time (200 ms delay)", True),
    ("sign-free exit", "p99 less the platform's answer time (2000 ms delay)", True),
    ("decision path", "plate decoded -> OPEN handed over p50", True),
    ("decision path", "plate decoded -> OPEN handed over p99", True),
    ("decision path", "the daemon's own work (total less the COMMIT) p50", False),
    ("decision path", "the daemon's own work (total less the COMMIT) p99", False),
    ("write-ahead commit", "commit fsync p50", True),
    ("write-ahead commit", "commit fsync p99", True),
    ("camera push", "2 KB picture p99", True),
    ("camera push", "200 KB picture p99", True),
    ("fee engine", "30-day stay p99 (of 20)", False),
    ("flood", "status worst, 200 idle connections", True),
    ("schema migration", f"v1 -> v{len(MIGRATIONS)}, 2,000 records", False),
    ("site bus, two booths", "exits matched to their own entry", False),
    ("site bus, two booths", "records lost", False),
    ("site bus, two booths", "replication lag p99, outside the outage", False),
    ("site bus, two booths", "forged remote opens that opened", False),
    ("lanes at scale", "8 lanes on one 9600 bus, polled every 50 ms: p99 vs 1 lane", True),
    ("lanes at scale", "8 lanes on one 9600 bus, polled every 200 ms: p99 vs 1 lane", True),
    ("lanes at scale", "8 lanes on one 9600 bus, polled every 50 ms: input read period (slowest lane, median)", True),
    ("lanes at scale", "8 lanes on Modbus TCP: p99 vs 1 lane", True),
    ("lanes at scale", "16 lanes on Modbus TCP: p99 vs 1 lane", True),
    ("lanes at scale", "daemon peak RSS, 4 lanes", False),
    ("lanes at scale", "daemon peak RSS, 4 lanes, /metrics + housekeeping off", False),
    ("lanes at scale", "daemon peak RSS, 16 lanes", False),
    ("outbox drain", "webhook: 60 records at 100/s, drain vs records / rate", True),
    ("outbox drain", "xft: 60 records at 100/s, drain vs records / rate", True),
    ("outbox drain", "tdzn: 60 records at 50/s, drain vs records / rate", True),
]


@pytest.mark.hil
@pytest.mark.timeout(600)
def test_every_bench_runs_at_smoke_size_and_reports_its_rows(tmp_path: Path):
    out = tmp_path / "bench.md"
    done = subprocess.run([sys.executable, "-m", "hil.bench", "all", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = out.read_text()
    assert table in done.stdout  # the same table on stdout and in the file
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")) for line in table.splitlines()[2:]}
    by_figure = {(r[0], r[1]): r for r in rows}
    for bench, figure, has_baseline in EXPECTED_ROWS:
        row = by_figure.get((bench, figure))
        assert row is not None, f"{bench}: no row {figure!r} in\n{table}"
        assert row[2] != "—" and (row[3] != "—") == has_baseline, row
        assert (row[4] != "—") == has_baseline, row  # the ratio to the same-run baseline
    for name in ("camera_push", "decision_latency", "decision_path", "fsync", "signfree_exit", "fee_throughput",
                 "flood", "migration", "site_bus", "lanes_scale", "outbox_drain"):
        assert f"== {name}" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_the_table_holds_each_figure_to_its_goal():
    table = markdown({"b": {
        "ratio ok": Figure(11.0, "ms", 10.0, "ratio <= 1.15", ratio_at_most(1.15)),
        "ratio over": Figure(12.0, "ms", 10.0, "ratio <= 1.15", ratio_at_most(1.15)),
        "over baseline": Figure(13.0, "ms", 10.0, "<= bare + 2 ms", over_baseline_at_most(2.0)),
        "value": Figure(0.5, "ms", None, "<= 1 ms", value_at_most(1.0)),
        "info": Figure(64.0, "MiB"),
    }}).splitlines()
    assert table[2] == "| b | ratio ok | 11.00 ms | 10.00 ms | 1.10 | ratio <= 1.15 | pass |"
    assert table[3].endswith("| 1.20 | ratio <= 1.15 | **FAIL** |")
    assert table[4].endswith("| 1.30 | <= bare + 2 ms | **FAIL** |")
    assert table[5] == "| b | value | 0.50 ms | — | — | <= 1 ms | pass |"
    assert table[6] == "| b | info | 64.00 MiB | — | — |  |  |"
