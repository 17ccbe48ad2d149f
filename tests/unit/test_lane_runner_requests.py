"""Requests to a lane (an operator's release, a platform's price query): answered by the lane's own task with a
typed result, refused with a reason, and never carried out once their caller stopped waiting."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from lanectl.core import effects as fx
from lanectl.core.events import OperatorOpen, PlateRead, PlatformEntry, QuoteRequest, Tick
from lanectl.core.lane import InsideCar
from lanectl.core.quotes import StayPrice
from lanectl.service.lane_runner import NOT_HANDLED, RequestExpired
from tests.fakes import MemoryLaneStore
from tests.unit.test_lane_runner_storage import CLOCK, Lane, until

PLATE = "粤B12345"


def rid() -> str:
    return uuid.uuid4().hex


def quote(plate: str = "", order_id: str = "", at_this_exit: bool = False) -> QuoteRequest:
    return QuoteRequest(plate, order_id, at_this_exit, "bolink", rid())


def inside(**cars: InsideCar) -> MemoryLaneStore:
    return MemoryLaneStore(inside=cars)


async def waiting(lane: Lane, plate: str = PLATE) -> str:
    """A car read at the exit, waiting to pay: its exit record id."""
    lane.runner.emit(PlateRead(plate, "blue", 90))
    await until(lambda: lane.runner.state.phase.value == "awaiting_payment", "the car waiting to pay")
    return lane.runner.state.visit.record_id


class Jam:
    """Holds the lane's task inside a step (a slow write, say) until released."""

    def __init__(self, lane: Lane) -> None:
        self.runner, self.step, self.free = lane.runner, lane.runner.step, asyncio.Event()

    async def _jammed(self, event: Any) -> list[fx.Effect]:
        await self.free.wait()
        return await self.step(event)

    def __enter__(self) -> "Jam":
        self.runner.step = self._jammed  # type: ignore[method-assign]
        self.runner.emit(Tick())
        return self

    def __exit__(self, *exc: object) -> None:
        self.free.set()


# --- quotes ---------------------------------------------------------------------------------------------------
async def test_the_car_waiting_at_the_exit_is_priced_by_its_lane_without_a_write():
    entered = CLOCK.now() - timedelta(hours=2)
    store = inside(**{PLATE: InsideCar("in1_7", entered, "in1", "temporary")})
    async with Lane("exit", store) as lane:
        record = await waiting(lane)
        commits = len(store.commits)
        answer = await lane.runner.request(quote(PLATE))
        assert answer.outcome == "quoted" and isinstance(answer.price, StayPrice)
        assert (answer.price.order_id, answer.price.due_fen, answer.price.total_fen) == ("in1_7", 500, 500)
        assert answer.price.entered_at == entered and 119 <= answer.price.minutes <= 120
        # the exit's own order and the exit named by the platform find it too; another car is not here
        assert (await lane.runner.request(quote(order_id=record))).outcome == "quoted"
        assert (await lane.runner.request(quote("粤B99999", at_this_exit=True))).outcome == "quoted"
        assert (await lane.runner.request(quote("粤B99999"))).outcome == "not_here"
        assert len(store.commits) == commits, "a price query writes nothing"


async def test_a_lane_with_no_car_waiting_answers_not_here():
    async with Lane("exit") as lane:
        ask = quote(PLATE, "in1_7", at_this_exit=True)
        assert await lane.runner.request(ask) == fx.QuoteResult(ask.request_id, "not_here")


async def test_the_plate_less_car_at_the_exit_the_platform_names_is_linked_to_its_stay_and_priced():
    entered = CLOCK.now() - timedelta(hours=1)
    store = inside(wx_8c1f02=InsideCar("in1_3", entered, "in1", "bolink_plateless"))
    async with Lane("exit", store) as lane:
        record = await waiting(lane, plate="")
        # asked about at another exit: this lane does not take the car for the platform's
        assert (await lane.runner.request(quote("wx_8c1f02"))).outcome == "not_here"
        answer = await lane.runner.request(quote("wx_8c1f02", at_this_exit=True))
        assert answer.outcome == "quoted" and answer.price is not None
        assert (answer.price.order_id, answer.price.due_fen, answer.price.entered_at) == ("in1_3", 500, entered)
        [link] = [p for p in store.written(fx.PatchRecord) if p.record_id == record]
        assert dict(link.changes)["entry_record_id"] == "in1_3"  # written before the answer
        assert lane.runner.state.visit.entry_record_id == "in1_3"


async def test_a_plate_less_car_whose_stay_turns_out_free_is_let_out_and_not_priced():
    store = inside(wx_1=InsideCar("in1_3", CLOCK.now() - timedelta(minutes=1), "in1", "bolink_plateless"))
    async with Lane("exit", store) as lane:
        lane.runner.policy = type(lane.runner.policy)(flat_fen=500, free_minutes=15)
        await waiting(lane, plate="")
        answer = await lane.runner.request(quote("wx_1", at_this_exit=True))
        assert answer.outcome == "let_out" and answer.price is None
        await until(lambda: lane.barrier.commands == ["open"], "the free car let out")


# --- operator releases ------------------------------------------------------------------------------------------
async def test_an_operator_release_of_a_waiting_car_answers_with_its_record_and_money():
    store = inside(**{PLATE: InsideCar("in1_7", CLOCK.now() - timedelta(hours=2), "in1", "temporary")})
    async with Lane("exit", store) as lane:
        record = await waiting(lane)
        answer = await lane.runner.request(OperatorOpen("王", "cash", 300, rid(), operator_uid=1001))
        [opened] = store.written(fx.OpenBarrier)
        assert isinstance(answer, fx.OperatorResult) and answer.outcome == "released" and answer.car_waited
        assert (answer.record_id, answer.action_id, answer.operator) == (record, opened.action_id, "王")
        assert dict(answer.money) == {"paid_fen": 300, "short_fen": 200, "over_fen": 0}
        assert answer.message == "operator release short of the amount due"
        release = lane.runner.status.last_release
        assert release is not None and (release["record_id"], release["short_fen"], release["operator_uid"]) == \
            (record, 200, 1001)
        assert lane.runner.status.releases["short_fen"] == 200


async def test_a_release_with_no_car_is_its_own_record():
    async with Lane() as lane:
        answer = await lane.runner.request(OperatorOpen("李", "ambulance", None, rid()))
        [record] = lane.store.written(fx.NewRecord)
        assert (answer.outcome, answer.record_id, answer.car_waited) == ("released", record.record_id, False)
        assert dict(answer.money) == {"paid_fen": 0}


@pytest.mark.parametrize("operator, reason, why", [
    ("", "cash", "operator release refused: name and reason are required"),
    ("王", "  ", "operator release refused: name and reason are required"),
])
async def test_a_release_without_name_or_reason_is_refused_with_the_reason(operator, reason, why):
    async with Lane() as lane:
        answer = await lane.runner.request(OperatorOpen(operator, reason, None, rid()))
        assert (answer.outcome, answer.message, answer.action_id) == ("refused", why, "")
        assert lane.barrier.commands == [] and lane.store.written(fx.OpenBarrier) == []
        assert lane.runner.status.last_release is None


async def test_a_release_while_the_arm_goes_up_already_is_answered_so():
    async with Lane() as lane:
        lane.runner.emit(PlateRead(PLATE, "blue", 90))
        await until(lambda: lane.runner.state.phase.value == "opening", "the entry opening")
        answer = await lane.runner.request(OperatorOpen("王", "fault", None, rid()))
        assert (answer.outcome, answer.message) == ("already_opening", "operator release: barrier already opening")
        assert len(lane.store.written(fx.OpenBarrier)) == 1


async def test_a_release_whose_records_cannot_be_written_is_answered_not_handled():
    async with Lane() as lane:
        lane.store.down = True
        answer = await lane.runner.request(OperatorOpen("王", "fault", None, rid(), operator_uid=7))
        assert answer == fx.OperatorResult(answer.request_id, "not_handled", NOT_HANDLED, operator="王")
        assert lane.barrier.commands == [] and lane.runner.status.last_release is None


# --- a platform's plate-less entry ------------------------------------------------------------------------------
async def test_a_platform_entry_is_answered_admitted_with_its_record_or_refused_with_why():
    async with Lane() as lane:
        answer = await lane.runner.request(PlatformEntry("wx_9f3a", "bolink", rid()))
        [record] = lane.store.written(fx.NewRecord)
        assert (answer.admitted, answer.record_id, record.plate) == (True, record.record_id, "wx_9f3a")
        busy = await lane.runner.request(PlatformEntry("wx_other", "bolink", rid()))  # the arm is going up
        assert (busy.admitted, busy.message) == (False, "platform entry refused: lane busy or not an entry lane")
    async with Lane("exit") as lane:
        answer = await lane.runner.request(PlatformEntry("wx_9f3a", "bolink", rid()))
        assert not answer.admitted and lane.store.written(fx.NewRecord) == []


# --- deadlines ------------------------------------------------------------------------------------------------
async def test_a_request_past_its_deadline_is_not_handed_to_the_lane():
    async with Lane() as lane:
        queued = lane.runner.queue.qsize()
        with pytest.raises(RequestExpired):
            await lane.runner.request(OperatorOpen("王", "late", None, rid()),
                                      deadline=asyncio.get_running_loop().time() - 0.1)
        assert lane.runner.queue.qsize() == queued


async def test_a_request_whose_deadline_passes_in_the_queue_is_dropped_and_never_carried_out(caplog):
    async with Lane() as lane:
        with Jam(lane):  # the lane is busy; the operator's deadline passes while the release waits behind
            with pytest.raises(RequestExpired):
                await lane.runner.request(OperatorOpen("gave-up", "stuck", None, rid()),
                                          deadline=asyncio.get_running_loop().time() + 0.05)
        # FIFO: once a later request is answered, the earlier one came out of the queue before it
        later = await lane.runner.request(OperatorOpen("second", "after", None, rid()))
        assert later.outcome == "released"
        assert [o.operator for o in lane.store.written(fx.OpenBarrier)] == ["second"]
        assert [r.operator for r in lane.store.written(fx.NewRecord)] == ["second"]
        assert "OperatorOpen dropped: its requester gave up" in caplog.text
        assert not lane.runner._requests and not lane.runner._abandoned, "nothing left behind"


async def test_a_price_query_whose_caller_gave_up_is_dropped_too():
    store = inside(wx_1=InsideCar("in1_3", CLOCK.now() - timedelta(hours=1), "in1", "bolink_plateless"))
    async with Lane("exit", store) as lane:
        await waiting(lane, plate="")
        with Jam(lane):
            with pytest.raises(asyncio.TimeoutError):
                await lane.runner.request(quote("wx_1", at_this_exit=True), timeout=0.05)
        assert (await lane.runner.request(quote("wx_2"))).outcome == "not_here"
        # the identification it would have made was never made
        assert lane.runner.state.visit.entry_record_id == "" and store.written(fx.PatchRecord) == []


async def test_a_release_nobody_waits_for_leaves_no_reply_slot_behind():
    async with Lane() as lane:
        lane.runner.emit(OperatorOpen("王", "fault", None, rid()))  # handed over without `request`
        await until(lambda: lane.barrier.commands == ["open"], "the OPEN")
        await until(lambda: lane.runner.state.pending_action == "", "the OPEN acknowledged to the lane")
        assert lane.runner.status.last_release is not None and lane.runner.status.last_release["operator"] == "王"
        assert not lane.runner._outcomes and not lane.runner._requests
