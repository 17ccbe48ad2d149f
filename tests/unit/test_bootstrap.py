"""The composition root hands the daemon every adapter it uses, so the whole daemon runs on in-memory twins:
a car comes to the entry lane, its record is written, the barrier gets OPEN (after the write), and the daemon
stops cleanly, closing what it opened."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lanectl.adapters.callback_server import CallbackServer
from lanectl.adapters.control_socket import ControlServer
from lanectl.adapters.store import SqliteStore
from lanectl.bootstrap import HardwareDevices, build_app, real_adapters
from lanectl.config import load_config
from lanectl.core import effects as fx
from lanectl.core.events import PlateRead
from tests.fakes import (FakeClock, FakeControlServer, FakeLaneDevices, FakeListener, FakeNotifier, FakeSession,
                         MemoryDaemonStore)
from tests.minimal_site import AT_THE_LOOP, DEVICE_LANE, write_minimal_config



@pytest.fixture
def config(tmp_path: Path):
    etc = write_minimal_config(tmp_path)
    (etc / "lanes" / "in1.yaml").write_text(DEVICE_LANE)
    return load_config(etc)


async def test_the_daemon_built_from_fakes_lets_a_car_in_and_stops_cleanly(config):
    store, devices, notifier = MemoryDaemonStore(), FakeLaneDevices(), FakeNotifier()
    listeners: list[FakeListener] = []
    controls: list[FakeControlServer] = []
    sessions: list[FakeSession] = []

    def listener(*args, **kwargs) -> FakeListener:
        listeners.append(FakeListener(*args, **kwargs))
        return listeners[-1]

    def control(*args, **kwargs) -> FakeControlServer:
        controls.append(FakeControlServer(*args, **kwargs))
        return controls[-1]

    def session() -> FakeSession:
        sessions.append(FakeSession())
        return sessions[-1]

    app = build_app(config, store=store, clock=FakeClock(), devices=devices, listener=listener, control=control,
                    session=session, notifier=notifier, raise_nofile=lambda: (4096, 4096))
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    await asyncio.wait_for(app.ready.wait(), 5)
    # the public face, and the LAN face for /metrics (metrics are on by default)
    assert store.opened and [x.listening for x in listeners] == [True, True] and controls[0].started
    assert "/metrics" in listeners[1].routes and "/metrics" not in listeners[0].routes
    assert controls[0].handlers is app and notifier.said[0] == "ready"

    barrier, camera = devices.barriers["in1"], devices.readers["in1"]
    await barrier.send(AT_THE_LOOP)
    await camera.send(PlateRead("粤B12345", "blue", 95, "in1-camera"))
    await asyncio.wait_for(barrier.opened.wait(), 5)

    assert barrier.commands == ["open"]
    entries = [r for r in store.written(fx.NewRecord) if r.plate == "粤B12345"]
    assert len(entries) == 1 and entries[0].kind == "entry"
    opens = store.written(fx.OpenBarrier)  # written ahead: the OPEN row is committed before the command is sent
    assert len(opens) == 1 and opens[0].record_id == entries[0].record_id
    status = await app.status()  # what `lanectl status` shows, from the daemon built of fakes too
    assert status["lanes"]["in1"]["plate_lines"]["read"] == 0 and status["lanes"]["in1"]["direction"] == "entry"

    stop.set()  # as the barrier's answer (CommandDone) reaches the lane: the stop must still be prompt
    await asyncio.wait_for(daemon, 3)  # a task that ignores its cancel holds the stop for 5 s (App._stop_tasks)
    assert store.closed and devices.closed and sessions[0].closed
    assert all(x.stopped for x in listeners) and controls[0].stopped and notifier.said[-1] == "stopping"


def test_the_real_adapters_are_the_defaults_and_any_can_be_replaced(config):
    real = real_adapters(config)
    assert isinstance(real.store, SqliteStore) and isinstance(real.devices, HardwareDevices)
    assert real.listener is CallbackServer and real.control is ControlServer
    store = MemoryDaemonStore()
    assert real_adapters(config, store=store).store is store
    with pytest.raises(TypeError, match="no adapter called stroe"):
        real_adapters(config, stroe=store)
