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


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and not captured.out, captured
    return lines[0]


@pytest.mark.parametrize("extra, says", [
    (["--enter", "2026-11-22 12:00:00"], "is before --enter"),  # the exit before the entry
    (["--color", "purple"], "unknown plate colour 'purple'"),
    (["--leave", "2026-11-22 25:00"], "--leave: not a date/time"),
    (["--paid", "-5", "--paid-at", "2026-11-22 10:00"], "--paid must not be negative"),
    (["--paid", "100", "--paid-at", "2026-11-22 12:00"], "--paid-at 2026-11-22 12:00 is outside the stay"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(cfg, capsys, extra, says):
    assert main(fee(cfg, *extra)) == 2
    line = one_error_line(capsys)
    assert line.startswith("lanectl fee: ") and says in line, line
    assert "NEEDS THE BOOTH OPERATOR" not in line


def test_the_fee_needs_no_credentials(cfg, capsys, monkeypatch):
    """No secrets file and an unset key variable: a fee is only prices."""
    (Path(cfg) / "secrets.yaml").unlink()
    site = Path(cfg) / "site.yaml"
    site.write_text(site.read_text() + "payments:\n  tdzn: {url: 'https://p.example.invalid/api', pid: '1', "
                    "key: {env: LANECTL_TEST_TDZN}, park_code: T/1}\n")
    monkeypatch.delenv("LANECTL_TEST_TDZN", raising=False)
    assert main(fee(cfg)) == 0
    assert capsys.readouterr().out.startswith("due:   700 fen")


def test_the_shipped_example_on_a_fresh_machine(capsys):
    """README's own command against config/example as shipped (its secrets file is not on this machine)."""
    from tests.conftest import EXAMPLE
    assert main(fee(str(EXAMPLE))) == 0
    assert capsys.readouterr().out.startswith("due:   700 fen (7.00 元)")
