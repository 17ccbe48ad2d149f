"""A Vzenith camera over MQTT on a real Mosquitto (issue 17 item 5): `lanectl run` with a lane whose camera is
kind vzenith_mqtt. The camera connects with its own user and publishes its ivs_result to its own topic; the
lane records the entry. Another camera's message is not taken by this lane, and the broker's ACL refuses a
camera publishing outside its topic. An old recognition the broker holds retained is not taken for a car now."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from lanectl.adapters.mqtt_bus import PublishRefused
from tests.bus_clients import bus, running, until, watcher
from tests.minimal_site import write_minimal_config
from tests.mosquitto import USERS, Mosquitto

pytestmark = pytest.mark.timeout(40)
REPO = Path(__file__).resolve().parents[2]
TELEMETRY = "lanectl/t/boothA/lanes/in1/telemetry"


def topic(sn: str) -> str:
    return f"device/{sn}/message/up/ivs_result"


def ivs_result(plate: str, sn: str, age_s: float = 0.0) -> bytes:
    """As the camera publishes it: the envelope, the license as base64 of its UTF-8 text."""
    pr = {"license": base64.b64encode(plate.encode()).decode(), "colorType": 1, "confidence": 95, "isoffline": 0}
    return json.dumps({"id": "x1", "sn": sn, "name": "ivs_result", "version": "1.0", "timestamp": int(time.time() - age_s),
                       "payload": {"AlarmInfoPlate": {"serialno": sn, "result": {"PlateResult": pr}}}}).encode()


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lc-cam-", dir="/tmp"))  # short: the socket path must fit in 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start_daemon(workdir: Path, broker: Mosquitto) -> subprocess.Popen[bytes]:
    etc = write_minimal_config(workdir, site_bus={
        "enabled": True, "booth_id": "boothA", "brokers": [broker.uri], "username": "booth1",
        "password": {"env": "LANECTL_TEST_BUS_PASSWORD"}, "keepalive_s": 5})
    (etc / "lanes" / "in1.yaml").write_text(
        "id: in1\ndirection: entry\ndevices:\n  camera: {kind: vzenith_mqtt, serialno: CAM1, save_images: false}\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1", LANECTL_TEST_BUS_PASSWORD=USERS["booth1"])
    env.pop("NOTIFY_SOCKET", None)
    with open(workdir / "daemon.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "lanectl", "run", "--config", str(etc)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=REPO)


def records(workdir: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(workdir / "db" / "lanectl.db") as db:
        return db.execute("SELECT lane_id, kind, plate FROM records ORDER BY ts").fetchall()


async def test_a_camera_publishing_its_plate_to_its_topic_makes_the_entry_and_nothing_else_gets_in(workdir, mosquitto):
    screen, inbox = watcher(mosquitto, "lanectl/t/#")
    cam1 = bus(mosquitto.uri, user="cam1", booth="cam1", presence=False)
    cam2 = bus(mosquitto.uri, user="cam2", booth="cam2", presence=False)
    async with running(screen), running(cam1), running(cam2):
        # a recognition from ten minutes ago the broker keeps retained: handed to the lane as it subscribes
        await cam1.publish(topic("CAM1"), ivs_result("粤B44444", "CAM1", age_s=600), retain=True)
        daemon = start_daemon(workdir, mosquitto)
        try:
            await inbox.wait("lanectl/t/boothA/online", b"true")
            # the broker refuses a camera writing outside its own topic: another camera's, or the lot's
            with pytest.raises(PublishRefused):
                await cam1.publish(topic("CAM2"), ivs_result("粤B22222", "CAM2"))
            with pytest.raises(PublishRefused):
                await cam1.publish(TELEMETRY, b"{}")
            # another camera on its own topic, even claiming to be CAM1: not this lane's topic
            await cam2.publish(topic("CAM2"), ivs_result("粤B33333", "CAM1"))
            await cam1.publish(topic("CAM1"), ivs_result("粤B11111", "CAM1"))

            def last_plate() -> str:
                raw = inbox.last(TELEMETRY)
                return json.loads(raw)["last_plate"] if raw else ""
            await until(lambda: last_plate() == "粤B11111", timeout_s=15)
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(daemon.wait, 10)
    log = (workdir / "daemon.log").read_text()
    assert code == 0, log
    assert records(workdir) == [("in1", "entry", "粤B11111")], log
    assert "粤B33333" not in log and "粤B22222" not in log
    assert re.search(r"plate 粤B44444 recognised 60\d s ago \(over max_age_s 60\) not sent to the lane", log), log
