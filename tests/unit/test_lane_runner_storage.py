"""Issue 12: a LaneRunner task over a store that goes down and comes back (an in-memory twin of the store).
The task never dies; nothing opens without its rows; kept payment results are handed in again."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import AsyncIterator, Callable, Optional

import pytest

from lanectl.adapters.clock import SystemClock
from lanectl.core import effects as fx
from lanectl.core.events import IoSnapshot, PaymentConfirmed, PlateRead
from lanectl.core.lane import InsideCar
from lanectl.service.lane_runner import LaneRunner
from lanectl.service.ports import StorageUnavailable
from tests.fakes import SHANGHAI, FakeBarrier, FakeDisplay, MemoryLaneStore
from tests.policies import FlatPolicy

DOWN = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True)
CLOCK = SystemClock(SHANGHAI)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 3.0) -> None:
    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)
    try:
        await asyncio.wait_for(_poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"not within {timeout:g} s: {what}") from None


class Lane:
    def __init__(self, direction: str = "entry", store: MemoryLaneStore | None = None) -> None:
        self.store = store or MemoryLaneStore()
        self.barrier, self.display = FakeBarrier(), FakeDisplay()
        self.decided: list[fx.Effect] = []
        self.runner = LaneRunner("l1", direction, FlatPolicy(flat_fen=500, free_minutes=0), self.store, CLOCK,
                                 barrier=self.barrier, display=self.display, storage_retry_s=0.05,
                                 on_effects=lambda _l, effects: self.decided.extend(effects))
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> "Lane":
        self.task = asyncio.create_task(self.runner.run())
        await self.runner.started.wait()
        self.runner.emit(DOWN)
        await until(lambda: self.runner.state.io == DOWN, "the first snapshot")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    def logs(self, text: str) -> list[fx.Log]:
        return [e for e in self.decided if isinstance(e, fx.Log) and text in e.message]


async def test_plates_are_refused_while_storage_is_down_and_the_same_car_is_let_in_after():
    async with Lane() as lane:
        lane.store.down = True
        for _ in range(2):
            lane.runner.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: len(lane.logs("cannot be written")) == 2, "both reads refused")
        assert lane.barrier.commands == [] and lane.store.commits[1:] == []
        assert lane.runner.state.phase.value == "idle" and lane.runner.state.last_plate == ""
        await until(lambda: lane.display.keys() == ["fault"], "the fault on the board")
        assert not lane.task.done()

        lane.store.down = False
        lane.runner.emit(PlateRead("粤B12345", "blue", 90))  # the camera reads it again: not a repeat
        await until(lambda: lane.barrier.commands == ["open"], "the OPEN once storage is back")
        [record] = lane.store.written(fx.NewRecord)
        [opened] = lane.store.written(fx.OpenBarrier)
        assert record.plate == "粤B12345" and opened.record_id == record.record_id


async def test_a_payment_refused_while_storage_is_down_is_handed_in_again_until_it_is_taken():
    store = MemoryLaneStore(inside={"粤B12345": InsideCar("in1_1", CLOCK.now() - timedelta(hours=2), "in1",
                                                         "temporary")})
    async with Lane("exit", store) as lane:
        lane.runner.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: lane.runner.state.phase.value == "awaiting_payment", "the car waiting to pay")
        record_id = lane.runner.state.visit.record_id
        store.down = True
        lane.runner.emit(PaymentConfirmed(record_id, "bolink", lane.runner.state.visit.due_fen, "T1", "wallet"))
        await until(lambda: store.refused >= 3, "the payment refused and tried again")
        assert lane.barrier.commands == [] and lane.runner.state.phase.value == "awaiting_payment"
        assert len(lane.logs("cannot be written")) == 1  # said once, not at every retry
        store.down = False
        await until(lambda: lane.barrier.commands == ["open"], "the paid car let out once storage is back")
        [payment] = store.written(fx.RecordPayment)
        assert (payment.record_id, payment.reference) == (record_id, "T1")


async def test_an_audit_update_that_cannot_be_written_does_not_leave_the_command_unacknowledged():
    class MarksFail(MemoryLaneStore):
        async def mark_action(self, action_id, ok, error, now):
            raise StorageUnavailable("disk full (test)")

    async with Lane(store=MarksFail()) as lane:
        lane.runner.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: lane.barrier.commands == ["open"], "the OPEN")
        await until(lambda: lane.runner.state.pending_action == "", "the OPEN acknowledged to the lane")
        assert not lane.task.done()


@pytest.mark.parametrize("safety", [False, True])
async def test_the_close_after_the_car_is_sent_without_storage_unless_the_adapter_sees_the_car(safety):
    async with Lane() as lane:
        lane.runner.emit(PlateRead("粤B12345", "blue", 90))
        await until(lambda: lane.barrier.commands == ["open"] and not lane.runner.state.pending_action, "OPEN")
        lane.runner.emit(IoSnapshot(arming=True, safety=False, up_limit=True, down_limit=False))
        lane.runner.emit(IoSnapshot(arming=False, safety=True, up_limit=True, down_limit=False))
        await until(lambda: lane.runner.state.visit.passage == "on_safety", "the car under the arm")
        lane.store.down = True
        lane.barrier.safety = safety  # the adapter's own reading of the safety loop at the moment of CLOSE
        lane.runner.emit(IoSnapshot(arming=False, safety=False, up_limit=True, down_limit=False))
        await until(lambda: len(lane.store.marks) == 2, "the CLOSE tried and its outcome reported")
        [(lane_id, close)] = lane.store.deferred
        assert lane_id == "l1" and close.reason == "car_passed"
        assert lane.barrier.commands == (["open"] if safety else ["open", "close"])
        assert lane.store.marks[-1] == (close.action_id, not safety)
        if safety:  # refused by the adapter: the lane stays open and tries again when the loops are clear
            await until(lambda: lane.runner.state.phase.value == "open", "the lane back to open")
        assert not lane.task.done()


@asynccontextmanager
async def entry_and_exit(store: MemoryLaneStore, *, on_status: Optional[Callable[[str], None]] = None,
                         ) -> AsyncIterator[tuple[LaneRunner, LaneRunner]]:
    """An entry lane and an exit lane (flat 5 yuan, no free minutes) over one store, running and at rest."""
    policy = FlatPolicy(flat_fen=500, free_minutes=0)
    entry = LaneRunner("in1", "entry", policy, store, CLOCK, barrier=FakeBarrier())
    exit_ = LaneRunner("out1", "exit", policy, store, CLOCK, barrier=FakeBarrier(), on_status=on_status)
    tasks = [asyncio.create_task(r.run()) for r in (entry, exit_)]
    try:
        for r in (entry, exit_):
            await r.started.wait()
            r.emit(DOWN)
        await until(lambda: entry.state.io == DOWN and exit_.state.io == DOWN, "the first snapshots")
        yield entry, exit_
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
