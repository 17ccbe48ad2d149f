"""An operator's OPEN: the runner tells the caller what the barrier answered, once, and keeps nothing for a
caller that stopped waiting."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from lanectl.core import effects as fx
from lanectl.core.events import OperatorOpen
from tests.fakes import FakeBarrier
from tests.unit.test_lane_runner_storage import Lane


class SlowBarrier(FakeBarrier):
    """An IO module that takes its time answering an OPEN (a busy RS-485 line, retries)."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()

    async def open(self) -> None:
        await self.answer.wait()
        await super().open()


async def _operator_open(lane: Lane) -> fx.OperatorResult:
    opened = await lane.runner.request(OperatorOpen("王", "fault", None, uuid.uuid4().hex))
    assert isinstance(opened, fx.OperatorResult) and opened.outcome == "released"
    return opened


async def test_the_barriers_answer_reaches_the_operator_once():
    async with Lane() as lane:
        opened = await _operator_open(lane)
        assert await lane.runner.outcome(opened.action_id, 2.0) == (True, "")
        assert await lane.runner.outcome(opened.action_id, 2.0) == (False, "no such command waiting")


async def test_an_answer_later_than_the_operator_waits_leaves_nothing_behind():
    async with Lane() as lane:
        lane.runner.barrier = lane.barrier = SlowBarrier()
        opened = await _operator_open(lane)
        with pytest.raises(asyncio.TimeoutError):
            await lane.runner.outcome(opened.action_id, 0.05)
        assert opened.action_id not in lane.runner._outcomes
        lane.barrier.answer.set()  # the module answers after all: the command completes, nobody is told
        async with asyncio.timeout(2.0):
            while lane.barrier.commands != ["open"] or lane.runner.state.pending_action:
                await asyncio.sleep(0.01)
        assert opened.action_id not in lane.runner._outcomes
