"""Vzenith cameras over MQTT (issue 17 item 5): the ivs_result codec, the lane's plate source on the site bus
(the in-memory broker), and the lane configuration of kind vzenith_mqtt."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from lanectl.adapters.camera_mqtt import VzenithMqttCamera
from lanectl.bootstrap import build_app
from lanectl.cli import main
from lanectl.config import ConfigError, load_config
from lanectl.config.devices import VzenithMqttCameraConfig
from lanectl.core import effects as fx
from lanectl.core.events import IoSnapshot, PlateRead
from lanectl.protocols.vzenith_http import PlateResult, VzenithError
from lanectl.protocols.vzenith_mqtt import camera_topic, decode_license, parse_ivs_result
from tests.fakes import (FakeClock, FakeControlServer, FakeLaneDevices, FakeListener, FakeNotifier, FakeSession,
                         MemoryBroker, MemoryDaemonStore)
from tests.minimal_site import write_minimal_config

SN = "8fcd1c4e-20ca9ecb"
TOPIC = f"device/{SN}/message/up/ivs_result"
JPEG = b"\xff\xd8\xff\xe0 a picture \xff\xd9"


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


NOW = int(FakeClock().now().timestamp())


def ivs_result(plate: str = "粤B12345", *, sn: str = SN, confidence: int = 96, offline: int = 0,
               encode: bool = True, timestamp: Any = NOW, **plate_fields: Any) -> bytes:
    """An ivs_result message as the camera publishes it: the envelope, the license in base64."""
    pr = {"license": b64(plate) if encode else plate, "colorType": 1, "confidence": confidence,
          "isoffline": offline, "plateid": 7, **plate_fields}
    return json.dumps({"id": "iUA4fO7yCGrHZO2C", "sn": sn, "name": "ivs_result", "version": "1.0",
                       "timestamp": timestamp,
                       "payload": {"AlarmInfoPlate": {"channel": 0, "deviceName": "0001", "serialno": sn,
                                                      "result": {"PlateResult": pr}}}}).encode("utf-8")


# --- the codec ------------------------------------------------------------------------------------------------
def test_the_documented_message_gives_the_plate_with_its_base64_license_decoded():
    msg = parse_ivs_result(ivs_result("赣GZ7S13"))
    assert isinstance(msg, PlateResult)
    assert (msg.plate, msg.color, msg.confidence, msg.serialno, msg.plate_id) == ("赣GZ7S13", "blue", 96, SN, 7)
    assert decode_license("6LWjR1o3UzEz") == "赣GZ7S13"  # the vendor's own example


def test_a_bare_alarm_info_plate_with_a_text_license_reads_as_the_http_push_does():
    body = json.dumps({"AlarmInfoPlate": {"serialno": SN, "result": {"PlateResult": {"license": "粤B12345"}}}})
    msg = parse_ivs_result(body.encode())
    assert isinstance(msg, PlateResult) and (msg.plate, msg.serialno) == ("粤B12345", SN)


def test_the_envelope_sn_names_the_camera_and_pictures_come_from_the_mqtt_fields():
    msg = parse_ivs_result(ivs_result(sn="cam-2", full_image_content=base64.b64encode(JPEG).decode()))
    assert isinstance(msg, PlateResult) and msg.serialno == "cam-2" and msg.image == JPEG


@pytest.mark.parametrize("body, says", [
    (b"{not json", "not JSON"),
    (b"\x80\xff\xfe", "neither UTF-8 nor GBK"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"name": "gpio_in", "payload": {}}).encode(), "not an ivs_result"),
    (json.dumps({"name": "ivs_result", "payload": []}).encode(), "payload must be a JSON object"),
    (json.dumps({"name": "ivs_result", "sn": 5, "payload": {}}).encode(), "message.sn"),
    (ivs_result(encode=False, plate="!!!!"), "is not a plate"),
    (ivs_result(plate="hello world"), "is not a plate"),  # base64 of text that is no plate: not a plate either
    (ivs_result(confidence="high"), "confidence"),  # type: ignore[arg-type]
    (ivs_result(timestamp="today"), "message.timestamp"),
])
def test_garbage_is_a_vzenith_error_naming_what_is_wrong(body: bytes, says: str):
    with pytest.raises(VzenithError, match=says):
        parse_ivs_result(body)


def test_the_default_topic_is_the_cameras_own():
    assert camera_topic(SN) == TOPIC == VzenithMqttCameraConfig(kind="vzenith_mqtt", serialno=SN).topic_name


# --- the plate source on the bus ----------------------------------------------------------------------------
class Lane:
    """A camera on an in-memory broker, with the lane side collecting what it emits."""

    def __init__(self, tmp_path: Path, **cfg: Any) -> None:
        self.broker = MemoryBroker()
        self.bus = self.broker.client()
        self.cfg = VzenithMqttCameraConfig(**{"kind": "vzenith_mqtt", "serialno": SN, **cfg})
        self.camera = VzenithMqttCamera("in1", self.cfg, tmp_path / "images", FakeClock(), self.bus)
        self.reads: list[PlateRead] = []
        self.publisher = self.broker.client()  # the camera's own connection

    async def __aenter__(self) -> "Lane":
        self.task = asyncio.create_task(self.camera.run(self.reads.append))
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.camera.aclose()

    async def publish(self, payload: bytes, topic: str = TOPIC) -> None:
        await self.publisher.publish(topic, payload, qos=1)


async def test_a_plate_on_the_cameras_topic_reaches_the_lane_with_its_picture(tmp_path: Path):
    async with Lane(tmp_path) as lane:
        await lane.publish(ivs_result("粤B12345", imageFile=base64.b64encode(JPEG).decode()))
        [read] = lane.reads
        assert (read.plate, read.color, read.confidence, read.source) == ("粤B12345", "blue", 96, "in1-camera")
        assert Path(read.image).read_bytes() == JPEG and Path(read.image).parent == tmp_path / "images" / "in1"
        status = lane.camera.status()
        assert status["pushes"] == status["messages"] == status["images_saved"] == 1
        assert status["topic"] == TOPIC and "open_pending" not in status


async def test_offline_resends_and_low_confidence_reads_are_counted_not_emitted(tmp_path: Path):
    async with Lane(tmp_path, min_confidence=80) as lane:
        await lane.publish(ivs_result(offline=1))
        await lane.publish(ivs_result(confidence=60))
        await lane.publish(ivs_result("粤B54321", confidence=80))
        assert [r.plate for r in lane.reads] == ["粤B54321"]
        c = lane.camera.counters
        assert (c.offline_skipped, c.low_confidence, c.pushes, c.messages) == (1, 1, 3, 3)


def timeval(sec: int) -> dict[str, Any]:
    return {"timeStamp": {"Timeval": {"sec": sec, "usec": 0}}}


async def test_old_recognitions_a_broker_backlog_or_a_retained_message_are_counted_not_emitted(tmp_path: Path):
    async with Lane(tmp_path) as lane:  # max_age_s 60 by default
        await lane.publish(ivs_result("粤B00001", **timeval(NOW - 120)))  # queued while the booth was away
        await lane.publish(ivs_result("粤B00002", timestamp=NOW - 3600))  # no timeStamp: the envelope's time
        await lane.publish(ivs_result("粤B00003", **timeval(NOW - 30)))
        await lane.publish(ivs_result("粤B00004", timestamp=None))  # no time at all: nothing to judge by
        assert [r.plate for r in lane.reads] == ["粤B00003", "粤B00004"]
        assert lane.camera.counters.stale == 2 and lane.camera.status()["stale"] == 2
    async with Lane(tmp_path / "unchecked", max_age_s=None) as lane:  # a camera whose clock is never right
        await lane.publish(ivs_result("粤B00001", **timeval(NOW - 86400 * 365)))
        assert [r.plate for r in lane.reads] == ["粤B00001"]


async def test_garbage_and_another_cameras_plates_are_counted_and_skipped_without_raising(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="lanectl.adapters.camera_mqtt")
    async with Lane(tmp_path) as lane:
        for junk in (b"", b"\xff\xfe", b'{"name": "ivs_result", "payload": null}', ivs_result("not a plate")):
            await lane.publish(junk)  # a handler that raised would surface here (MemoryBus calls it directly)
        await lane.publish(ivs_result(sn="someone-else"))
        await lane.publish(ivs_result("粤B12345"))
        assert [r.plate for r in lane.reads] == ["粤B12345"]
        c = lane.camera.counters
        assert (c.bad, c.wrong_camera, c.messages) == (4, 1, 6)
    bad_logs = [r for r in caplog.records if "skipped:" in r.getMessage() and "camera message" in r.getMessage()]
    assert len(bad_logs) == 1  # once per streak, and the recovery is logged
    assert any("readable again after 4 bad ones" in r.getMessage() for r in caplog.records)


async def test_only_the_configured_topic_is_taken(tmp_path: Path):
    async with Lane(tmp_path) as lane:
        await lane.publish(ivs_result(sn="cam-2"), topic="device/cam-2/message/up/ivs_result")
        await lane.publish(ivs_result(), topic=f"device/{SN}/message/up/gpio_in")
        assert lane.reads == [] and lane.camera.counters.messages == 0
        assert lane.bus.handlers == [(TOPIC, lane.camera.on_message)]


async def test_a_configured_topic_is_subscribed_exactly_and_a_plate_while_the_lane_is_down_is_dropped(tmp_path):
    lane = Lane(tmp_path, serialno=None, topic="lot/east/cam1/ivs")
    await lane.publish(ivs_result(sn="anything"), topic="lot/east/cam1/ivs")  # no serialno: the topic decides
    assert lane.camera.counters.dropped == 1 and lane.reads == []


async def test_a_handler_bug_is_counted_not_raised(tmp_path: Path, monkeypatch):
    async with Lane(tmp_path) as lane:
        async def broken(*_a: Any) -> None:
            raise RuntimeError("bug")
        monkeypatch.setattr(lane.camera, "_push", broken)
        await lane.publish(ivs_result())
        assert lane.camera.counters.bad == 1


# --- configuration ------------------------------------------------------------------------------------------
BUS = {"enabled": True, "booth_id": "boothA", "brokers": ["mqtt://10.0.0.5:1883"], "username": "boothA",
       "password": {"env": "LANECTL_TEST_BUS_PW"}}


def problems(d: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(d)
    return err.value.problems


def with_mqtt_camera(cfg: Path, camera: str, *, bus: bool = True, lane: str = "east-in.yaml",
                     extra: str = "") -> Path:
    """The lane keeps its Modbus barrier; its serial plate reader is replaced by a camera over MQTT."""
    p = cfg / "lanes" / lane
    text = p.read_text()
    p.write_text(text[:text.index("  plate_reader:")] + f"  camera: {camera}\n{extra}" + text[text.index("rules:"):])
    if bus:
        site = yaml.safe_load((cfg / "site.yaml").read_text())
        site["site_bus"] = BUS
        (cfg / "site.yaml").write_text(yaml.safe_dump(site, allow_unicode=True))
    return p


def test_a_camera_over_mqtt_loads_with_the_site_bus(example_config: Path, monkeypatch):
    monkeypatch.setenv("LANECTL_TEST_BUS_PW", "pw")
    with_mqtt_camera(example_config, f"{{kind: vzenith_mqtt, serialno: {SN}, min_confidence: 70}}")
    lane = next(lane for lane in load_config(example_config).lanes if lane.id == "east_in")
    assert isinstance(lane.devices.camera, VzenithMqttCameraConfig)
    assert lane.devices.camera.topic_name == TOPIC and lane.devices.barrier is not None


def test_a_camera_over_mqtt_needs_the_site_bus(example_config: Path, capsys):
    lane = with_mqtt_camera(example_config, f"{{kind: vzenith_mqtt, serialno: {SN}}}", bus=False)
    [msg] = problems(example_config)
    assert msg.startswith(f"{lane}: devices.camera.kind: vzenith_mqtt needs the site bus: set site_bus.enabled")
    assert main(["check-config", str(example_config)]) == 1
    assert "needs the site bus" in capsys.readouterr().err


@pytest.mark.parametrize("camera, expected", [
    ("{kind: vzenith_mqtt}", "devices.camera.vzenith_mqtt: give serialno"),
    ("{kind: vzenith_mqtt, topic: 'device/+/message/up/ivs_result'}", "devices.camera.vzenith_mqtt.topic: "
                                                                       "'device/+/message/up/ivs_result': no wildcards"),
    ("{kind: vzenith_mqtt, topic: 'lot/#'}", "no wildcards"),
    ("{kind: vzenith_mqtt, serialno: 'a/b'}", "devices.camera.vzenith_mqtt.serialno"),
    (f"{{kind: vzenith_mqtt, serialno: {SN}, relay_barrier: true}}", "its relay cannot raise the barrier"),
    (f"{{kind: vzenith_mqtt, serialno: {SN}, basic_auth: {{username: a, password: {{env: X}}}}}}",
     "devices.camera.vzenith_mqtt.basic_auth"),
])
def test_bad_mqtt_camera_sections_are_named(example_config: Path, monkeypatch, camera: str, expected: str):
    monkeypatch.setenv("LANECTL_TEST_BUS_PW", "pw")
    lane = with_mqtt_camera(example_config, camera)
    found = problems(example_config)
    assert any(p.startswith(f"{lane}: ") and expected in p for p in found), found


def test_two_lanes_on_one_camera_topic_are_refused(example_config: Path, monkeypatch):
    monkeypatch.setenv("LANECTL_TEST_BUS_PW", "pw")
    lanes = sorted((example_config / "lanes").glob("*.yaml"))
    first = with_mqtt_camera(example_config, f"{{kind: vzenith_mqtt, serialno: {SN}}}", lane=lanes[0].name)
    second = with_mqtt_camera(example_config, f"{{kind: vzenith_mqtt, topic: {TOPIC}}}", lane=lanes[1].name)
    found = problems(example_config)
    assert any(p.startswith(f"{second}: devices.camera.topic: {TOPIC} is already lane") and str(first) in p
               for p in found), found


def test_a_board_behind_a_camera_over_mqtt_is_refused(example_config: Path, monkeypatch):
    monkeypatch.setenv("LANECTL_TEST_BUS_PW", "pw")
    lane = with_mqtt_camera(example_config, f"{{kind: vzenith_mqtt, serialno: {SN}}}",
                            extra="  display: {kind: led_board, via_camera: true}\n")
    found = problems(example_config)
    assert any(p.startswith(f"{lane}: ") and "a camera over MQTT gets no reply" in p for p in found), found


# --- the daemon built from fakes, on the in-memory broker ---------------------------------------------------
async def test_the_daemon_lets_a_car_in_on_a_plate_from_its_camera_over_the_bus(tmp_path: Path):
    etc = write_minimal_config(tmp_path, site_bus={"enabled": True, "booth_id": "boothA"})
    (etc / "lanes" / "in1.yaml").write_text(f"""id: in1
direction: entry
devices:
  barrier: {{kind: modbus_rtu, port: /dev/null-rs485, unit: 1}}
  camera: {{kind: vzenith_mqtt, serialno: {SN}}}
""")
    broker, devices, store, listeners = MemoryBroker(), FakeLaneDevices(), MemoryDaemonStore(), []

    def listener(*args: Any, **kwargs: Any) -> FakeListener:
        listeners.append(FakeListener(*args, **kwargs))
        return listeners[-1]
    app = build_app(load_config(etc), store=store, clock=FakeClock(), devices=devices, listener=listener,
                    control=FakeControlServer, session=FakeSession, notifier=FakeNotifier(),
                    raise_nofile=lambda: (4096, 4096), site_bus=broker.client())
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    await asyncio.wait_for(app.ready.wait(), 5)
    # no HTTP route for a camera over MQTT (the LAN face opens for /metrics only)
    assert not [path for server in listeners for path in server.routes if path.startswith("/camera")]

    barrier = devices.barriers["in1"]
    await barrier.send(IoSnapshot(arming=True, safety=False, up_limit=False, down_limit=True))
    await broker.client().publish(TOPIC, ivs_result("粤B12345"))
    await asyncio.wait_for(barrier.opened.wait(), 5)
    assert [(r.kind, r.plate) for r in store.written(fx.NewRecord)] == [("entry", "粤B12345")]
    assert (await app.status())["lanes"]["in1"]["camera"]["messages"] == 1
    stop.set()
    await asyncio.wait_for(daemon, 3)
