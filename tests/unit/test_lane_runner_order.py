"""A lane step's OPEN goes to the barrier before the rest of the step: the decision's log line, the board, the
status and the listeners follow it instead of holding it up — and a step cut by a stop still ends whole."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lanectl.core.events import PlateRead
from tests.fakes import FakeBarrier
from tests.unit.test_lane_runner_storage import Lane, until


class SeeingBarrier(FakeBarrier):
    """Notes what the rest of the lane had done when the OPEN reached it."""

    def __init__(self, lane: Lane, caplog: Any) -> None:
        super().__init__()
        self.lane, self.caplog = lane, caplog
        self.seen: dict[str, Any] = {}

    async def open(self) -> None:
        self.seen = {"board": list(self.lane.display.keys()), "phase": self.lane.runner.status.phase,
                     "decided": list(self.lane.decided),
                     "logged": [r.getMessage() for r in self.caplog.records if "entry allowed" in r.getMessage()]}
        await super().open()


async def test_the_open_reaches_the_barrier_before_the_steps_log_line_board_and_status(caplog):
    caplog.set_level(logging.INFO, "lanectl.lane")
    async with Lane() as lane:
        lane.runner.barrier = lane.barrier = barrier = SeeingBarrier(lane, caplog)
        lane.runner.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: lane.runner.status.phase == "opening" and lane.display.keys() == ["welcome"],
                    "the step's own work, after the OPEN")
        assert barrier.commands == ["open"]
        assert barrier.seen == {"board": [], "phase": "idle", "decided": [], "logged": []}
        assert [r.getMessage() for r in caplog.records if "entry allowed" in r.getMessage()]


class StoppingBarrier(FakeBarrier):
    """The daemon's stop arrives just as the OPEN reaches the barrier (the step waits for the frame's turn)."""

    def __init__(self) -> None:
        super().__init__()
        self.step: asyncio.Task | None = None

    async def open(self) -> None:
        assert self.step is not None
        self.step.cancel()
        await super().open()


async def test_a_step_cut_by_a_stop_after_its_open_still_ends_whole():
    async with Lane() as lane:
        lane.runner.barrier = lane.barrier = barrier = StoppingBarrier()
        barrier.step = asyncio.create_task(lane.runner.step(PlateRead("粤B12345", "blue", 90)))
        [outcome] = await asyncio.gather(barrier.step, return_exceptions=True)
        assert isinstance(outcome, asyncio.CancelledError) and barrier.commands == ["open"]
        assert lane.runner.status.phase == "opening" and lane.decided  # status and listeners told all the same
