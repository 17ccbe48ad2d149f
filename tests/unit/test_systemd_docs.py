"""systemd/README.md describes what exists: the commands it tells an installer to run, the unit directives it
explains, and no per-lane tariff or bare MQTT section (issue 19 item 6)."""

from __future__ import annotations

import re
from pathlib import Path

from lanectl.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "systemd" / "README.md").read_text(encoding="utf-8")
UNIT = (REPO / "systemd" / "lanectl.service").read_text(encoding="utf-8")


def test_every_lanectl_command_it_names_exists():
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    named = set(re.findall(r"(?:sudo |^|`)lanectl ([a-z][a-z-]+)", README, re.M))
    assert {"install-service", "check-config", "status"} <= named
    assert named <= commands, named - commands


def test_every_directive_it_explains_is_in_the_unit():
    explained = set(re.findall(r"`([A-Z][a-z]+[A-Za-z]*)=", README))
    in_unit = set(re.findall(r"^([A-Za-z]+)=", UNIT, re.M))
    assert {"LoadCredential", "LimitNOFILE", "WatchdogSec"} <= explained
    assert explained - in_unit == {"PrivateDevices"}  # the one it explains as deliberately not used
    assert "LoadCredential=secrets.yaml:/etc/lanectl/secrets.yaml" in README
    assert "LoadCredential=secrets.yaml:/etc/lanectl/secrets.yaml" in UNIT.splitlines()


def test_no_phantom_configuration():
    assert "site_bus:" in README and "Tariffs are site-level" in README
    assert not re.search(r"lane[^\n]*tariff", README.split("Tariffs are site-level")[0], re.I)
