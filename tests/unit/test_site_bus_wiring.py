"""The daemon on the site bus: built only when `site_bus.enabled`, it runs the bus and publishes telemetry; with
the bus down (or without one) the lanes work exactly as before."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from lanectl.adapters.mqtt_bus import MqttBus
from lanectl.bootstrap import build_app, real_adapters
from lanectl.config import load_config
from lanectl.core.events import PlateRead
from lanectl.startup import EX_CONFIG, StartupError
from tests.fakes import (FakeClock, FakeControlServer, FakeLaneDevices, FakeListener, FakeNotifier, FakeSession,
                         MemoryBroker, MemoryDaemonStore)
from tests.minimal_site import AT_THE_LOOP, DEVICE_LANE, write_minimal_config

TELEMETRY = "lanectl/t/boothA/lanes/in1/telemetry"


def config(tmp_path: Path, **bus):
    etc = write_minimal_config(tmp_path, site_bus={"booth_id": "boothA", **bus})
    (etc / "lanes" / "in1.yaml").write_text(DEVICE_LANE)
    return load_config(etc)


def test_no_bus_unless_enabled(tmp_path: Path):
    assert real_adapters(config(tmp_path)).site_bus is None


def test_an_enabled_bus_is_the_mqtt_adapter_with_the_booths_identity(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("BUS_PW", "pw")
    bus = real_adapters(config(tmp_path, enabled=True, username="boothA", password={"env": "BUS_PW"})).site_bus
    assert isinstance(bus, MqttBus) and bus.online_topic == "lanectl/t/boothA/online" and not bus.connected


async def run_daemon(cfg, bus):
    devices = FakeLaneDevices()
    app = build_app(cfg, store=MemoryDaemonStore(), clock=(clock := FakeClock()), devices=devices,
                    listener=FakeListener, control=FakeControlServer, session=FakeSession, notifier=FakeNotifier(),
                    raise_nofile=lambda: (4096, 4096), site_bus=bus)
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    await asyncio.wait_for(app.ready.wait(), 5)
    return app, devices, clock, stop, daemon


async def a_car_enters(devices: FakeLaneDevices) -> None:
    barrier, camera = devices.barriers["in1"], devices.readers["in1"]
    await barrier.send(AT_THE_LOOP)
    await camera.send(PlateRead("粤B12345", "blue", 95, "in1-camera"))
    await asyncio.wait_for(barrier.opened.wait(), 5)


async def test_the_daemon_publishes_lane_telemetry_on_its_bus(tmp_path: Path):
    broker = MemoryBroker()
    app, devices, clock, stop, daemon = await run_daemon(config(tmp_path, enabled=True), broker.client())
    await clock.settle()
    assert json.loads(broker.retained[TELEMETRY])["phase"] == "idle"
    assert json.loads(broker.retained["lanectl/t/boothA/telemetry"])["outbox_pending"] == 0
    await a_car_enters(devices)
    await clock.advance(1.0)
    assert json.loads(broker.retained[TELEMETRY])["last_plate"] == "粤B12345"
    stop.set()
    await asyncio.wait_for(daemon, 3)


@pytest.mark.parametrize("bus", ["down", "none"])
async def test_a_lane_lets_a_car_in_with_the_bus_down_or_absent(tmp_path: Path, bus: str):
    memory = MemoryBroker().client()
    memory.connected = False
    _, devices, _, stop, daemon = await run_daemon(config(tmp_path, enabled=bus == "down"),
                                                   memory if bus == "down" else None)
    await a_car_enters(devices)
    stop.set()
    await asyncio.wait_for(daemon, 3)


def test_tls_files_that_are_not_certificates_stop_the_start_with_one_named_error(tmp_path: Path):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    cfg = config(tmp_path, enabled=True, brokers=["mqtts://127.0.0.1:8883"], tls={"ca": str(tmp_path / "ca.pem")})
    with pytest.raises(StartupError) as err:
        real_adapters(cfg)
    assert err.value.thing == "site_bus.tls" and err.value.exit_code == EX_CONFIG


@pytest.mark.parametrize("bus, line", [
    ({"booth_id": "boothA", "connected": True, "broker": "mqtt://10.0.0.5:1883", "last_error": None},
     "  site bus: booth boothA connected to mqtt://10.0.0.5:1883"),
    ({"booth_id": "boothA", "connected": False, "broker": "mqtt://10.0.0.6:1883",
      "last_error": "cannot reach mqtt://10.0.0.6:1883: Connection refused"},
     "  site bus: booth boothA DOWN: cannot reach mqtt://10.0.0.6:1883: Connection refused (the lanes work on their "
     "own meanwhile)"),
])
def test_status_shows_the_site_bus(monkeypatch, capsys, bus, line):
    from lanectl.cli import main, views
    monkeypatch.setattr(views, "call", lambda args, method, **kw: {"park_id": "t", "lanes": {}, "site_bus": bus})
    assert main(["status"]) == 0
    assert line in capsys.readouterr().out.splitlines()
