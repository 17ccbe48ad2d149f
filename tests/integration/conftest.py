"""Integration fixtures: every test must leave no asyncio task and no rig cable thread behind (pymodbus habit:
a leaked reconnect loop or relay thread is a bug, not noise)."""

from __future__ import annotations

import asyncio
import threading

import pytest


@pytest.fixture(autouse=True)
async def no_leaked_tasks():
    yield
    for _ in range(3):
        await asyncio.sleep(0)
    leaked = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    leaked += [t.name for t in threading.enumerate() if t.name.startswith("wire-")]  # cable relays
    assert not leaked, f"tasks / threads left running: {leaked}"
