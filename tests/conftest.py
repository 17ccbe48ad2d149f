"""Fixtures shared by every test folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# a real Mosquitto for any test that asks for it (tests/mosquitto.py: `mosquitto`, `mosquitto_factory`)
from tests.mosquitto import mosquitto, mosquitto_factory  # noqa: F401

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "example"


@pytest.fixture
def example_config(tmp_path: Path) -> Path:
    """A copy of config/example with its secrets file and database moved into tmp_path, and the example's
    commented-out webhook upload turned on (its token is the one secret these tests read)."""
    d = tmp_path / "etc"
    shutil.copytree(EXAMPLE, d)
    (d / "secrets.yaml").write_text("backoffice_token: t0ken\n")
    (d / "secrets.yaml").chmod(0o640)  # the loader refuses a secrets file others may read
    site = (d / "site.yaml").read_text().replace("/etc/lanectl/secrets.yaml", "secrets.yaml")
    site += ('uploads:\n  webhook:\n    url: "https://backoffice.example.invalid/lanectl/records"\n'
             "    token: {secret: backoffice_token}\n    rate_per_s: 5\n")
    (d / "site.yaml").write_text(site.replace("/var/lib/lanectl/lanectl.db", "state/lanectl.db"))
    return d
