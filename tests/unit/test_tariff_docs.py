"""Every `$ lanectl fee` example in docs/tariffs.md, run through the CLI against the `tariffs:` block above it.

The page shows the command and the first lines of its answer; the test writes a configuration directory with
that tariff, runs the command with DIR pointing at it, and expects each shown line in the answer."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from lanectl.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "tariffs.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def examples() -> list[tuple[str, str, list[str]]]:
    """(tariffs YAML, command, expected answer lines) in page order."""
    found, tariffs = [], None
    for lang, body in FENCE.findall(DOC.read_text(encoding="utf-8")):
        if lang == "yaml" and set(yaml.safe_load(body)) == {"tariffs"}:
            tariffs = body
        elif lang == "console":
            for chunk in re.split(r"^\$ ", body, flags=re.MULTILINE)[1:]:
                command, *answer = chunk.strip().splitlines()
                assert tariffs is not None, f"{command}: no tariffs: block above it"
                found.append((tariffs, command, answer))
    return found


EXAMPLES = examples()


def test_the_page_has_an_example_of_each_convention():
    tariffs = "\n".join(t for t, _, _ in EXAMPLES)
    for convention in ("entry_24h", "calendar_day", "entry_cycle", "rounding: second", "after_grace: restart"):
        assert convention in tariffs, convention
    assert len(EXAMPLES) >= 20


@pytest.mark.parametrize("tariffs, command, answer", EXAMPLES, ids=[c for _, c, _ in EXAMPLES])
def test_lanectl_fee_reproduces_the_example(tmp_path: Path, capsys, tariffs: str, command: str,
                                            answer: list[str]):
    (tmp_path / "lanes").mkdir()
    (tmp_path / "lanes" / "out.yaml").write_text("id: out1\ndirection: exit\n")
    (tmp_path / "site.yaml").write_text("park_id: docs\ntimezone: Asia/Shanghai\n" + tariffs, encoding="utf-8")
    argv = shlex.split(command)
    assert argv[:2] == ["lanectl", "fee"], command
    code = main([str(tmp_path) if a == "DIR" else a for a in argv[1:]])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.splitlines()
    for expected in answer:
        assert expected in lines, f"{command}\nexpected {expected!r} in:\n{out.out}"
