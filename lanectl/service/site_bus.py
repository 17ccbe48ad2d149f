"""The site bus port: what the service layer needs from the lot's MQTT broker (issue 17).

Booths of one lot share records, commands and telemetry over topics under ``lanectl/<park>/``. The service
layer sees only this port; adapters/mqtt_bus.py implements it over paho-mqtt, and tests use the in-memory
twin (tests/fakes.py MemoryBus) or a real Mosquitto.

Delivery is MQTT's: QoS 1 is at least once, so every consumer is idempotent (by record id, command id).
`publish` never waits for the broker to come back: while the bus is down it raises BusUnavailable at once,
and what must reach the other booths waits in the SQLite outbox (service/outbox.py) instead.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Protocol

# (topic, payload) of one received message; a handler must not raise for bad input (count and skip it)
MessageHandler = Callable[[str, bytes], Awaitable[None]]


class BusUnavailable(Exception):
    """Not connected to any broker now: nothing was sent. The caller keeps the message for later."""


def topic(park_id: str, *parts: str) -> str:
    """``lanectl/<park>/<part>/...``: every topic of a site lives under its park id."""
    return "/".join(("lanectl", park_id, *parts))


class SiteBus(Protocol):
    @property
    def connected(self) -> bool:
        """True while a broker session is up (subscriptions in place)."""

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Hand one message to the broker; with QoS 1 returns once the broker acknowledged it (PUBACK).
        Raises BusUnavailable when not connected (or the connection drops before the acknowledgement)."""

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> None:
        """Call `handler` for every message matching `topic_filter` (MQTT wildcards + and #), from now on and
        again after every reconnect (the adapter re-subscribes). Register before `run` starts."""

    async def run(self) -> None:
        """Connect (trying each configured broker in turn), keep the session, reconnect with backoff; runs until
        cancelled. Logs when the bus goes down and when it is back, not every retry."""
