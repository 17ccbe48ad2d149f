"""hil/fresh_debian.py at CI size: its arguments, its step list, and the lot it describes — loaded with lanectl's
own configuration loader, so a schema change that would break the long campaign fails here in seconds."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from hil import fresh_debian as fd
from lanectl.config import load_config


def test_arguments_default_to_a_cache_outside_the_checkout() -> None:
    args = fd.parse_args([])
    assert args.rootfs == fd.DEFAULT_ROOTFS and not args.keep and args.wheel is None
    assert fd.parse_args(["--keep", "--rootfs", "/srv/deb"]).keep


@pytest.mark.parametrize("rootfs", ["/", str(fd.CHECKOUT), str(fd.CHECKOUT / "var" / "rootfs")])
def test_a_rootfs_that_is_the_host_or_inside_the_checkout_is_refused(rootfs: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        fd.parse_args(["--rootfs", rootfs])
    assert exc.value.code == 2
    assert "--rootfs must be a directory of its own" in capsys.readouterr().err


def test_not_root_exits_2_before_touching_anything(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(fd.os, "geteuid", lambda: 1000)
    assert fd.main(["--rootfs", "/nonexistent/lanectl-fresh"]) == 2
    assert "run as root" in capsys.readouterr().err


def test_the_steps_run_in_the_installers_order() -> None:
    names = [name for name, _ in fd.STEPS]
    assert len(names) == len(set(names))
    order = ["rootfs", "boot", "pip-install", "install-service", "configure", "start", "security", "drive",
             "metrics", "backup", "restore", "journal"]
    assert [n for n in names if n in order] == order


def test_every_series_of_the_issue_is_checked() -> None:
    names = {name for _, name, _ in fd.SERIES}
    assert {"lanectl_decisions_total", "lanectl_plate_to_command_seconds", "lanectl_barrier_commands_total",
            "lanectl_device_faults_total", "lanectl_device_fault_duration_seconds", "lanectl_outbox_pending",
            "lanectl_outbox_oldest_age_seconds", "lanectl_settlement_attempts_total", "lanectl_late_payments_total",
            "lanectl_http_requests_total", "lanectl_database_size_bytes"} <= names


def test_the_lot_it_describes_loads_with_its_keys(tmp_path: Path) -> None:
    example = (resources.files("lanectl") / "data" / "config" / "example" / "site.yaml").read_text("utf-8")
    secrets = tmp_path / "secrets.yaml"
    site = fd.site_yaml(example, "03:31").replace("/etc/lanectl/secrets.yaml", str(secrets))
    (tmp_path / "site.yaml").write_text(site, encoding="utf-8")
    (tmp_path / "lanes").mkdir()
    for lane, direction, unit in fd.LANES:
        (tmp_path / "lanes" / f"{lane}.yaml").write_text(fd.lane_yaml(lane, direction, unit), encoding="utf-8")
    secrets.write_text(fd.SECRETS_YAML, encoding="utf-8")
    secrets.chmod(0o600)

    config = load_config(tmp_path)

    assert config.site.http.listen == f"127.0.0.1:{fd.HTTP_PORT}"
    assert config.site.lan.listen == f"127.0.0.1:{fd.LAN_PORT}"
    assert config.site.housekeeping.backup_at == "03:31"
    assert config.site.tariffs.default.free_minutes == 0  # a stay of seconds owes: the wallet has to pay
    assert config.site.uploads.webhook is not None and config.site.uploads.webhook.token is not None
    assert config.secret(config.site.uploads.webhook.token, "webhook") == fd.BACKOFFICE_TOKEN
    assert config.secret(config.site.payments.bolink.key, "bolink") == fd.BOLINK_KEY
    assert [(lane.id, lane.direction, tuple(lane.payments)) for lane in config.lanes] == [
        ("east_in", "entry", ()), ("east_out", "exit", ("bolink",))]
    for lane in config.lanes:
        camera = lane.devices.camera
        assert camera is not None and camera.basic_auth is not None
        assert config.secret(camera.basic_auth.password, lane.id) == fd.CAMERA_PASSWORD
        assert lane.devices.barrier.tcp_port == fd.MODBUS_PORT


def test_an_example_without_the_listen_addresses_it_edits_is_a_failed_step() -> None:
    with pytest.raises(fd.StepFailed, match="listen addresses and free minutes"):
        fd.site_yaml("park_id: '1'\n", "03:31")
