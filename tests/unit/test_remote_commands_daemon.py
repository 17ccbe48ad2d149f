"""The daemon built from fakes (lanectl/bootstrap.py) with a memory site bus: a signed remote open raises the
barrier through the same audited release as `lanectl open` — the OPEN row names `operator@issuer`, no uid —
and a forged, replayed or expired one is refused on the reply topic with nothing opened."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from lanectl.bootstrap import build_app
from lanectl.config import load_config
from lanectl.core import effects as fx
from lanectl.protocols.site_commands import RemoteCommand, decode_reply, encode
from lanectl.service.site_bus import topic
from tests.fakes import (FakeClock, FakeControlServer, FakeLaneDevices, FakeListener, FakeNotifier, FakeSession,
                         MemoryBroker, MemoryDaemonStore)
from tests.minimal_site import write_minimal_config

KEY = "a site key long enough to matter"
LANE = """id: in1
direction: entry
devices:
  barrier: {kind: modbus_rtu, port: /dev/null-rs485, unit: 1}
  plate_reader: {kind: serial_line, port: /dev/null-camera}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_SITE_KEY", KEY)
    etc = write_minimal_config(tmp_path, site_bus={"enabled": True, "booth_id": "boothB",
                                                   "site_key": {"env": "TEST_SITE_KEY"}, "site_key_id": "k1"})
    (etc / "lanes" / "in1.yaml").write_text(LANE)
    return load_config(etc)


async def test_a_remote_open_is_the_audited_release_and_forgeries_open_nothing(config):
    clock, store, devices, broker = FakeClock(), MemoryDaemonStore(), FakeLaneDevices(), MemoryBroker()
    app = build_app(config, store=store, clock=clock, devices=devices, listener=FakeListener,
                    control=FakeControlServer, session=FakeSession, notifier=FakeNotifier(),
                    raise_nofile=lambda: (4096, 4096), site_bus=broker.client())
    console = broker.client()
    replies: dict[str, dict[str, Any]] = {}
    arrived = asyncio.Event()

    async def on_reply(_topic: str, payload: bytes) -> None:
        reply = decode_reply(payload, {"k1": KEY.encode()})
        replies[reply["id"]] = reply
        arrived.set()

    console.subscribe(topic("t", "console", "replies", "#"), on_reply)

    async def send(payload: bytes, cid: str) -> dict[str, Any]:
        await console.publish(topic("t", "boothB", "commands"), payload)
        while cid not in replies:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 5)
        return replies.pop(cid)

    now = int(clock.now().timestamp())

    def command(**over: Any) -> RemoteCommand:
        fields = dict(id=str(uuid.uuid4()), kind="open", booth="boothB", lane="in1", operator="wang",
                      reason="visitor without a plate", issued_at=now, expires_at=now + 20, issuer="console",
                      key_id="k1")
        return RemoteCommand(**{**fields, **over})

    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    try:
        await asyncio.wait_for(app.ready.wait(), 5)
        assert app.remote is not None  # a bus and a site key: the booth takes remote commands
        barrier = devices.barriers["in1"]

        forged = command()
        reply = await send(encode(forged, b"not the site key"), forged.id)
        assert (reply["ok"], reply["code"]) == (False, "bad_signature")
        expired = command(issued_at=now - 120, expires_at=now - 60)
        reply = await send(encode(expired, KEY.encode()), expired.id)
        assert (reply["ok"], reply["code"]) == (False, "expired")
        assert barrier.commands == [] and store.written(fx.OpenBarrier) == []

        good = command()
        payload = encode(good, KEY.encode())
        reply = await send(payload, good.id)
        assert reply["ok"] is True, reply
        assert reply["result"]["operator"] == "wang@console" and reply["result"]["operator_uid"] is None
        await asyncio.wait_for(barrier.opened.wait(), 5)
        [opened] = store.written(fx.OpenBarrier)  # the OPEN audit row, written before the command went out
        assert (opened.operator, opened.operator_uid, opened.reason) == ("wang@console", None,
                                                                       "visitor without a plate")

        reply = await send(payload, good.id)
        assert (reply["ok"], reply["code"]) == (False, "replayed")
        assert barrier.commands == ["open"] and len(store.written(fx.OpenBarrier)) == 1
        assert app.remote.counts == {"done": 1, "refused": 3}  # shown by `lanectl status`
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 5)
