"""The control-socket commands' text output, from canned daemon answers (the socket itself is covered by
tests/integration/test_control_socket.py and tests/hil/test_lane_rig.py)."""

from __future__ import annotations

from typing import Any

import pytest

from lanectl.cli import actions, main, views

BALANCES = {"balances": {"粤B77777": 3000},
            "moves": [{"at": "2026-11-22T08:00:00+08:00", "plate": "粤B77777", "kind": "opening", "delta_fen": 2000,
                       "record_id": "", "reference": "config"},
                      {"at": "2026-11-22T09:30:00+08:00", "plate": "粤B77777", "kind": "debit", "delta_fen": -550,
                       "record_id": "in1_20261122093000_1", "reference": ""}]}
RECORD = {"at": "2026-11-22T08:00:00+08:00", "lane_id": "out1", "kind": "exit", "plate": "粤B12345",
          "status": "released", "vehicle_class": "temporary", "due_fen": 900, "paid_fen": 500, "short_fen": 400,
          "operator": "李", "operator_uid": 1001, "record_id": "out1_20261122080000_1"}


def answering(monkeypatch: pytest.MonkeyPatch, module: Any, answer: Any) -> list[tuple[str, dict]]:
    asked: list[tuple[str, dict]] = []

    def call(args: Any, method: str, **kwargs: Any) -> Any:
        asked.append((method, kwargs))
        return answer
    monkeypatch.setattr(module, "call", call)
    return asked


def test_balance_lists_balances_and_signed_moves(monkeypatch, capsys):
    asked = answering(monkeypatch, views, BALANCES)
    assert main(["balance", "--plate", "粤B77777"]) == 0
    assert asked == [("balances", {"plate": "粤B77777", "limit": 20})]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["粤B77777", "30.00", "元"]
    assert lines[1].split() == ["2026-11-22", "08:00:00", "粤B77777", "opening", "+20.00", "config"]
    assert lines[2].split() == ["2026-11-22", "09:30:00", "粤B77777", "debit", "-5.50", "in1_20261122093000_1"]


def test_records_show_the_shortfall_and_who_released(monkeypatch, capsys):
    answering(monkeypatch, views, [RECORD])
    assert main(["records", "--lane", "out1"]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "9.00" in row and "5.00" in row and "short 4.00" in row and "李 (uid 1001)" in row
    assert row.endswith("out1_20261122080000_1")


def test_open_says_what_was_recorded_and_exits_1_when_not_opened(monkeypatch, capsys):
    answering(monkeypatch, actions, {"lane": "out1", "opened": False, "message": "barrier fault", "phase": "idle",
                                     "record_id": "out1_1", "operator": "李", "operator_uid": None, "over_fen": 100})
    assert main(["open", "--lane", "out1", "--reason", "cash", "--amount", "1000"]) == 1
    assert capsys.readouterr().out.strip() == \
        "lane out1: not opened: barrier fault (record out1_1 released by 李, cash over 1.00)"


def _status(lane: dict[str, Any]) -> dict[str, Any]:
    return {"park_id": "21835", "lanes": {"in1": {"direction": "entry", "phase": "idle", **lane}}}


def test_status_names_what_each_lane_turned_away_and_is_quiet_when_nothing_was(monkeypatch, capsys):
    answering(monkeypatch, views, _status({
        "camera": {"refused_credentials": 3, "refused_source": 0}, "unreadable_plates": 2,
        "plate_lines": {"read": 10, "skipped": 1, "garbage_bytes": 41}}))
    assert main(["status"]) == 0
    assert ("    refused since start: 3 camera pushes without valid credentials, 2 unreadable plates sent to the "
            "booth, 41 bytes of noise on the plate line") in capsys.readouterr().out.splitlines()
    answering(monkeypatch, views, _status({"camera": {"refused_credentials": 0}, "unreadable_plates": 0}))
    assert main(["status"]) == 0
    assert "refused" not in capsys.readouterr().out
