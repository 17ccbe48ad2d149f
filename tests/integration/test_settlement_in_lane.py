"""A paid result confirmed in the lane's own step (service/claims.py): real SQLite store, real entry and exit lane
runners, the settlement driver with `confirm_in_lane`. The compare-and-set and the lane's commit of what it causes
are one transaction: the barrier opens once, a payment is confirmed once, a claim that loses writes nothing, a
payment for a car no longer waiting keeps its late flag, and a step refused for want of storage is claimed again."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional
from zoneinfo import ZoneInfo

import pytest

from lanectl.adapters.clock import SystemClock
from lanectl.adapters.store import SqliteStore
from lanectl.core import effects as fx
from lanectl.core.events import IoSnapshot, OperatorOpen, PlateRead
from lanectl.service.claims import ClaimedPayment, ClaimLost, PaymentClaim
from lanectl.service.lane_runner import LaneRunner
from lanectl.service.ports import StorageUnavailable
from lanectl.service.settlement import (ATTEMPT_PAYABLE, Attempt, ChargeAnswer, SettlementService,
                                        SettlementTiming)
from tests.fakes import FakeBarrier
from tests.policies import FlatPolicy

TZ = ZoneInfo("Asia/Shanghai")
CLOCK = SystemClock(TZ)
DOWN = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True)
PLATE = "粤B12345"
TIMING = SettlementTiming(charge_timeout_s=5.0, poll_interval_s=0.05, window_s=30.0, reconcile_interval_s=0.05,
                          reconcile_for_s=60.0, storage_retry_s=0.05)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 4.0) -> None:
    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)
    try:
        await asyncio.wait_for(_poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"not within {timeout:g} s: {what}") from None


class Provider:
    """The charge answers `charged` once `release` is set (set from the start unless a test holds it)."""

    name = "bolink"

    def __init__(self, charged: ChargeAnswer, query: ChargeAnswer = ChargeAnswer("pending")) -> None:
        self.charged, self.queried = charged, query
        self.release = asyncio.Event()
        self.release.set()
        self.charges = 0

    def order_ref(self, order: fx.StartSettlement) -> str:
        return f"bolink-{order.record_id}"

    async def charge(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        self.charges += 1
        await self.release.wait()
        return self.charged

    async def query(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        return self.queried


class Lot:
    """An entry lane and an exit lane (flat 5 yuan, no free minutes) over one store, the exit settled by
    `provider` with its payments confirmed in the exit lane's steps."""

    def __init__(self, db: Path, provider: Provider) -> None:
        self.store = SqliteStore(db)
        self.provider = provider
        self.gates = {"in1": FakeBarrier(), "out1": FakeBarrier()}
        self.decided: list[fx.Effect] = []
        # claims on their way to the lane, held back by a test (None: handed over at once)
        self.held: Optional[list[ClaimedPayment]] = None
        self.svc = SettlementService(self.store, {"bolink": provider}, {"out1": ["bolink"]}, self._to_lane, CLOCK,
                                     TIMING, confirm_in_lane=True)
        self.store.write_first_attempts(self.svc.first_attempt)  # as the daemon wires it
        self.written_later: list[str] = []  # attempts the driver wrote itself (not with the exit's step)
        new_attempt = self.store.new_attempt

        async def counted(record_id: str, *args: Any) -> Attempt:
            self.written_later.append(record_id)
            return await new_attempt(record_id, *args)
        self.store.new_attempt = counted  # type: ignore[method-assign]
        policy = FlatPolicy(flat_fen=500, free_minutes=0)
        self.runners = {
            "in1": LaneRunner("in1", "entry", policy, self.store, CLOCK, barrier=self.gates["in1"]),
            "out1": LaneRunner("out1", "exit", policy, self.store, CLOCK, barrier=self.gates["out1"],
                               settlement=self.svc.on_effects, storage_retry_s=0.05,
                               on_effects=lambda _lane, effects: self.decided.extend(effects))}
        self.tasks: list[asyncio.Task[Any]] = []

    def _to_lane(self, lane_id: str, event: Any) -> None:
        if self.held is not None and isinstance(event, ClaimedPayment):
            self.held.append(event)
        else:
            self.runners[lane_id].emit(event)

    async def __aenter__(self) -> "Lot":
        await self.store.open()
        for lane_id, runner in self.runners.items():
            self.tasks.append(asyncio.create_task(runner.run(), name=f"lane-{lane_id}"))
            await runner.started.wait()
            runner.emit(DOWN)
            await until(lambda r=runner: r.state.io == DOWN, f"{lane_id}'s first snapshot")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.svc.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.store.close()

    async def car_waits_at_the_exit(self) -> str:
        """A car comes in, then reads at the exit: its exit record (the settlement is under way)."""
        self.runners["in1"].emit(PlateRead(PLATE, "blue", 90))
        await until(lambda: self.gates["in1"].commands == ["open"], "the car let in")
        self.runners["out1"].emit(PlateRead(PLATE, "blue", 90))
        await until(lambda: any(isinstance(e, fx.StartSettlement) for e in self.decided), "the car asked to pay")
        return next(e.record_id for e in self.decided if isinstance(e, fx.StartSettlement))

    async def attempt(self, record_id: str) -> Attempt:
        [attempt] = await self.store.attempts(record_id=record_id)
        return attempt

    def settled(self) -> bool:
        return not self.svc.status()["settling"] and not self.svc._records


@pytest.fixture
async def lot(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Lot]:
    async with Lot(tmp_path / "lanectl.db", request.param) as lot:
        yield lot


def paid(trade_no: str = "T1") -> ChargeAnswer:
    return ChargeAnswer("paid", trade_no, 500, "wallet")


@pytest.mark.parametrize("lot", [Provider(paid())], indirect=True)
async def test_a_paid_answer_is_confirmed_in_the_step_that_opens_the_barrier(lot: Lot):
    record_id = await lot.car_waits_at_the_exit()
    await until(lambda: lot.gates["out1"].commands == ["open"], "the paid car let out")
    await until(lot.settled, "the settlement over")
    attempt = await lot.attempt(record_id)
    # the confirmation and the lane's payment row were one commit: the attempt is paid AND delivered
    assert (attempt.status, attempt.trade_no, attempt.paid_fen, attempt.delivered) == ("paid", "T1", 500, True)
    [payment] = await lot.store.payments(record_id)
    assert (payment["amount_fen"], payment["reference"], payment["flag"]) == (500, "T1", "")
    assert lot.gates["out1"].commands == ["open"]


@pytest.mark.parametrize("lot", [Provider(paid())], indirect=True)
async def test_a_fresh_exits_first_attempt_is_written_ahead_in_the_exit_step_itself(lot: Lot):
    lot.provider.release.clear()
    charged: list[Attempt] = []
    charge = lot.provider.charge

    async def seen(order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        # the row the charge goes out under is on disk already, with the exit record and its settlement
        charged.append(attempt)
        assert [a.id for a in await lot.store.attempts(record_id=order.record_id)] == [attempt.id]
        assert await lot.store.settlement_open(order.record_id)
        return await charge(order, attempt)

    lot.provider.charge = seen  # type: ignore[method-assign]
    record_id = await lot.car_waits_at_the_exit()
    await until(lambda: lot.provider.charges == 1, "the charge sent")
    [attempt] = charged
    assert (attempt.record_id, attempt.status, attempt.amount_fen, attempt.order_ref) == \
        (record_id, "charging", 500, f"bolink-{record_id}")
    lot.provider.release.set()
    await until(lot.settled, "the settlement over")
    assert lot.written_later == [] and [a.status for a in await lot.store.attempts(record_id=record_id)] == ["paid"]
    assert lot.gates["out1"].commands == ["open"]


@pytest.mark.parametrize("lot", [Provider(paid())], indirect=True)
async def test_a_callback_that_confirms_first_opens_once_and_the_sync_answer_after_it_writes_nothing(lot: Lot):
    lot.held = []  # the sync answer's claim is on its way to the lane when the platform's callback comes
    record_id = await lot.car_waits_at_the_exit()
    await until(lambda: len(lot.held or []) == 1, "the sync answer's claim out")
    [late] = lot.held
    lot.held = None
    attempt = await lot.attempt(record_id)
    assert await lot.svc.on_result("bolink", attempt.order_ref, paid(), lane_id="out1") == "accepted"
    await until(lambda: lot.gates["out1"].commands == ["open"] and not lot.runners["out1"].state.pending_action,
                "the car let out on the callback")
    saved = await lot.store.load_lane_state("out1")
    lot.runners["out1"].emit(late)  # its compare-and-set loses in the lane's transaction: the step never was
    assert await late.outcome is False
    await until(lot.settled, "the settlement over")
    assert await lot.store.load_lane_state("out1") == saved
    assert lot.gates["out1"].commands == ["open"]
    assert len(await lot.store.payments(record_id)) == 1
    assert (await lot.attempt(record_id)).status == "paid"
    # the callback again (the platform did not hear our answer): a duplicate, nothing written
    assert await lot.svc.on_result("bolink", attempt.order_ref, paid(), lane_id="out1") == "duplicate"
    assert len(await lot.store.payments(record_id)) == 1 and lot.gates["out1"].commands == ["open"]


@pytest.mark.parametrize("lot", [Provider(paid())], indirect=True)
async def test_a_callback_after_the_sync_answer_confirmed_it_is_a_duplicate(lot: Lot):
    record_id = await lot.car_waits_at_the_exit()
    await until(lambda: lot.gates["out1"].commands == ["open"], "the paid car let out")
    attempt = await lot.attempt(record_id)
    assert await lot.svc.on_result("bolink", attempt.order_ref, paid(), lane_id="out1") == "duplicate"
    await until(lot.settled, "the settlement over")
    assert lot.gates["out1"].commands == ["open"] and len(await lot.store.payments(record_id)) == 1


@pytest.mark.parametrize("lot", [Provider(paid())], indirect=True)
async def test_a_claim_that_loses_rolls_the_whole_step_back(lot: Lot):
    record_id = await lot.car_waits_at_the_exit()
    await until(lot.settled, "the settlement over")
    attempt = await lot.attempt(record_id)
    saved = await lot.store.load_lane_state("out1")
    now = CLOCK.now()
    claim = PaymentClaim(attempt.id, "T2", 500, "wallet", "again", ATTEMPT_PAYABLE, now)
    step = [fx.RecordPayment(record_id, "out1", 500, "bolink:wallet", "T2", now.isoformat()),
            fx.OpenBarrier("act-T2", record_id, "payment", "bolink", trade_no="T2")]
    with pytest.raises(ClaimLost):
        await lot.store.commit_lane("out1", {"phase": "leaving"}, step, now, claim=claim)
    assert await lot.store.load_lane_state("out1") == saved
    assert [p["reference"] for p in await lot.store.payments(record_id)] == ["T1"]
    assert (await lot.attempt(record_id)).trade_no == "T1"


@pytest.mark.parametrize("lot", [Provider(ChargeAnswer("pending", detail="paying"))], indirect=True)
async def test_a_payment_for_a_car_released_meanwhile_is_confirmed_once_and_flagged_late(lot: Lot):
    record_id = await lot.car_waits_at_the_exit()
    await until(lambda: lot.provider.charges == 1, "the charge sent")
    released = await lot.runners["out1"].request(OperatorOpen("alice", "barrier test", record_id=record_id))
    assert isinstance(released, fx.OperatorResult) and released.outcome == "released"
    await until(lambda: lot.gates["out1"].commands == ["open"], "the operator's OPEN")
    attempt = await lot.attempt(record_id)
    assert await lot.svc.on_result("bolink", attempt.order_ref, paid("T7")) == "accepted"
    [payment] = [p for p in await lot.store.payments(record_id) if p["reference"] == "T7"]
    assert payment["flag"] == "late"
    row = await lot.attempt(record_id)
    assert (row.status, row.delivered) == ("paid", True)
    assert lot.gates["out1"].commands == ["open"]  # the late payment moves no barrier
    assert any(isinstance(e, fx.Log) and "no longer waiting" in e.message for e in lot.decided)


@pytest.mark.parametrize("lot", [Provider(paid())], indirect=True)
async def test_a_claimed_step_refused_for_want_of_storage_is_claimed_again_and_opens_once(lot: Lot):
    refused: list[Optional[PaymentClaim]] = []
    commit = lot.store.commit_lane

    async def refusing(lane_id: str, state: dict, effects: list, now: datetime,
                       claim: Optional[PaymentClaim] = None) -> None:
        if claim is not None and len(refused) < 2:
            refused.append(claim)
            raise StorageUnavailable("disk full (test)")
        await commit(lane_id, state, effects, now, claim=claim)

    lot.store.commit_lane = refusing  # type: ignore[method-assign]
    record_id = await lot.car_waits_at_the_exit()
    await until(lambda: lot.gates["out1"].commands == ["open"], "the car let out once storage takes the step")
    await until(lot.settled, "the settlement over")
    assert len(refused) == 2 and lot.provider.charges == 1
    attempt = await lot.attempt(record_id)
    assert (attempt.status, attempt.delivered) == ("paid", True)
    assert len(await lot.store.payments(record_id)) == 1 and lot.gates["out1"].commands == ["open"]


@pytest.mark.parametrize("lot", [Provider(paid())], indirect=True)
async def test_a_claim_whose_driver_stopped_waiting_is_still_committed_and_the_lane_goes_on(lot: Lot):
    lot.held = []
    record_id = await lot.car_waits_at_the_exit()
    await until(lambda: len(lot.held or []) == 1, "the claim out")
    [claim] = lot.held
    claim.outcome.cancel()  # its driver was cancelled (the daemon stops) before the lane took the claim
    lot.runners["out1"].emit(claim)
    await until(lambda: lot.gates["out1"].commands == ["open"], "the paid car let out all the same")
    attempt = await lot.attempt(record_id)
    assert (attempt.status, attempt.delivered) == ("paid", True)
    assert not any(t.done() for t in lot.tasks)  # the lanes run on
