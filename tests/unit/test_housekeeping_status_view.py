"""`lanectl status` shows each housekeeping job's last run, its result (the error when it failed) and its next run."""

from __future__ import annotations

from lanectl.cli import main, views
from tests.unit.test_cli_views import answering


def test_status_shows_each_job_and_the_error_of_a_failed_one(monkeypatch, capsys):
    answering(monkeypatch, views, {"park_id": "21835", "lanes": {}, "housekeeping": {
        "backup": {"last_run": "2026-12-07T03:30:02+08:00", "ok": False,
                   "result": {"error": "disk full (SQLITE_FULL: database or disk is full)"},
                   "next_run": "2026-12-08T03:30:00+08:00"},
        "report": {"last_run": "2026-12-07T00:10:01+08:00", "ok": True, "result": {"day": "2026-12-06"},
                   "next_run": "2026-12-08T00:10:00+08:00"},
        "vacuum": {"last_run": None, "ok": None, "result": {}, "next_run": "2026-12-13T04:00:00+08:00"}}})
    assert main(["status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert ("  housekeeping backup    last 2026-12-07 03:30 FAILED: disk full (SQLITE_FULL: database or disk is full); "
            "next 2026-12-08 03:30") in out
    assert "  housekeeping report    last 2026-12-07 00:10 ok; next 2026-12-08 00:10" in out
    assert "  housekeeping vacuum    last never not run yet; next 2026-12-13 04:00" in out
