"""Fixtures shared by every test folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "example"


@pytest.fixture
def example_config(tmp_path: Path) -> Path:
    """A copy of config/example with its secrets file and database moved into tmp_path."""
    d = tmp_path / "etc"
    shutil.copytree(EXAMPLE, d)
    (d / "secrets.yaml").write_text("backoffice_token: t0ken\n")
    site = (d / "site.yaml").read_text().replace("/etc/lanectl/secrets.yaml", "secrets.yaml")
    (d / "site.yaml").write_text(site.replace("/var/lib/lanectl/lanectl.db", "state/lanectl.db"))
    return d
