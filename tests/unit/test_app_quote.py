"""A platform's price query on the daemon built from fakes: the exit lane's own task answers for the car waiting
there; a car inside that pays ahead (at no lane) is priced by the policy over its stay as the store keeps it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import AsyncIterator

import pytest

from lanectl.app import App
from lanectl.bootstrap import build_app
from lanectl.config import load_config
from lanectl.core.events import IoSnapshot, PlateRead
from lanectl.core.lane import InsideCar
from lanectl.providers.ports import PriceQuote
from tests.fakes import (FakeClock, FakeControlServer, FakeLaneDevices, FakeListener, FakeNotifier, FakeSession,
                         MemoryDaemonStore)
from tests.minimal_site import write_minimal_config

EXIT = """id: out1
direction: exit
channel_id: A1
devices:
  barrier: {kind: modbus_rtu, port: /dev/null-rs485, unit: 1}
  plate_reader: {kind: serial_line, port: /dev/null-camera}
"""
AT_THE_LOOP = IoSnapshot(arming=True, safety=False, up_limit=False, down_limit=True)
PLATE = "粤B12345"


class Daemon:
    def __init__(self, app: App, store: MemoryDaemonStore, devices: FakeLaneDevices, clock: FakeClock) -> None:
        self.app, self.store, self.devices, self.clock = app, store, devices, clock

    async def waiting_at_the_exit(self, plate: str) -> None:
        barrier, camera = self.devices.barriers["out1"], self.devices.readers["out1"]
        await barrier.send(AT_THE_LOOP)
        await camera.send(PlateRead(plate, "blue", 95, "out1-camera"))
        runner = self.app.runners["out1"]
        async with asyncio.timeout(5):
            while runner.status.waiting is None:
                await asyncio.sleep(0.01)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    etc = write_minimal_config(tmp_path)
    (etc / "lanes" / "out1.yaml").write_text(EXIT)
    store, devices, clock = MemoryDaemonStore(), FakeLaneDevices(), FakeClock()
    app = build_app(load_config(etc), store=store, clock=clock, devices=devices, listener=FakeListener,
                    control=FakeControlServer, session=FakeSession, notifier=FakeNotifier(),
                    raise_nofile=lambda: (4096, 4096))
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    await asyncio.wait_for(app.ready.wait(), 5)
    yield Daemon(app, store, devices, clock)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_the_car_waiting_at_the_exit_is_priced_by_the_lane(daemon: Daemon):
    entered = daemon.clock.now() - timedelta(hours=3)
    daemon.store.enter(PLATE, InsideCar("in1_1", entered, "in1", "temporary"))
    await daemon.waiting_at_the_exit(PLATE)  # the site's tariff: 5 yuan the first hour, 1 yuan each hour after
    await daemon.clock.advance(2 * 3600)
    # what the lane asks of the car waiting there (as it reached the exit), not the stay priced anew (9 yuan)
    expected = PriceQuote("in1_1", 700, 700, entered, 300)
    assert await daemon.app.quote(PLATE, "", "", provider="bolink") == expected
    assert await daemon.app.quote("", "in1_1", "", provider="bolink") == expected  # by the stay's order
    assert await daemon.app.quote("粤B99999", "", "A1", provider="bolink") == expected  # the exit named: the car waiting there


async def test_a_car_inside_paying_ahead_is_priced_by_the_policy_over_its_stay(daemon: Daemon):
    entered = daemon.clock.now() - timedelta(minutes=90)
    daemon.store.enter("粤B77777", InsideCar("in1_2", entered, "in1", "temporary"))
    expected = PriceQuote("in1_2", 600, 600, entered, 90)
    assert await daemon.app.quote("粤B77777", "", "", provider="bolink") == expected
    assert await daemon.app.quote("", "in1_2", "", provider="bolink") == expected
    assert await daemon.app.quote("粤B99999", "", "", provider="bolink") is None  # not inside, not waiting: no such car
    assert await daemon.app.quote("", "in1_9", "A1", provider="bolink") is None
