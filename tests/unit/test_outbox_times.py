"""`lanectl outbox` shows every time in lot time with its offset: the pending items' next try was in the
machine's zone (UTC on a lane PC) beside records and failures in lot time (issue 19 item 5)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lanectl.adapters.store import SqliteStore
from lanectl.cli import main
from lanectl.cli import views
from lanectl.core import effects as fx

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=TZ)


async def test_pending_items_next_try_is_in_the_zone_of_their_creation(tmp_path: Path):
    store = SqliteStore(tmp_path / "lanectl.db", destinations=["webhook"])
    await store.open()
    try:
        record = fx.NewRecord("in1_1", "in1", "entry", "粤B12345", "blue", NOW.isoformat(), "inside", "temporary",
                              "temporary")
        await store.commit_lane("in1", {"phase": "idle", "seq": 1}, [record, fx.Publish("in1_1", "entry")], NOW)
        [item] = (await store.outbox_summary(10, TZ))["pending"]
    finally:
        await store.close()
    created, next_at = datetime.fromisoformat(item["created_at"]), datetime.fromisoformat(item["next_at"])
    assert created.utcoffset() == next_at.utcoffset() == NOW.utcoffset()
    assert next_at == NOW


def test_outbox_view_prints_times_with_their_offset(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]):
    answer = {"counts": {"webhook/pending": 1},
              "destinations": {"webhook": {"failing_since": "2026-11-22T08:00:00.123456+08:00",
                                           "last_error": "HTTP 503"}},
              "pending": [{"id": 7, "destination": "webhook", "key": "entry:in1_1", "attempts": 3,
                           "next_at": "2026-11-22T08:05:00+08:00", "last_error": "HTTP 503"}]}
    monkeypatch.setattr(views, "call", lambda _args, _op, **_kw: answer)
    assert main(["outbox", "--socket", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    assert "failing since 2026-11-22 08:00:00+08:00: HTTP 503" in out
    assert "next=2026-11-22 08:05:00+08:00" in out
