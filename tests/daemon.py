"""A daemon built from fakes (devices, clock, control socket, notifier) over real SQLite and the real listeners,
running for the length of a `with` block: what the console and metrics tests drive."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from lanectl.app import App
from lanectl.bootstrap import build_app
from lanectl.config import Config
from tests.fakes import FakeClock, FakeControlServer, FakeLaneDevices, FakeNotifier


@asynccontextmanager
async def fake_device_daemon(config: Config, clock: FakeClock, devices: FakeLaneDevices, *,
                             ready_s: float = 5, stop_s: float = 10, **build: Any) -> AsyncIterator[App]:
    """The daemon started and ready; stopped (and waited for) when the block ends, however it ends. `build`:
    more of build_app's arguments (on_effects...)."""
    app = build_app(config, clock=clock, devices=devices, control=FakeControlServer, notifier=FakeNotifier(),
                    raise_nofile=lambda: (4096, 4096), **build)
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    try:
        await asyncio.wait_for(app.ready.wait(), ready_s)
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(daemon, stop_s)
