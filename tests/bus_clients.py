"""Clients of the real test broker (tests/mosquitto.py) for the site bus tests: booths and a read-only screen on
the MQTT adapter, run for the length of a block, and an inbox to wait on.

    async with running(bus(broker.uri)) as a, running(screen) ...: await inbox.wait(topic, payload)
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Callable

from lanectl.adapters.mqtt_bus import MqttBus
from lanectl.config.base import SecretRef
from lanectl.config.site_bus import SiteBusConfig
from tests.mosquitto import USERS, Mosquitto

PARK = "P1"


def config(*brokers: str, user: str = "booth1", booth: str = "boothA") -> SiteBusConfig:
    return SiteBusConfig(enabled=True, booth_id=booth, brokers=brokers, username=user,
                         password=SecretRef(env="UNUSED"), keepalive_s=5, publish_timeout_s=3)


def bus(*brokers: str, user: str = "booth1", booth: str = "boothA", password: str | None = None,
        presence: bool = True) -> MqttBus:
    return MqttBus(config(*brokers, user=user, booth=booth), PARK, password=password or USERS[user],
                   retry_min_s=0.05, retry_max_s=0.2, presence=presence)


@contextlib.asynccontextmanager
async def running(b: MqttBus, *, connected: bool = True) -> AsyncIterator[MqttBus]:
    task = asyncio.create_task(b.run())
    try:
        if connected:
            await until(lambda: b.connected or task.done())
            assert b.connected, task.exception() if task.done() else "not connected"
        yield b
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    async def __call__(self, topic: str, payload: bytes) -> None:
        self.messages.append((topic, payload))

    def last(self, topic: str) -> bytes | None:
        return next((p for t, p in reversed(self.messages) if t == topic), None)

    async def wait(self, topic: str, payload: bytes) -> None:
        await until(lambda: self.last(topic) == payload)


def watcher(broker: Mosquitto, topic_filter: str = "lanectl/#") -> tuple[MqttBus, Inbox]:
    """The central screen: read-only user, its own client id."""
    screen = bus(broker.uri, user="screen", booth="screen", presence=False)  # it reads only: no online flag
    inbox = Inbox()
    screen.subscribe(topic_filter, inbox)
    return screen, inbox
