"""The decision-path bench (python -m hil.bench.decision_path) at CI size: the daemon built as `lanectl run` builds
it, its cars through both lanes, each stage of every car measured, the same-run floor printed. No timing is
asserted; what is checked is that every car's OPEN reached the barrier only after its commit was done."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.bench.decision_path import STAGES, main, measure


async def test_every_car_is_measured_stage_by_stage_with_the_open_after_its_commit(tmp_path: Path):
    result = await measure(6, inside=5, directory=tmp_path)
    assert [r["kind"] for r in result.rows] == ["entry", "exit"] * 3
    for row in result.rows:
        assert all(row[stage] >= 0 for stage in STAGES), row  # write ahead, then act: the OPEN after the COMMIT
        assert row["COMMIT"] <= row["commit"] <= row["total"]
        assert abs(row["queue"] + row["decide"] + row["commit"] + row["hand-over"] - row["total"]) < 1e-6
    assert len(result.floor) == len(result.floor_hop) == 6
    assert set(result.figures()) == {"plate decoded -> OPEN handed over p50", "plate decoded -> OPEN handed over p99",
                                     "the daemon's own work (total less the COMMIT) p50",
                                     "the daemon's own work (total less the COMMIT) p99"}
    assert list(tmp_path.iterdir()) == []  # the scratch database is gone


def test_the_bench_prints_each_stage_and_the_floor(tmp_path: Path, capsys):
    assert main(["--cars", "4", "--inside", "0", "--dir", str(tmp_path), "--log-level", "WARNING"]) == 0
    out = capsys.readouterr().out
    for expected in (*STAGES, "floor", "floor+hop", "our cost over the floor"):
        assert expected in out


def test_a_bench_too_small_to_mean_anything_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--cars", "1"])
    assert exited.value.code == 2 and "--cars: at least 2" in capsys.readouterr().err
