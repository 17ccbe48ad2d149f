"""`lanectl install-service --root DIR`: the tree it stages, its modes, the unit, idempotence, --dry-run, and the
secrets file read from $CREDENTIALS_DIRECTORY under systemd."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lanectl.cli import main
from lanectl.config import load_config

FILES = {  # path under the root -> mode
    "etc/lanectl": 0o750,
    "etc/lanectl/lanes": 0o750,
    "etc/lanectl/site.yaml": 0o640,
    "etc/lanectl/lanes/east-in.yaml": 0o640,
    "etc/lanectl/lanes/east-out.yaml": 0o640,
    "etc/lanectl/secrets.yaml": 0o600,
    "var/lib/lanectl": 0o750,
    "etc/systemd/system/lanectl.service": 0o644,
}


def _tree(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_mode & 0o7777, p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))}


def test_stages_the_tree_with_its_modes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["install-service", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for rel, mode in FILES.items():
        path = tmp_path / rel
        assert path.exists(), rel
        assert path.stat().st_mode & 0o7777 == mode, rel
    assert "useradd --system --user-group --groups dialout" in out  # printed, not run, in a staging root
    assert "systemctl enable --now lanectl" in out and "secrets.yaml" in out
    config = load_config(tmp_path / "etc/lanectl")  # the staged example is a valid configuration
    assert [lane.id for lane in config.lanes] == ["east_in", "east_out"]


def test_the_unit_limits_files_loads_the_secrets_credential_and_runs_this_lanectl(tmp_path: Path):
    assert main(["install-service", "--root", str(tmp_path)]) == 0
    unit = (tmp_path / "etc/systemd/system/lanectl.service").read_text()
    lines = unit.splitlines()
    assert "LimitNOFILE=4096" in lines
    assert "LoadCredential=secrets.yaml:/etc/lanectl/secrets.yaml" in lines
    assert "User=lanectl" in lines and "SupplementaryGroups=dialout" in lines
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    program = exec_start.removeprefix("ExecStart=").split()[0]
    assert os.access(program, os.X_OK), exec_start


def test_second_run_changes_nothing_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["install-service", "--root", str(tmp_path)]) == 0
    capsys.readouterr()
    before = _tree(tmp_path)
    assert main(["install-service", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert _tree(tmp_path) == before
    assert "0 change(s)" in out and "the example configuration is not copied" in out


def test_never_overwrites_configuration_or_secrets_but_restores_modes_and_the_unit(tmp_path: Path):
    assert main(["install-service", "--root", str(tmp_path)]) == 0
    site, secrets = tmp_path / "etc/lanectl/site.yaml", tmp_path / "etc/lanectl/secrets.yaml"
    unit = tmp_path / "etc/systemd/system/lanectl.service"
    site.write_text(site.read_text().replace('park_id: "21835"', 'park_id: "777"'))
    secrets.write_text("bolink_key: k\n")
    (tmp_path / "var/lib/lanectl").chmod(0o755)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    (tmp_path / "etc/lanectl/lanes/east-out.yaml").unlink()  # a lot with one lane: not re-added from the example
    assert main(["install-service", "--root", str(tmp_path)]) == 0
    assert 'park_id: "777"' in site.read_text() and secrets.read_text() == "bolink_key: k\n"
    assert not (tmp_path / "etc/lanectl/lanes/east-out.yaml").exists()
    assert (tmp_path / "var/lib/lanectl").stat().st_mode & 0o7777 == 0o750
    assert "LimitNOFILE=4096" in unit.read_text()


def test_dry_run_changes_nothing_and_prints_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["install-service", "--root", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    assert "would" in out and "lanectl.service: create" in out and "dry run: nothing changed" in out


def test_on_the_real_system_it_wants_root(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["install-service"]) == 77
    assert "must run as root" in capsys.readouterr().err


def test_systemd_analyze_verify_accepts_the_installed_unit(tmp_path: Path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here")
    assert main(["install-service", "--root", str(tmp_path)]) == 0
    unit = tmp_path / "etc/systemd/system/lanectl.service"
    result = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "Failed to" in result.stderr and "lanectl.service" not in result.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr
    assert "lanectl.service" not in result.stderr, result.stderr  # no warning about our unit


def test_under_systemd_the_secrets_file_is_read_from_the_credentials_directory(
        example_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    site = example_config / "site.yaml"
    site.write_text(site.read_text().replace("secrets_file: secrets.yaml", "secrets_file: /etc/lanectl/secrets.yaml"))
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "secrets.yaml").write_text("backoffice_token: from-systemd\n")
    (creds / "secrets.yaml").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load_config(example_config)
    assert config.site.secrets_file == creds / "secrets.yaml"
    assert config.secrets["backoffice_token"] == "from-systemd"


def test_without_the_credential_the_secrets_file_path_is_used(example_config: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))  # no secrets.yaml in it
    config = load_config(example_config)
    assert config.site.secrets_file == example_config / "secrets.yaml"
    assert config.secrets["backoffice_token"] == "t0ken"


class _Entry:
    def __init__(self, members: tuple[str, ...] = ()) -> None:
        self.gr_mem = list(members)
        self.pw_uid = self.gr_gid = 999


def _accounts(monkeypatch: pytest.MonkeyPatch, users: dict, groups: dict) -> list[str]:
    from lanectl.cli import install

    def lookup(table: dict):  # type: ignore[no-untyped-def]
        def get(name: str) -> _Entry:
            if name not in table:
                raise KeyError(name)
            return table[name]
        return get
    monkeypatch.setattr(install.pwd, "getpwnam", lookup(users))
    monkeypatch.setattr(install.grp, "getgrnam", lookup(groups))
    ran: list[str] = []
    monkeypatch.setattr(install, "_run", lambda cmd: ran.append(" ".join(cmd)))
    for step in install._account_steps(system=True):
        if step.apply is not None:
            step.apply()
    return ran


def test_on_the_system_a_missing_user_is_created_with_its_group_and_dialout(monkeypatch: pytest.MonkeyPatch):
    ran = _accounts(monkeypatch, users={}, groups={"dialout": _Entry()})
    assert ran == ["useradd --system --user-group --groups dialout --home-dir /var/lib/lanectl --no-create-home "
                   "--shell /usr/sbin/nologin lanectl"]


def test_on_the_system_an_existing_user_only_joins_dialout(monkeypatch: pytest.MonkeyPatch):
    ran = _accounts(monkeypatch, users={"lanectl": _Entry()}, groups={"dialout": _Entry(), "lanectl": _Entry()})
    assert ran == ["usermod --append --groups dialout lanectl"]
    ran = _accounts(monkeypatch, users={"lanectl": _Entry()},
                    groups={"dialout": _Entry(("lanectl",)), "lanectl": _Entry()})
    assert ran == []


def test_on_the_system_missing_dialout_and_a_lone_group_are_handled(monkeypatch: pytest.MonkeyPatch):
    ran = _accounts(monkeypatch, users={}, groups={"lanectl": _Entry()})
    assert ran[0] == "groupadd --system dialout"
    assert ran[1].startswith("useradd --system --gid lanectl --groups dialout ")
