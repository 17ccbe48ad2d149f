"""`lanectl fee` end to end: the example configuration, text and JSON answers, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lanectl.cli import main


@pytest.fixture
def cfg(example_config: Path) -> str:
    return str(example_config)


def fee(cfg: str, *extra: str) -> list[str]:
    return ["fee", "--config", cfg, "--plate", "粤B12345", "--enter", "2026-11-22 08:00:00",
            "--leave", "2026-11-22 11:00:00", *extra]


def test_worked_example_in_text_and_json(cfg, capsys):
    assert main(fee(cfg)) == 0
    out = capsys.readouterr().out
    assert out.startswith("due:   700 fen (7.00 元)")
    assert main(fee(cfg, "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["due_fen"], data["total_fen"], data["paid_fen"]) == (700, 700, 0)
    assert sum(item["fen"] for item in data["breakdown"]) == 700


def test_paid_ahead_within_grace_owes_nothing(cfg, capsys):
    assert main(fee(cfg, "--paid", "700", "--paid-at", "2026-11-22 10:55:00", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["due_fen"] == 0


def test_bad_input_is_a_clear_error(cfg, capsys):
    assert main(fee(cfg, "--paid", "100")) == 2
    assert "--paid-at" in capsys.readouterr().err
    assert main(["fee", "--config", cfg, "--plate", "粤B1", "--enter", "yesterday", "--leave", "now"]) == 2
    assert "not a date/time" in capsys.readouterr().err
