"""Configuration loading: every problem names the file, the key and the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lanectl.cli import main
from lanectl.config import ConfigError, load_config

@pytest.fixture
def cfg(example_config: Path) -> Path:
    return example_config


def problems(d: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(d)
    return err.value.problems


def test_example_configuration_loads(cfg: Path):
    c = load_config(cfg)
    assert [lane.id for lane in c.lanes] == ["east_in", "east_out"]
    assert c.site.database == cfg / "state" / "lanectl.db"
    assert c.lanes[1].devices.barrier.unit == 2
    assert c.secret(c.site.uploads.webhook.token, "x") == "t0ken"


def test_a_typo_is_an_error_naming_file_and_key(cfg: Path):
    p = cfg / "lanes" / "east-in.yaml"
    p.write_text(p.read_text().replace("duplicate_window_s", "duplicate_windows"))
    [msg] = problems(cfg)
    assert str(p) in msg and "rules.duplicate_windows" in msg and "unknown key" in msg


def test_bad_values_are_named(cfg: Path):
    (cfg / "site.yaml").write_text((cfg / "site.yaml").read_text().replace("Asia/Shanghai", "Mars/Olympus"))
    p = cfg / "lanes" / "east-out.yaml"
    p.write_text(p.read_text().replace("direction: exit", "direction: sideways"))
    msgs = problems(cfg)
    assert any("site.yaml: timezone: unknown time zone 'Mars/Olympus'" in m for m in msgs)
    assert any("east-out.yaml: direction:" in m for m in msgs)


def test_broken_yaml_names_the_line(cfg: Path):
    (cfg / "site.yaml").write_text("park_id: 1\nhttp: [unclosed\n")
    [msg] = problems(cfg)
    assert "site.yaml: line" in msg and "invalid YAML" in msg


def test_missing_secret_is_reported(cfg: Path):
    (cfg / "secrets.yaml").write_text("other: x\n")
    [msg] = problems(cfg)
    assert "backoffice_token" in msg and "uploads.webhook.token" in msg


def test_env_secret_reference_must_be_set(cfg: Path, monkeypatch):
    s = (cfg / "site.yaml").read_text().replace("{secret: backoffice_token}", "{env: LANECTL_TEST_TOKEN}")
    (cfg / "site.yaml").write_text(s)
    monkeypatch.delenv("LANECTL_TEST_TOKEN", raising=False)
    assert "LANECTL_TEST_TOKEN is not set" in problems(cfg)[0]
    monkeypatch.setenv("LANECTL_TEST_TOKEN", "abc")
    load_config(cfg)


def test_environment_overrides_the_site_file(cfg: Path, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("LANECTL_DATABASE", str(tmp_path / "other.db"))
    monkeypatch.setenv("LANECTL_CONTROL__SOCKET", "/tmp/x.sock")
    c = load_config(cfg)
    assert c.site.database == tmp_path / "other.db"
    assert str(c.site.control.socket) == "/tmp/x.sock"


def test_a_bad_environment_override_names_the_variable_and_the_reason(cfg: Path, monkeypatch):
    monkeypatch.setenv("LANECTL_HTTP__MAX_BODY_KB", "lots")
    [msg] = problems(cfg)
    assert "site.yaml" in msg and "http.max_body_kb" in msg and "integer" in msg


def test_only_variables_naming_a_site_key_are_overrides():
    from lanectl.config.site import env_overrides
    assert env_overrides({"LANECTL_DATABASE": "x", "lanectl_control__socket": "y", "LANECTL_TEST_TOKEN": "z",
                          "LANECTL_LOG_LEVEL": "INFO", "PATH": "/bin"}) == ["LANECTL_DATABASE",
                                                                             "lanectl_control__socket"]


def test_without_an_override_pydantic_settings_is_not_loaded(cfg: Path):
    """Its sources cost the daemon ~1.2 MiB: loaded only when an override asks for them."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LANECTL_")}
    probe = ("import sys; from lanectl.config import load_config; load_config(sys.argv[1]); "
             "print('pydantic_settings' in sys.modules)")
    run = lambda e: subprocess.run([sys.executable, "-c", probe, str(cfg)], env=e, capture_output=True, text=True,
                                   check=True).stdout.strip()
    assert run(env) == "False"
    assert run({**env, "LANECTL_DATABASE": str(cfg / "x.db")}) == "True"


def test_lanes_sharing_a_bus_need_distinct_units_and_same_line(cfg: Path):
    p = cfg / "lanes" / "east-out.yaml"
    p.write_text(p.read_text().replace("unit: 2", "unit: 1"))
    [msg] = problems(cfg)
    assert "unit 1" in msg and "east_in" in msg
    p.write_text(p.read_text().replace("unit: 1", "unit: 2").replace("baudrate: 9600", "baudrate: 19200", 1))
    [msg] = problems(cfg)
    assert "other line settings" in msg


def test_duplicate_lane_ids_and_missing_lanes(cfg: Path):
    shutil.copy(cfg / "lanes" / "east-in.yaml", cfg / "lanes" / "zz-copy.yaml")
    assert any("already used" in m for m in problems(cfg))
    shutil.rmtree(cfg / "lanes")
    assert any("no lane files" in m for m in problems(cfg))


def test_check_config_command_exit_codes(cfg: Path, capsys):
    assert main(["check-config", str(cfg)]) == 0
    assert "2 lane(s)" in capsys.readouterr().out
    p = cfg / "lanes" / "east-in.yaml"
    p.write_text(p.read_text().replace("kind: modbus_rtu", "kind: modbus_rtux"))
    assert main(["check-config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "east-in.yaml" in err and "devices.barrier" in err


def test_a_bad_tariff_is_rejected_with_file_key_and_reason(cfg: Path, capsys):
    site = cfg / "site.yaml"
    site.write_text(site.read_text().replace("cap_fen: 2000", "cap_fen: 300"))  # below the 500 first hour
    assert main(["check-config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "site.yaml: tariffs.default.cap_fen:" in err
    site.write_text(site.read_text().replace("cap_fen: 300", "cap_fen: 2000").replace("first_fen: 500",
                                                                                       "first_fen: -5"))
    assert main(["check-config", str(cfg)]) == 1
    assert "tariffs.default.first_fen" in capsys.readouterr().err


def test_a_bad_vehicle_list_is_rejected(cfg: Path):
    site = cfg / "site.yaml"
    site.write_text(site.read_text().replace("whitelist: {粤B00001", "whitelist: {粤B20001"))  # also monthly
    [msg] = problems(cfg)
    assert "vehicles" in msg and "粤B20001" in msg


PAYMENTS = """
payments:
  bolink: {base_url: "https://beta.bolink.club/", union_id: 200208, park_id: "21835", key: {secret: bolink_key}}
"""


def with_payments(cfg: Path, lane_extra: str, site_extra: str = PAYMENTS) -> None:
    (cfg / "site.yaml").write_text((cfg / "site.yaml").read_text() + site_extra)
    (cfg / "secrets.yaml").write_text((cfg / "secrets.yaml").read_text() + "bolink_key: K\n")
    p = cfg / "lanes" / "east-out.yaml"
    p.write_text(p.read_text() + lane_extra)


def test_payments_configuration_loads_with_the_key_by_reference(cfg: Path):
    with_payments(cfg, "payments: [bolink, bolink_etc]\netc_lane_no: '000139'\nchannel_id: A1\n")
    c = load_config(cfg)
    bolink = c.site.payments.bolink
    assert bolink.base_url == "https://beta.bolink.club" and c.secret(bolink.key, "x") == "K"
    assert bolink.uplink == "api"
    assert (c.lane("east_out").payments, c.lane("east_out").channel) == (("bolink", "bolink_etc"), "A1")


@pytest.mark.parametrize("lane_extra, site_extra, expected", [
    ("payments: [xft]\n", PAYMENTS, "payments: xft has no credentials: add payments.xft"),
    ("payments: [bolink_etc]\n", PAYMENTS, "etc_lane_no: required with bolink_etc"),
    ("payments: [bolink, bolink]\n", PAYMENTS, "a provider is listed twice"),
    ("payments: [alipay]\n", PAYMENTS, "payments.0"),
    ("", PAYMENTS.replace("https://beta.bolink.club/", "beta.bolink.club"), "expected an http:// or https:// URL"),
    ("", PAYMENTS.replace("}}", "}, callback_path: bolink}"), "callback_path: must start with /"),
])
def test_bad_payments_configuration_is_named(cfg: Path, lane_extra, site_extra, expected):
    with_payments(cfg, lane_extra, site_extra)
    assert any(expected in p for p in problems(cfg)), problems(cfg)


def test_bolink_uplink_is_api_unless_the_lot_is_only_on_the_sdk_channel(cfg: Path):
    with_payments(cfg, "", PAYMENTS.replace("}}", "}, downlink: http_mode, uplink: sdk}"))
    assert load_config(cfg).site.payments.bolink.uplink == "sdk"
    with_payments(cfg, "", "")
    (cfg / "site.yaml").write_text((cfg / "site.yaml").read_text().replace("uplink: sdk", "uplink: soap"))
    assert any("uplink" in p for p in problems(cfg)), problems(cfg)


def test_an_entry_lane_does_not_charge(cfg: Path):
    with_payments(cfg, "")
    p = cfg / "lanes" / "east-in.yaml"
    p.write_text(p.read_text() + "payments: [bolink]\n")
    [msg] = problems(cfg)
    assert str(p) in msg and "only exit lanes charge" in msg


def test_a_camera_relay_needs_an_auto_closing_barrier(cfg: Path):
    p = cfg / "lanes" / "east-in.yaml"
    text = p.read_text()
    camera = "{kind: vzenith_http, relay_barrier: true, insecure: true}"
    text = text[:text.index("devices:")] + f"devices:\n  camera: {camera}\n" + text[text.index("rules:"):]
    p.write_text(text)
    [msg] = problems(cfg)
    assert str(p) in msg and "rules.auto_close: must be true with devices.camera.relay_barrier" in msg


def test_etc_that_needs_pictures_needs_a_public_url_and_a_picture_camera(cfg: Path):
    my = PAYMENTS.replace('}}', '}, etc_pay_type: my}')
    with_payments(cfg, "payments: [bolink_etc]\netc_lane_no: '000139'\n", my)
    lane = cfg / "lanes" / "east-out.yaml"
    found = problems(cfg)
    assert any(str(lane) in p and "set images.public_url in site.yaml" in p for p in found), found
    assert any(str(lane) in p and "devices.camera: bolink_etc with etc_pay_type my needs the exit picture" in p
               for p in found), found
    site = cfg / "site.yaml"
    site.write_text(site.read_text() + "images: {public_url: lot.example.com/images}\n")
    assert any("images.public_url" in p and "expected an http:// or https:// URL" in p for p in problems(cfg))
    site.write_text(site.read_text().replace("lot.example.com/images", "https://lot.example.com/images/"))
    text = lane.read_text()
    lane.write_text(text[:text.index("devices:")] + "devices:\n  camera: {kind: vzenith_http, insecure: true}\n" +
                    text[text.index("rules:"):])
    c = load_config(cfg)
    assert c.site.images.public_url == "https://lot.example.com/images"



def test_flood_limits_have_defaults_and_bounds(cfg: Path):
    c = load_config(cfg)
    assert (c.site.http.max_connections, c.site.http.idle_timeout_s) == (256, 15)
    assert (c.site.control.max_connections, c.site.control.idle_timeout_s) == (32, 10)
    p = cfg / "site.yaml"
    p.write_text(p.read_text().replace("max_connections: 256", "max_connections: 0")
                 .replace("idle_timeout_s: 10", "idle_timeout_s: -1").replace("idle_timeout_s: 15", "idle_timout_s: 5"))
    msgs = problems(cfg)
    assert any("http.max_connections" in m for m in msgs)
    assert any("control.idle_timeout_s" in m for m in msgs)
    assert any("http.idle_timout_s" in m and "unknown key" in m for m in msgs)


# ---------------------------------------------------------------- the secrets file

def test_secrets_file_readable_by_others_is_refused(cfg: Path):
    (cfg / "secrets.yaml").chmod(0o644)
    [msg] = problems(cfg)
    assert str(cfg / "secrets.yaml") in msg and "mode 0644" in msg and f"chmod 640 {cfg / 'secrets.yaml'}" in msg
    (cfg / "secrets.yaml").chmod(0o604)  # writable by others is no better
    assert "mode 0604" in problems(cfg)[0]
    (cfg / "secrets.yaml").chmod(0o640)  # owner and group only: fine
    load_config(cfg)


def test_secrets_file_readable_by_others_is_refused_even_when_unused(cfg: Path):
    site = cfg / "site.yaml"
    site.write_text(site.read_text().replace("    token: {secret: backoffice_token}\n", ""))
    (cfg / "secrets.yaml").chmod(0o666)
    assert "chmod 640" in problems(cfg)[0]


def test_missing_secrets_file_is_an_error_only_when_a_secret_is_referenced(cfg: Path):
    (cfg / "secrets.yaml").unlink()
    [msg] = problems(cfg)
    assert str(cfg / "secrets.yaml") in msg and "file not found" in msg and "backoffice_token" in msg
    site = cfg / "site.yaml"
    site.write_text(site.read_text().replace("    token: {secret: backoffice_token}\n", ""))
    c = load_config(cfg)
    assert any("secrets.yaml" in w and "nothing enabled refers to it" in w for w in c.warnings)


def test_a_secret_without_a_secrets_file_names_the_key(cfg: Path):
    site = cfg / "site.yaml"
    site.write_text(site.read_text().replace("secrets_file: secrets.yaml", "# no secrets file"))
    [msg] = problems(cfg)
    assert "uploads.webhook.token" in msg and "backoffice_token" in msg and "secrets_file" in msg


def test_every_referenced_secret_is_collected_generically(cfg: Path):
    from lanectl.config import secret_refs
    site = cfg / "site.yaml"
    site.write_text(site.read_text() + "payments:\n  tdzn: {url: 'https://p.example.invalid/api', pid: '1', "
                    "key: {env: LANECTL_TEST_TDZN}, park_code: T/1}\n")
    c = load_config(cfg, credentials=False)
    keys = {key: (ref.env, ref.secret) for key, ref in secret_refs(c.site)}
    assert keys == {"uploads.webhook.token": (None, "backoffice_token"),
                    "payments.tdzn.key": ("LANECTL_TEST_TDZN", None)}


def test_without_credentials_no_secret_is_read(cfg: Path, monkeypatch):
    (cfg / "secrets.yaml").unlink()
    c = load_config(cfg, credentials=False)
    assert c.secrets == {} and c.site.uploads.webhook is not None


def test_the_shipped_example_checks_on_a_fresh_machine(capsys):
    """config/example as shipped (secrets_file /etc/lanectl/secrets.yaml, which a fresh machine lacks)."""
    from tests.conftest import EXAMPLE
    if Path("/etc/lanectl/secrets.yaml").exists():
        pytest.skip("this machine has a real secrets file")
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "ok: park 21835" in out and "nothing enabled refers to it" in out


# --- the camera's face and its authentication ---------------------------------------------------------------
def with_camera(cfg: Path, camera: str, secrets: str = "") -> Path:
    """east_in with only an HTTP camera; extra lines for the secrets file."""
    p = cfg / "lanes" / "east-in.yaml"
    text = p.read_text()
    p.write_text(text[:text.index("devices:")] + f"devices:\n  camera: {camera}\n" + text[text.index("rules:"):])
    (cfg / "secrets.yaml").write_text((cfg / "secrets.yaml").read_text() + secrets)
    return p


def test_a_camera_lane_without_authentication_is_refused_naming_file_key_and_reason(cfg: Path, capsys):
    lane = with_camera(cfg, "{kind: vzenith_http, allow_from: [192.168.10.21]}")
    [msg] = problems(cfg)
    assert msg.startswith(f"{lane}: devices.camera: no authentication: give basic_auth")
    assert "insecure: true" in msg and "allow_from alone is not authentication" in msg
    assert main(["check-config", str(cfg)]) == 1
    assert "devices.camera: no authentication" in capsys.readouterr().err


def test_insecure_true_is_accepted_and_the_loopback_lan_listener_is_a_warning(cfg: Path, capsys):
    with_camera(cfg, "{kind: vzenith_http, insecure: true}  # a bench camera")
    c = load_config(cfg)
    assert c.lanes[0].devices.camera.insecure and c.site.lan.listen == "127.0.0.1:8781"
    assert main(["check-config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "lan.listen: 127.0.0.1:8781 is loopback" in out
    assert "east-in.yaml: devices.camera.insecure: pushes are accepted without credentials" in out
    site = cfg / "site.yaml"
    site.write_text(site.read_text() + "lan: {listen: '192.168.10.2:8781', max_connections: 16}\n")
    c = load_config(cfg)
    assert (c.site.lan.host, c.site.lan.port, c.site.lan.max_connections) == ("192.168.10.2", 8781, 16)
    assert not any("is loopback" in w for w in c.warnings) and any("devices.camera.insecure" in w for w in c.warnings)


def test_camera_credentials_come_from_the_secrets_file_and_are_checked(cfg: Path):
    basic = "{kind: vzenith_http, basic_auth: {username: cam1, password: {secret: cam1_pw}}}"
    with_camera(cfg, basic, "cam1_pw: correct-horse\n")
    camera = load_config(cfg).lanes[0].devices.camera
    assert camera.basic_auth.username == "cam1" and camera.authenticated
    lane = with_camera(cfg, "{kind: vzenith_http, token: {secret: cam1_token}}", "cam1_token: short\n")
    [msg] = problems(cfg)
    assert msg.startswith(f"{lane}: devices.camera.token: the secret must be at least 16 characters")
    with_camera(cfg, "{kind: vzenith_http, token: {secret: nowhere}}")
    [msg] = problems(cfg)
    assert f"{lane}: devices.camera.token: key 'nowhere' not found in secrets file" in msg


@pytest.mark.parametrize("camera, expected", [
    ("{kind: vzenith_http, insecure: true, token: {secret: t}}",
     "devices.camera.vzenith_http: insecure: true with basic_auth"),
    ("{kind: vzenith_http, insecure: true, allow_from: [192.168.10.300]}", "devices.camera.vzenith_http.allow_from: "
     "'192.168.10.300' is not an IP address or network"),
    ("{kind: vzenith_http, basic_auth: {username: 'a:b', password: {secret: x}}}",
     "devices.camera.vzenith_http.basic_auth.username: a basic-auth user name cannot contain ':'"),
    ("{kind: vzenith_http, basic_auth: {username: cam, password: inline}}",
     "devices.camera.vzenith_http.basic_auth.password"),
    ("{kind: vzenith_http, insecure: true, allow: [10.0.0.1]}", "devices.camera.vzenith_http.allow: unknown key"),
])
def test_bad_camera_authentication_sections_are_named(cfg: Path, camera: str, expected: str):
    lane = with_camera(cfg, camera)
    found = problems(cfg)
    assert any(p.startswith(f"{lane}: ") and expected in p for p in found), found


def test_the_lan_listener_is_validated_like_the_public_one(cfg: Path):
    (cfg / "site.yaml").write_text((cfg / "site.yaml").read_text() + "lan: {listen: 'booth-lan', body_timout_s: 1}\n")
    msgs = problems(cfg)
    assert any("lan.listen: expected HOST:PORT" in m for m in msgs), msgs
    assert any("lan.body_timout_s: unknown key" in m for m in msgs), msgs


def test_the_example_camera_section_loads_once_uncommented(cfg: Path):
    p = cfg / "lanes" / "east-in.yaml"
    lines = p.read_text().splitlines()
    start, end = lines.index("  # camera:"), lines.index("rules:")
    lines[start:end] = [line[:2] + line[4:] for line in lines[start:end]]
    p.write_text("\n".join(lines) + "\n")
    (cfg / "secrets.yaml").write_text((cfg / "secrets.yaml").read_text() + "east_in_camera_password: pw-0123\n")
    camera = load_config(cfg).lane("east_in").devices.camera
    assert camera.basic_auth.username == "east_in_cam" and str(camera.allow_from[0]) == "192.168.10.21/32"


def test_metrics_are_on_by_default_and_their_path_must_be_their_own(tmp_path: Path):
    from tests.minimal_site import write_minimal_config
    assert load_config(write_minimal_config(tmp_path / "a")).site.metrics.path == "/metrics"
    for n, (metrics, said) in enumerate((({"path": "/healthz"}, "metrics.path: expected a path of its own"),
                                         ({"path": "metrics"}, "metrics.path: expected a path of its own"),
                                         ({"enabeld": False}, "metrics.enabeld: unknown key"))):
        etc = write_minimal_config(tmp_path / str(n), metrics=metrics)
        with pytest.raises(ConfigError) as err:
            load_config(etc)
        assert f"{etc / 'site.yaml'}: {said}" in str(err.value)


def test_a_lan_listener_on_every_interface_is_a_warning_while_it_serves_metrics(tmp_path: Path, capsys):
    from tests.minimal_site import write_minimal_config
    etc = write_minimal_config(tmp_path, lan={"listen": "0.0.0.0:8781"})
    assert main(["check-config", str(etc)]) == 0
    assert "lan.listen: 0.0.0.0:8781 listens on every interface" in capsys.readouterr().out
    quiet = write_minimal_config(tmp_path / "off", lan={"listen": "0.0.0.0:8781"}, metrics={"enabled": False})
    assert main(["check-config", str(quiet)]) == 0
    assert "listens on every interface" not in capsys.readouterr().out
