"""Telemetry decides what goes on the bus and when: retained, per lane and per booth, only on change, at most
once per interval per topic, and everything again after the bus comes back."""

from __future__ import annotations

import asyncio
import json

from lanectl.service.telemetry import TelemetryPublisher
from tests.fakes import FakeClock, MemoryBroker

LANE_IN = "lanectl/P1/boothA/lanes/in1/telemetry"
BOOTH = "lanectl/P1/boothA/telemetry"


class Figures:
    """The daemon's figures, changed by the test."""

    def __init__(self) -> None:
        self.lanes = {"in1": {"phase": "idle", "faults": {}, "last_plate": ""}}
        self.booth = {"outbox_pending": 0, "settlement": {"settling": [], "reconciling": 0, "late_checks": 0}}

    async def __call__(self) -> dict:
        return {"lanes": json.loads(json.dumps(self.lanes)), "booth": json.loads(json.dumps(self.booth))}


def published(broker: MemoryBroker, name: str) -> list[dict]:
    return [json.loads(p) for t, p, _, _ in broker.log if t == name]


async def start(interval_s: float = 1.0):
    broker, clock, figures = MemoryBroker(), FakeClock(), Figures()
    bus = broker.client()
    telemetry = TelemetryPublisher(bus, "P1", "boothA", figures, clock, interval_s)
    task = asyncio.create_task(telemetry.run())
    await clock.settle()
    return broker, bus, clock, figures, telemetry, task


async def test_first_round_publishes_every_lane_and_the_booth_retained():
    broker, _, clock, _, _, task = await start()
    assert {t for t, *_ in broker.log} == {LANE_IN, BOOTH}
    assert all(qos == 1 and retain for t, _, qos, retain in broker.log)
    lane = json.loads(broker.retained[LANE_IN])
    assert lane["lane"] == "in1" and lane["phase"] == "idle" and lane["at"] == clock.now().isoformat()
    assert json.loads(broker.retained[BOOTH])["lanes"] == ["in1"]
    task.cancel()


async def test_nothing_is_published_again_while_nothing_changes():
    broker, _, clock, _, _, task = await start()
    await clock.advance(10)
    assert len(published(broker, LANE_IN)) == 1 and len(published(broker, BOOTH)) == 1
    task.cancel()


async def test_a_change_goes_out_within_an_interval_and_only_on_its_topic():
    broker, _, clock, figures, _, task = await start()
    figures.lanes["in1"].update(phase="awaiting_payment", last_plate="京A12345",
                                faults={"barrier": "no answer from the IO module"})
    await clock.advance(1.0)
    last = published(broker, LANE_IN)[-1]
    assert (last["phase"], last["last_plate"], last["faults"]) == ("awaiting_payment", "京A12345",
                                                                  {"barrier": "no answer from the IO module"})
    assert len(published(broker, BOOTH)) == 1
    figures.booth["outbox_pending"] = 7
    await clock.advance(1.0)
    assert published(broker, BOOTH)[-1]["outbox_pending"] == 7 and len(published(broker, LANE_IN)) == 2
    task.cancel()


async def test_a_lane_flapping_faster_than_the_interval_is_published_at_most_once_per_interval():
    broker, _, clock, figures, _, task = await start(interval_s=1.0)
    for i in range(40):  # a new phase every 0.1 s for 4 s
        figures.lanes["in1"]["phase"] = "opening" if i % 2 else "passing"
        await clock.advance(0.1)
    assert len(published(broker, LANE_IN)) <= 1 + 4
    task.cancel()


async def test_what_changed_while_the_bus_was_down_goes_out_when_it_is_back_and_everything_is_resent():
    broker, bus, clock, figures, _, task = await start()
    bus.connected = False
    figures.lanes["in1"]["phase"] = "opening"
    await clock.advance(5)
    assert len(published(broker, LANE_IN)) == 1  # nothing reached the broker while down
    broker.retained.clear()  # the broker restarted without persistence
    bus.connected = True
    await clock.advance(1.0)
    assert json.loads(broker.retained[LANE_IN])["phase"] == "opening"
    assert BOOTH in broker.retained  # unchanged, but sent again after the reconnect
    task.cancel()


async def test_figures_that_cannot_be_read_skip_a_round_without_ending_telemetry():
    broker, _, clock, figures, telemetry, task = await start()

    async def broken() -> dict:
        raise RuntimeError("store closed")
    telemetry.snapshot = broken
    await clock.advance(2.0)
    assert not task.done()
    figures.lanes["in1"]["phase"] = "opening"
    telemetry.snapshot = figures
    await clock.advance(1.0)
    assert published(broker, LANE_IN)[-1]["phase"] == "opening"
    task.cancel()
