"""The `site_bus:` section of site.yaml: defaults off, every mistake named by file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lanectl.cli import main
from lanectl.config import ConfigError, load_config
from lanectl.config.site_bus import broker_address


def with_bus(cfg: Path, bus: dict) -> Path:
    site = yaml.safe_load((cfg / "site.yaml").read_text())
    site["site_bus"] = bus
    (cfg / "site.yaml").write_text(yaml.safe_dump(site, allow_unicode=True))
    return cfg


def problems(d: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(d)
    return err.value.problems


ENABLED = {"enabled": True, "booth_id": "boothA", "brokers": ["mqtt://10.0.0.5:1883", "mqtt://10.0.0.6"],
           "username": "boothA", "password": {"secret": "bus_password"}, "keepalive_s": 10}


def test_the_bus_is_off_unless_configured(example_config: Path):
    assert load_config(example_config).site.site_bus.enabled is False


def test_an_enabled_bus_loads_with_its_brokers_in_order_and_its_password(example_config: Path):
    (example_config / "secrets.yaml").write_text("backoffice_token: t0ken\nbus_password: pw\n")
    c = load_config(with_bus(example_config, ENABLED))
    bus = c.site.site_bus
    assert [broker_address(u) for u in bus.brokers] == [("10.0.0.5", 1883, False), ("10.0.0.6", 1883, False)]
    assert c.secret(bus.password, "site_bus.password") == "pw" and bus.keepalive_s == 10


def test_an_enabled_bus_needs_its_password_secret(example_config: Path):
    [msg] = problems(with_bus(example_config, ENABLED))
    assert "site.yaml" in msg and "site_bus.password" in msg and "bus_password" in msg


def test_a_disabled_bus_does_not_need_its_secrets(example_config: Path):
    load_config(with_bus(example_config, {**ENABLED, "enabled": False}))


@pytest.mark.parametrize("change, key, reason", [
    ({"brokers": ["tcp://10.0.0.5:1883"]}, "site_bus.brokers.0", "mqtt://HOST"),
    ({"brokers": ["mqtt://10.0.0.5:99999"]}, "site_bus.brokers.0", "port"),
    ({"brokers": ["mqtt://user:pw@10.0.0.5"]}, "site_bus.brokers.0", "credentials go in username"),
    ({"brokers": []}, "site_bus", "at least one"),
    ({"booth_id": "booth A"}, "site_bus.booth_id", "pattern"),
    ({"keepalive_s": 1}, "site_bus.keepalive_s", "greater than or equal to 5"),
    ({"password": None}, "site_bus", "both username and password"),
    ({"brokers": ["mqtts://bus.lot.example:8883"]}, "site_bus", "give tls"),
    ({"keep_alive": 10}, "site_bus.keep_alive", "unknown key"),
])
def test_mistakes_name_the_key_and_the_reason(example_config: Path, change: dict, key: str, reason: str):
    msgs = problems(with_bus(example_config, {**ENABLED, **change}))
    assert any("site.yaml: " + key + ":" in m and reason in m for m in msgs), msgs


def test_tls_files_are_taken_from_the_config_directory_and_must_exist(example_config: Path):
    (example_config / "secrets.yaml").write_text("backoffice_token: t0ken\nbus_password: pw\n")
    (example_config / "ca.pem").write_text("x")
    bus = {"enabled": True, "brokers": ["mqtts://bus.lot.example:8883"],
           "tls": {"ca": "ca.pem", "cert": "booth.pem", "key": "booth.key"}}
    msgs = problems(with_bus(example_config, bus))
    assert [m.split(": ", 2)[1] for m in msgs] == ["site_bus.tls.cert", "site_bus.tls.key"]
    assert all("file not found" in m and str(example_config) in m for m in msgs)
    (example_config / "booth.pem").write_text("x")
    (example_config / "booth.key").write_text("x")
    c = load_config(example_config)
    assert c.site.site_bus.tls.ca == example_config / "ca.pem"
    assert broker_address(c.site.site_bus.brokers[0]) == ("bus.lot.example", 8883, True)


def test_check_config_lists_a_bus_mistake(example_config: Path, capsys):
    with_bus(example_config, {**ENABLED, "brokers": ["http://10.0.0.5"]})
    assert main(["check-config", str(example_config)]) == 1
    err = capsys.readouterr().err
    assert "site.yaml: site_bus.brokers.0: expected mqtt://HOST[:PORT]" in err


def test_the_commented_example_in_config_example_is_valid(example_config: Path):
    lines = (example_config / "site.yaml").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("# site_bus:")))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("#   "))
    block = [line[2:] for line in lines[start:end]]
    (example_config / "site.yaml").write_text("\n".join(lines[:start] + block + lines[end:]) + "\n")
    (example_config / "secrets.yaml").write_text("backoffice_token: t0ken\nsite_bus_password: pw\nsite_key: k\n")
    (example_config / "bus").mkdir()
    (example_config / "bus" / "ca.pem").write_text("x")
    bus = load_config(example_config).site.site_bus
    assert bus.enabled and bus.booth_id == "boothA" and len(bus.brokers) == 2 and bus.site_key is not None
