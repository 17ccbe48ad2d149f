"""The booth's actions through a lane runner (service/booth.py ask_lane): answered by the lane's own task, an
admit's OPEN followed to the barrier's answer, nothing done when the records cannot be written, bad input a
typed error; the runner publishes what the booth needs (the reading, the candidates, the car held)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lanectl.core import effects as fx
from lanectl.core.events import IoSnapshot, PlateRead
from lanectl.core.lane import InsideCar
from lanectl.service.booth import BoothError, ask_lane
from tests.fakes import MemoryLaneStore
from tests.unit.test_lane_runner_storage import CLOCK, Lane, until

ARMING = IoSnapshot(arming=True, safety=False, up_limit=False, down_limit=True)


async def held(lane: Lane) -> None:
    lane.runner.emit(ARMING)
    lane.runner.emit(PlateRead("竑B55502", "blue", 90))
    await until(lambda: lane.runner.status.held is not None, "the car held for the booth")


async def test_an_admit_is_decided_by_the_lane_and_its_open_followed_to_the_barrier():
    async with Lane() as lane:
        await held(lane)
        assert lane.runner.status.held["reason"] == "unreadable_plate"
        answer = await ask_lane(lane.runner, "admit", operator="王", reason="访客", operator_uid=1001)
        [opened] = lane.store.written(fx.OpenBarrier)
        assert (answer["outcome"], answer["done"], answer["opened"]) == ("admitted", True, True)
        assert answer["action_id"] == opened.action_id and opened.operator_uid == 1001
        assert lane.barrier.commands == ["open"] and lane.runner.status.held is None


async def test_a_booth_action_whose_records_cannot_be_written_does_nothing():
    async with Lane() as lane:
        await held(lane)
        lane.store.down = True
        with pytest.raises(BoothError) as info:
            await ask_lane(lane.runner, "admit", operator="王", reason="访客")
        assert (info.value.code, info.value.status) == ("storage_unavailable", 503)
        assert lane.barrier.commands == []


async def test_bad_input_is_a_typed_error_and_nothing_waiting_is_an_answer():
    async with Lane() as lane:
        with pytest.raises(BoothError) as info:
            await ask_lane(lane.runner, "correct", operator="王", plate="hello")
        assert (info.value.code, info.value.status) == ("invalid", 400)
        answer = await ask_lane(lane.runner, "refuse", operator="王", reason="x")
        assert (answer["outcome"], answer["done"]) == ("nothing_waiting", False)


async def test_the_runner_publishes_the_reading_and_the_cars_it_may_be():
    now = CLOCK.now()
    store = MemoryLaneStore(inside={"粤B82345": InsideCar("in1_1", now - timedelta(hours=1), "in1"),
                                    "粤B82346": InsideCar("in1_2", now - timedelta(hours=2), "in2")})
    async with Lane("exit", store) as lane:
        lane.runner.emit(PlateRead("粤B8234S", "blue", 90))
        await until(lambda: lane.runner.status.car is not None, "the car waiting")
        car = lane.runner.status.car
        assert [(c["plate"], c["lane_id"]) for c in car["candidates"]] == [("粤B82345", "in1"), ("粤B82346", "in2")]
        answer = await ask_lane(lane.runner, "correct", operator="王", plate="粤B82346",
                                record_id=car["record_id"])
        assert answer["outcome"] == "corrected" and answer["opened"] is None
        car = lane.runner.status.car
        assert (car["plate"], car["read_plate"], car["candidates"]) == ("粤B82346", "粤B8234S", [])
