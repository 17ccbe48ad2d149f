"""The migration bench (python -m hil.bench.migration) at CI size: a v1 database with a few thousand records
is built, migrated to the current schema in a child process, and the figures are printed."""

from __future__ import annotations

import sqlite3

import pytest

from hil.bench.migration import main, run
from lanectl.adapters.store import MIGRATIONS


def test_a_v1_year_in_small_is_migrated_to_the_current_schema_with_every_record(tmp_path):
    result = run(3000, tmp_path)
    assert (result.from_version, result.to_version) == (1, len(MIGRATIONS))
    assert result.migrate_s > 0 and result.peak_rss_kb >= result.baseline_rss_kb > 0
    assert list(result.steps) == [f"v{v}" for v in range(2, len(MIGRATIONS) + 1)]  # timed from migrate's own log
    assert result.size_before > 0 and result.size_checkpointed >= result.size_before

    with sqlite3.connect(tmp_path / "lanectl-v1.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 3000
        kinds = dict(conn.execute("SELECT kind, COUNT(*) FROM records GROUP BY kind").fetchall())
        assert kinds["entry"] > kinds["exit"] > 1000  # the last cars are still inside
        assert conn.execute("SELECT COUNT(*) FROM outbox WHERE status='pending'").fetchone()[0] == 50
        counted = sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                      for t in ("records", "barrier_actions", "outbox", "payments", "lane_state"))
        assert counted == result.rows
        # the v8 columns, at their defaults on every year-old row
        assert conn.execute("SELECT COUNT(*) FROM records WHERE short_fen=0 AND over_fen=0 "
                            "AND operator_uid IS NULL AND image=''").fetchone()[0] == 3000


def test_the_bench_prints_time_rate_sizes_and_memory(tmp_path, capsys):
    assert main(["--rows", "2000", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for expected in ("records: 2000", f"migration v1 -> v{len(MIGRATIONS)}:", "rows/s", "MiB before",
                     "checkpointed", "MiB free (its WAL)", "peak RSS", "per step: v2", "first store open"):
        assert expected in out


def test_a_bench_too_small_to_mean_anything_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--rows", "1"])
    assert exited.value.code == 2 and "--rows: at least 2" in capsys.readouterr().err
