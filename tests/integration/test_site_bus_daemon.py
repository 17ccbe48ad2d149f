"""`lanectl run` with `site_bus.enabled`, on a real Mosquitto: the daemon process says it is online, publishes its
lanes' telemetry retained, says offline on SIGTERM, and the broker's last will says it when the process is
killed."""

from __future__ import annotations

import asyncio
import json
import os
import re
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


def remote(etc: Path, key: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LANECTL_TEST_BUS_PASSWORD=USERS["booth1"], LANECTL_TEST_SITE_KEY=key)
    return subprocess.run([sys.executable, "-m", "lanectl", "remote", "open", "--config", str(etc), "--booth",
                           "boothA", "--lane", "in1", "--operator", "wang", "--reason", "bus test", "--issuer",
                           "console1", "--wait", "8", "--json", *extra],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=20)


async def test_a_signed_remote_open_reaches_the_booth_over_the_broker_and_a_forged_one_is_refused(workdir, mosquitto):
    """`lanectl remote` through a real Mosquitto: the booth answers a signed open (its barrier here is a Modbus
    module that is not there, so the OPEN is not delivered: the answer says so), refuses one signed with another
    key, and the CLI — a passing client — leaves the booth's retained online flag alone."""
    screen, inbox = watcher(mosquitto, "lanectl/t/#")
    site_bus = {"enabled": True, "booth_id": "boothA", "brokers": [mosquitto.uri], "username": "booth1",
                "password": {"env": "LANECTL_TEST_BUS_PASSWORD"}, "keepalive_s": 5,
                "site_key": {"env": "LANECTL_TEST_SITE_KEY"}}
    etc = write_minimal_config(workdir, site_bus=site_bus)
    env = dict(os.environ, PYTHONUNBUFFERED="1", LANECTL_TEST_BUS_PASSWORD=USERS["booth1"],
               LANECTL_TEST_SITE_KEY="the-lot-site-key-0123456789")
    env.pop("NOTIFY_SOCKET", None)
    async with running(screen):
        with open(workdir / "daemon.log", "wb") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "lanectl", "run", "--config", str(etc)], stdout=log,
                                      stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            await online_with_telemetry(inbox)
            signed = await asyncio.to_thread(remote, etc, "the-lot-site-key-0123456789")
            assert signed.returncode in (0, 1), signed.stderr  # answered (75 would be: no answer)
            answer = json.loads(signed.stdout)
            assert answer["ok"] and answer["result"]["operator"] == "wang@console1", answer  # ran, as that operator
            forged = await asyncio.to_thread(remote, etc, "another-key-9876543210-abcdef", "--wait", "3")
            # the booth's refusal is signed with the real key, which the forger cannot check: no answer for it
            assert forged.returncode == 75, forged.stdout + forged.stderr
            command_id = re.search(r"command ([0-9a-f-]{36})", forged.stderr).group(1)
            reply = f"lanectl/t/console1/replies/{command_id}"
            await until(lambda: inbox.last(reply) is not None)
            assert b'"code":"bad_signature"' in inbox.last(reply), inbox.last(reply)
            assert inbox.last(ONLINE) == b"true"  # the CLI came and went without touching the booth's presence
        finally:
            daemon.send_signal(signal.SIGTERM)
            await asyncio.to_thread(daemon.wait, 10)
    log = (workdir / "daemon.log").read_text()
    assert "wang@console1" in log, log
