"""`lanectl run` with `site_bus.enabled`, on a real Mosquitto: the daemon process says it is online, publishes its
lanes' telemetry retained, says offline on SIGTERM, and the broker's last will says it when the process is
killed."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.bus_clients import Inbox, running, until, watcher
from tests.minimal_site import write_minimal_config
from tests.mosquitto import USERS, Mosquitto

pytestmark = pytest.mark.timeout(30)
REPO = Path(__file__).resolve().parents[2]
ONLINE = "lanectl/t/boothA/online"


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lc-bus-", dir="/tmp"))  # short: the socket path must fit in 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start_daemon(workdir: Path, broker: Mosquitto) -> subprocess.Popen[bytes]:
    etc = write_minimal_config(workdir, site_bus={
        "enabled": True, "booth_id": "boothA", "brokers": [broker.uri], "username": "booth1",
        "password": {"env": "LANECTL_TEST_BUS_PASSWORD"}, "keepalive_s": 5})
    env = dict(os.environ, PYTHONUNBUFFERED="1", LANECTL_TEST_BUS_PASSWORD=USERS["booth1"])
    env.pop("NOTIFY_SOCKET", None)
    log = open(workdir / "daemon.log", "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "lanectl", "run", "--config", str(etc)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=REPO)
    finally:
        log.close()


async def online_with_telemetry(inbox: Inbox) -> None:
    await inbox.wait(ONLINE, b"true")
    await until(lambda: inbox.last("lanectl/t/boothA/lanes/in1/telemetry") is not None)
    lane = json.loads(inbox.last("lanectl/t/boothA/lanes/in1/telemetry"))
    assert lane["lane"] == "in1" and lane["phase"] == "idle" and lane["faults"] == {}


@pytest.mark.parametrize("how, says", [("stopped", "clean stop"), ("killed", "last will")])
async def test_the_daemon_is_online_on_the_bus_and_offline_after_it_ends(workdir: Path, mosquitto, how, says):
    screen, inbox = watcher(mosquitto, "lanectl/t/#")
    async with running(screen):
        daemon = start_daemon(workdir, mosquitto)
        try:
            await online_with_telemetry(inbox)
            daemon.send_signal(signal.SIGTERM if how == "stopped" else signal.SIGKILL)
            await inbox.wait(ONLINE, b"false")
            assert await asyncio.to_thread(daemon.wait, 10) == (0 if how == "stopped" else -signal.SIGKILL)
        finally:
            daemon.kill()
            daemon.wait()
    log = (workdir / "daemon.log").read_text()
    assert "site bus connected to" in log, log
    assert ("site bus stopped" in log) is (how == "stopped"), log
