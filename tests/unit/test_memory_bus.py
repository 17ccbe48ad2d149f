"""The in-memory site bus twin behaves like a broker where the services rely on it: wildcards, retained
messages for late subscribers, nothing delivered to or from a disconnected client."""

from __future__ import annotations

import asyncio

import pytest

from lanectl.service.site_bus import BusUnavailable, topic
from tests.fakes import MemoryBroker, topic_matches


@pytest.mark.parametrize("topic_filter, name, match", [
    ("lanectl/p1/#", "lanectl/p1/a/online", True), ("lanectl/p1/+/online", "lanectl/p1/a/online", True),
    ("lanectl/p1/+/online", "lanectl/p1/a/b/online", False), ("lanectl/p1/a", "lanectl/p1/a/b", False),
    ("lanectl/#", "lanectl", True), ("lanectl/p1/a", "lanectl/p1/a", True), ("lanectl/p2/#", "lanectl/p1/a", False),
])
def test_topic_filters(topic_filter, name, match):
    assert topic_matches(topic_filter, name) is match


async def test_messages_reach_matching_subscribers_and_retained_ones_reach_late_ones():
    broker = MemoryBroker()
    a, b = broker.client(), broker.client()
    got: list[tuple[str, bytes]] = []

    async def keep(t: str, payload: bytes) -> None:
        got.append((t, payload))
    b.subscribe(topic("p1", "+", "online"), keep)
    await a.publish(topic("p1", "boothA", "online"), b"true", retain=True)
    await a.publish(topic("p1", "boothA", "records"), b"{}")
    assert got == [("lanectl/p1/boothA/online", b"true")]
    late = broker.client()
    late.subscribe("lanectl/p1/#", keep)
    task = asyncio.create_task(late.run())
    await asyncio.sleep(0)
    assert got[-1] == ("lanectl/p1/boothA/online", b"true") and len(got) == 2
    task.cancel()


async def test_a_disconnected_client_neither_sends_nor_receives():
    broker = MemoryBroker()
    a, b = broker.client(), broker.client()
    got: list[str] = []

    async def keep(t: str, payload: bytes) -> None:
        got.append(t)
    b.subscribe("lanectl/#", keep)
    a.connected = False
    with pytest.raises(BusUnavailable):
        await a.publish("lanectl/p1/x", b"1")
    a.connected, b.connected = True, False
    await a.publish("lanectl/p1/x", b"1")
    assert got == [] and broker.log == [("lanectl/p1/x", b"1", 1, False)]
