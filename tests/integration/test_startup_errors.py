"""`lanectl run` that cannot start ends with ONE line on stderr naming the thing and the reason, and a sysexits
code (lanectl/startup.py, systemd/README.md) — never a traceback. Only a bug (an unexpected exception) logs a
traceback, and exits 70. Each case runs the real command as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.minimal_site import write_minimal_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lc-start-", dir="/tmp"))  # short: the socket path must fit in 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


write_config = write_minimal_config


def run(etc: Path, *extra: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    env.pop("LANECTL_LOG_LEVEL", None)
    argv = ["run", "--config", str(etc), *extra]
    cmd = [sys.executable, "-c", code + f"\nraise SystemExit(main({argv!r}))"] if code else \
        [sys.executable, "-m", "lanectl", *argv]
    # a start that fails must end by itself, quickly: the timeout fails the test if the daemon kept running
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env, cwd=REPO)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"stderr is not one line:\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_bad_log_level_is_a_usage_error(workdir: Path):
    result = run(write_config(workdir), "--log-level", "LOUD")
    line = one_line(result)
    assert result.returncode == 64
    assert "--log-level" in line and "LOUD" in line and "INFO" in line


def test_log_level_is_case_insensitive(workdir: Path):
    # a good level passes the check; the run then stops on the next problem (a busy port, here: fast)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(write_config(workdir, http={"listen": f"127.0.0.1:{port}"}), "--log-level", "debug")
    assert result.returncode == 75, result.stderr
    assert " DEBUG " in result.stdout  # the level was taken


def test_busy_port_is_a_temporary_failure_naming_the_port(workdir: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(write_config(workdir, http={"listen": f"127.0.0.1:{port}"}))
    line = one_line(result)
    assert result.returncode == 75
    assert f"127.0.0.1:{port}" in line and "http.listen" in line and "in use" in line
    # the same line is in the log (stdout), and what had opened is closed again: the socket file is gone
    assert f"cannot start: http listener 127.0.0.1:{port}" in result.stdout
    assert not (workdir / "control.sock").exists()


def test_a_busy_lan_port_names_the_lan_face(workdir: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        etc = write_config(workdir, lan={"listen": f"127.0.0.1:{port}"})
        (etc / "lanes" / "in1.yaml").write_text("id: in1\ndirection: entry\n"
                                                "devices: {camera: {kind: vzenith_http, insecure: true}}\n")
        result = run(etc)
    line = one_line(result)
    assert result.returncode == 75
    assert f"http listener 127.0.0.1:{port} (LAN face, site lan.listen)" in line and "in use" in line
    assert not (workdir / "control.sock").exists()


def test_the_daemon_refuses_a_camera_lane_without_authentication(workdir: Path):
    etc = write_config(workdir)
    lane = etc / "lanes" / "in1.yaml"
    lane.write_text("id: in1\ndirection: entry\ndevices: {camera: {kind: vzenith_http}}\n")
    result = run(etc)
    assert result.returncode == 78
    assert f"{lane}: devices.camera: no authentication" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and not (workdir / "control.sock").exists()


def test_database_under_a_file_cannot_be_created(workdir: Path):
    (workdir / "afile").write_text("not a directory\n")
    db = workdir / "afile" / "lanectl.db"
    result = run(write_config(workdir, database=str(db)))
    line = one_line(result)
    assert result.returncode == 73
    assert str(workdir / "afile") in line and "not a directory" in line


@pytest.fixture
def readonly_dir(workdir: Path) -> Iterator[Path]:
    """A directory nobody may write into, root included: a read-only tmpfs (needs mount rights), else a
    0555 directory when not running as root."""
    d = workdir / "ro"
    d.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)],
                             capture_output=True).returncode == 0 if shutil.which("mount") else False
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root ignores directory modes and this machine does not allow mounting a read-only tmpfs")
        d.chmod(0o555)
    try:
        yield d
    finally:
        if mounted:
            subprocess.run(["umount", str(d)], check=True)
        else:
            d.chmod(0o755)


def test_read_only_database_directory(workdir: Path, readonly_dir: Path):
    db = readonly_dir / "lanectl.db"
    result = run(write_config(workdir, database=str(db)))
    line = one_line(result)
    assert result.returncode == 73
    assert str(db) in line and ("read-only" in line or "unable to open" in line or "permission" in line.lower())


def test_control_socket_in_a_place_that_cannot_be_made(workdir: Path):
    sock = "/proc/lanectl-no-such-dir/control.sock"  # /proc takes no new directories, not even from root
    result = run(write_config(workdir, control={"socket": sock}))
    line = one_line(result)
    assert result.returncode == 73
    assert sock in line and "cannot be created" in line


def test_control_socket_in_a_read_only_directory(workdir: Path, readonly_dir: Path):
    sock = readonly_dir / "control.sock"
    result = run(write_config(workdir, control={"socket": str(sock)}))
    line = one_line(result)
    assert result.returncode == 73
    assert str(sock) in line


def test_invalid_configuration_is_one_line_and_78(workdir: Path):
    etc = write_config(workdir)
    (etc / "lanes" / "in1.yaml").write_text("id: in1\ndirection: sideways\nbogus: 1\n")
    result = run(etc)
    line = one_line(result)
    assert result.returncode == 78
    assert "in1.yaml" in line and "direction" in line and "bogus" in line


def test_an_unexpected_error_is_a_bug_with_a_traceback_and_70(workdir: Path):
    code = ("import lanectl.app as a\n"
            "async def boom(self, stop):\n"
            "    raise RuntimeError('boom in the composition root')\n"
            "a.App.run = boom\n"
            "from lanectl.cli import main")
    result = run(write_config(workdir), code=code)
    assert result.returncode == 70
    assert "Traceback" in result.stdout and "boom in the composition root" in result.stdout  # the log
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unexpected error" in lines[0]


def test_a_secrets_file_others_may_read_stops_the_start(workdir: Path):
    secrets = workdir / "secrets.yaml"
    secrets.write_text("backoffice_token: t0ken\n")
    secrets.chmod(0o644)
    webhook = {"url": "https://b.example.invalid/r", "token": {"secret": "backoffice_token"}}
    etc = write_config(workdir, secrets_file=str(secrets), uploads={"webhook": webhook})
    result = run(etc)
    line = one_line(result)
    assert result.returncode == 78
    assert str(secrets) in line and "0644" in line and f"chmod 640 {secrets}" in line


def test_log_format_json_writes_one_object_per_line_in_lot_time(workdir: Path):
    with socket.socket() as busy:  # stops fast after the configuration is read
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(write_config(workdir, http={"listen": f"127.0.0.1:{port}"}, timezone="Asia/Shanghai"),
                     "--log-format", "json")
    assert result.returncode == 75, result.stderr
    entries = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    failed = [e for e in entries if e["message"].startswith("cannot start")]
    assert failed and failed[0]["level"] == "ERROR" and failed[0]["time"].endswith("+08:00")
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)


def test_bad_log_format_is_a_usage_error(workdir: Path):
    result = run(write_config(workdir), "--log-format", "xml")
    assert result.returncode == 64
    assert "--log-format" in one_line(result) and "json" in one_line(result)
