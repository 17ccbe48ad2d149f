"""Exit settlement, the driver: runs the pure settlement machine (core/settlement.py, where the rules and the
diagram live) for each exit record, over the store, the payment providers and the Clock.

One task per exit record owns that record's machine state: it feeds the machine one event at a time and
carries out its effects — attempt rows written ahead and marked (a write refused because storage is down is
tried again every `storage_retry_s`), provider calls (each its own task, so a callback or a stop is taken while
a call is out; its answer comes back as an event), confirmations and fallbacks onto the lane's queue. The
machine's deadlines are slept through the Clock port, so a fake clock drives every timer.

Every attempt is written ahead of the provider call, and "paid" is a compare-and-set in the store, so a sync
answer, a poll and a callback racing each other confirm one payment once. After a restart, open settlements
resume from their attempts: a charge that may have reached the platform is polled, never sent twice to
another provider.

The paid path in the daemon (`confirm_in_lane`, `first_attempt`) saves two synced commits: a fresh exit's first
attempt is written with the exit's own step (the store takes it from `first_attempt`; the driver then takes that
row instead of writing one), and a paid result's compare-and-set is committed in the lane's step it causes, with
the payment row and the OPEN written ahead (service/claims.py); a claim that loses there changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Optional, Protocol, Sequence, TypeVar, Union

from lanectl.core import effects as fx
from lanectl.core import settlement as sm
from lanectl.core.events import Event
from lanectl.core.settlement import (UNANSWERED, Attempt, ChargeAnswer, Outcome,  # noqa: F401 (re-exported)
                                     SettlementTiming)
# SettlementStore: the port the driver takes (declared with the store's other ports)
from lanectl.service.claims import ClaimedPayment, PaymentClaim
from lanectl.service.ports import NO_METRICS, Clock, Metrics, SettlementStore, StorageUnavailable

log = logging.getLogger("lanectl.settlement")
T = TypeVar("T")

# The stored status strings, for the store's queries (the vocabulary is core.settlement.Status).
ATTEMPT_OPEN = tuple(s.value for s in sm.OPEN)
ATTEMPT_PAYABLE = tuple(s.value for s in sm.PAYABLE)
# a payment confirmed while its attempt is in one of these came after the car stopped waiting: a late payment
_NOT_WAITING = (sm.Mode.RECONCILING, sm.Mode.LATE_CHECK)


class ProviderUnavailable(Exception):
    """No usable answer (timeout, 5xx, garbage): the charge may or may not have happened — treat as pending."""


class PaymentProvider(Protocol):
    name: str

    def order_ref(self, order: fx.StartSettlement) -> str:
        """The provider's id for charging this exit (idempotency key on the platform's side)."""

    async def charge(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer: ...

    async def query(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        """Where does this charge stand now? (May re-issue the charge where the platform wants that.)"""

    # Optional: `async def precheck(order, attempt) -> Optional[ChargeAnswer]` — asked before the charge, sends
    # nothing that can move money; None: go on and charge; a "skip" answer: this provider does not charge the
    # car (raising ProviderUnavailable or running out of the window is a skip too: nothing was charged).
    # Optional: `async def charge_code(order, attempt, code) -> ChargeAnswer` — a charge with a scanned code.


# An inbox item: a machine event, or a load from the store that makes one (None: nothing to feed).
Item = Union[sm.Input, Callable[[], Awaitable[Optional[sm.Input]]]]


@dataclass
class _Record:
    """One exit record's machine state, its inbox and the provider calls it has out."""

    state: sm.SettlementState
    inbox: deque[Item] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    calls: dict[int, asyncio.Task[Any]] = field(default_factory=dict)
    task: Optional[asyncio.Task[Any]] = None
    starting: bool = False  # a Begin is queued: the record counts as settling from the moment it is asked

    def put(self, item: Item) -> None:
        self.inbox.append(item)
        self.wake.set()


@dataclass
class SettlementService:
    store: SettlementStore
    providers: Mapping[str, PaymentProvider]
    lane_providers: Mapping[str, Sequence[str]]  # lane id -> provider names, in the order they are tried
    emit: Callable[[str, Event], None]  # (lane id, event) onto that lane's queue
    clock: Clock
    timing: SettlementTiming = SettlementTiming()
    metrics: Metrics = NO_METRICS  # attempts by provider and status, late payments
    # (lane id, record id) after an attempt row of that exit was written: the booth console reads it again
    on_attempt: Optional[Callable[[str, str], None]] = None
    # A provider said "paid" for a lane's car: its OPEN follows once the payment is committed (a few ms). The
    # daemon passes the lane's barrier hint, so no input poll takes the bus in between (at 9600 baud a poll frame
    # already on the line holds the OPEN up to ~15 ms); the hint only orders the bus, it decides nothing.
    expect_open: Callable[[str], None] = lambda lane_id: None
    # True: a paid result's compare-and-set is committed in the lane's own step with what it causes (the payment
    # recorded, the OPEN written ahead): one synced transaction, not two in series (service/claims.py). `emit`
    # then takes ClaimedPayment too, and the lane runner answers it. False: the driver commits it, then tells the
    # lane (a lane that cannot answer claims, e.g. a test's event list).
    confirm_in_lane: bool = False
    _records: dict[str, _Record] = field(default_factory=dict, init=False)

    # --- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume after a restart: re-deliver confirmed payments the lanes never committed, resume open
        settlements, and reconcile attempts still open at a provider."""
        for a in await self.store.attempts(statuses=(sm.Status.PAID.value,)):
            if not a.delivered:
                self._perform(sm.redelivery(a, await self.store.settlement_open(a.record_id)))
        for order in await self.store.open_settlements():
            self._begin(order)
        for a in await self.store.attempts(statuses=ATTEMPT_OPEN):
            if a.record_id not in self._records:
                self._reconcile(a)

    async def stop(self) -> None:
        tasks = [r.task for r in self._records.values() if r.task is not None]
        tasks += [c for r in self._records.values() for c in r.calls.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def on_effects(self, lane_id: str, effects: Sequence[fx.Effect]) -> None:
        """Called by the lane runner after a commit: the settlement rows are already on disk."""
        for e in effects:
            if isinstance(e, fx.StartSettlement):
                # an exit recorded in this very step has no attempts yet: nothing to read before the first one
                self._begin(e, fresh=any(isinstance(n, fx.NewRecord) and n.record_id == e.record_id
                                         for n in effects))
            elif isinstance(e, fx.StopSettlement):
                if e.record_id in self._records:
                    self._records[e.record_id].put(sm.Stop())
            elif isinstance(e, fx.ChargeByCode):
                record = self._record(e.record_id, lane_id)
                record.starting = True
                record.put(lambda rid=e.record_id, lid=lane_id, code=e.code: self._code_event(rid, lid, code))

    def first_attempt(self, order: fx.StartSettlement) -> Optional[tuple[str, str]]:
        """(provider, order_ref) of a fresh exit's first attempt: what the store may write ahead in the lane's own
        step (a fresh exit has no earlier attempts, so the flow's first is always its first provider's)."""
        names = self.lane_providers.get(order.lane_id)
        if not names or names[0] not in self.providers:
            return None
        return names[0], self.providers[names[0]].order_ref(order)

    def status(self) -> dict[str, Any]:
        records = self._records.values()
        return {"settling": sorted(rid for rid, r in self._records.items() if r.starting or r.state.settling),
                "reconciling": sum(r.state.count(sm.Mode.RECONCILING) for r in records),
                "late_checks": sum(r.state.count(sm.Mode.LATE_CHECK) for r in records)}

    # --- results from callbacks ---------------------------------------------------------------------------------
    async def on_result(self, provider: str, order_ref: str, answer: ChargeAnswer, *,
                        lane_id: Optional[str] = None) -> Outcome:
        """A verified result from a provider for one of our charges. Confirms a payment at most once. A store
        fault reaches the caller (StorageUnavailable), which does not acknowledge: the platform sends it again."""
        if answer.status == "paid" and lane_id is not None:
            self.expect_open(lane_id)
        attempts = await self.store.attempts(provider=provider, order_ref=order_ref)
        if answer.status == "paid" and lane_id is None and attempts:
            self.expect_open(attempts[0].lane_id)
        verdict = sm.judge_result(provider, order_ref, attempts, answer, lane_id)
        self._perform(verdict.effects)
        if verdict.settle is None or verdict.attempt is None:
            assert verdict.outcome is not None
            return verdict.outcome
        s = verdict.settle
        in_lane = s.paid and self.confirm_in_lane
        if in_lane:
            won = await self._confirm(verdict.attempt, s)
        else:
            won = await self.store.settle_attempt(s.attempt_id, s.paid, s.trade_no, s.amount_fen, s.method, s.detail,
                                                  self.clock.now())
        if not won:
            return "duplicate"
        self._perform([e for e in sm.on_won(verdict.attempt, s) if not (in_lane and isinstance(e, sm.ToLane))])
        self._attempt_changed(verdict.attempt.lane_id, verdict.attempt.record_id)
        record = self._records.get(verdict.attempt.record_id)
        track = record.state.track(verdict.attempt.id) if record is not None else None
        self._count_settled(verdict.attempt.provider, s.paid, track is None or track.mode in _NOT_WAITING)
        if record is not None:  # the machine following it stops polling at once
            record.put(sm.SettledElsewhere(sm.settled_row(verdict.attempt, s)))
        return "accepted"

    # --- the records' tasks ---------------------------------------------------------------------------------------
    def _record(self, record_id: str, lane_id: str) -> _Record:
        record = self._records.get(record_id)
        if record is None:
            record = self._records[record_id] = _Record(sm.SettlementState(record_id, lane_id))
            record.task = asyncio.get_running_loop().create_task(self._run(record), name=f"settle-{record_id}")
        return record

    def _begin(self, order: fx.StartSettlement, fresh: bool = False) -> None:
        # (the machine ignores these too; checked here so that no task is started for nothing)
        if not self.lane_providers.get(order.lane_id):
            return
        existing = self._records.get(order.record_id)
        if existing is not None and (existing.starting or existing.state.settling):
            return
        record = self._record(order.record_id, order.lane_id)
        record.starting = True
        if fresh:
            record.put(sm.Begin(order, self._specs(order, self.lane_providers[order.lane_id])))
        else:
            record.put(lambda: self._begin_event(order))

    def _reconcile(self, attempt: Attempt) -> None:
        record = self._record(attempt.record_id, attempt.lane_id)

        async def load() -> sm.Input:
            order = await self.store.settlement_order(attempt.record_id)
            return sm.Reconcile(order, (attempt,), tuple(self.providers))
        record.put(load)

    async def _begin_event(self, order: fx.StartSettlement) -> sm.Input:
        # this exit's attempts, for the order as it is now (a car identified later is another order)
        previous = await self._stored(lambda: self.store.attempts(record_id=order.record_id))
        return sm.Begin(order, self._specs(order, self.lane_providers[order.lane_id]), tuple(previous))

    async def _code_event(self, record_id: str, lane_id: str, code: str) -> sm.Input:
        order = await self.store.settlement_order(record_id)
        names = self.lane_providers.get(lane_id, ())
        return sm.BeginCode(order, self._specs(order, names) if order is not None else (), code)

    def _specs(self, order: fx.StartSettlement, names: Sequence[str]) -> tuple[sm.ProviderSpec, ...]:
        return tuple(sm.ProviderSpec(n, self.providers[n].order_ref(order), hasattr(self.providers[n], "precheck"),
                                     hasattr(self.providers[n], "charge_code")) for n in names)

    async def _run(self, record: _Record) -> None:
        rid = record.state.record_id
        try:
            while True:
                item = await self._next(record)
                event = await item() if callable(item) else item
                if isinstance(event, (sm.Begin, sm.BeginCode)):
                    record.starting = False
                if event is not None:
                    await self._feed(record, event)
                if record.state.idle and not record.inbox and not record.starting:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not a provider's or the store's fault: logged, the record dropped
            log.error("settlement %s failed: %r", rid, exc)
        finally:
            for call in record.calls.values():
                call.cancel()
            if self._records.get(rid) is record:
                del self._records[rid]

    async def _next(self, record: _Record) -> Item:
        """The next inbox item, or a Tick once the machine's earliest deadline has come (slept on the Clock)."""
        while True:
            if record.inbox:
                return record.inbox.popleft()
            record.wake.clear()
            deadline = record.state.next_deadline()
            if deadline is None:
                await record.wake.wait()
                continue
            wait = (deadline - self.clock.now()).total_seconds()
            if wait <= 0:
                return sm.Tick()
            woken = asyncio.ensure_future(record.wake.wait())
            slept = asyncio.ensure_future(self.clock.sleep(wait))
            try:
                await asyncio.wait((woken, slept), return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
                slept.cancel()
            if not record.inbox:
                return sm.Tick()

    async def _feed(self, record: _Record, event: sm.Input) -> None:
        """Hand the machine one event, carry out its effects; what they answer at once is fed in turn."""
        queue: deque[sm.Input] = deque([event])
        while queue:
            before = record.state
            record.state, effects = sm.handle(record.state, queue.popleft(), self.clock.now(), self.timing)
            for effect in effects:
                follow = await self._execute(record, effect, before)
                if follow is not None:
                    queue.append(follow)

    async def _execute(self, record: _Record, effect: sm.Effect, before: sm.SettlementState) -> Optional[sm.Input]:
        if isinstance(effect, sm.NewAttempt):
            # written ahead with the exit's own step (first_attempt), else now
            take = getattr(self.store, "take_ahead", None)
            ahead = take(effect.record_id, effect.provider, effect.order_ref) if take is not None else None
            attempt = ahead if ahead is not None and ahead.amount_fen == effect.amount_fen else \
                await self._stored(lambda: self.store.new_attempt(
                    effect.record_id, effect.lane_id, effect.provider, effect.order_ref, effect.amount_fen,
                    self.clock.now()))
            self.metrics.settlement_attempt(effect.provider, sm.Status.CHARGING.value)
            self._attempt_changed(effect.lane_id, effect.record_id)
            return sm.AttemptCreated(attempt)
        if isinstance(effect, sm.CallProvider):
            task = asyncio.get_running_loop().create_task(self._call(record, effect),
                                                          name=f"{effect.kind}-{effect.attempt.id}")
            record.calls[effect.call] = task
            task.add_done_callback(lambda t, c=effect.call: record.calls.pop(c, None))
            return None
        if isinstance(effect, sm.CancelCall):
            task = record.calls.pop(effect.call, None)
            if task is not None:
                task.cancel()
            return None
        if isinstance(effect, sm.MarkAttempt):
            only_from = tuple(s.value for s in effect.only_from)
            marked = await self._stored(lambda: self.store.mark_attempt(
                effect.attempt_id, effect.status.value, effect.detail, self.clock.now(), only_from=only_from))
            # the state before the event: a mark that ends the attempt (skipped, failed) has dropped its track
            followed = record.state.track(effect.attempt_id) or before.track(effect.attempt_id)
            if marked is not False and followed is not None:
                self.metrics.settlement_attempt(followed.attempt.provider, effect.status.value)
            if marked is not False:
                self._attempt_changed(record.state.lane_id, record.state.record_id)
            return None
        if isinstance(effect, sm.SettleAttempt):
            track = record.state.track(effect.attempt_id)
            assert track is not None
            in_lane = effect.paid and self.confirm_in_lane
            if in_lane:
                won = await self._stored(lambda: self._confirm(track.attempt, effect))
            else:
                won = await self._stored(lambda: self.store.settle_attempt(
                    effect.attempt_id, effect.paid, effect.trade_no, effect.amount_fen, effect.method,
                    effect.detail, self.clock.now()))
            if won:
                self._count_settled(track.attempt.provider, effect.paid, track.mode in _NOT_WAITING)
                self._attempt_changed(track.attempt.lane_id, track.attempt.record_id)
            # a won compare-and-set wrote the row from what it was given: only a lost one needs reading back
            row = sm.settled_row(track.attempt, effect) if won else await self._row(track.attempt)
            return sm.Settled(effect.attempt_id, won, row, confirmed=in_lane)
        self._perform((effect,))
        return None

    async def _confirm(self, attempt: Attempt, settle: sm.SettleAttempt) -> bool:
        """A paid result confirmed in the lane's step (service/claims.py): True for the call that moved the
        attempt, False if it was confirmed before; StorageUnavailable if the lane's step could not be written."""
        told = sm.confirmation(attempt, settle.trade_no, settle.amount_fen, settle.method)
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        claim = PaymentClaim(attempt.id, settle.trade_no, settle.amount_fen, settle.method, settle.detail,
                             ATTEMPT_PAYABLE, self.clock.now())
        self.emit(told.lane_id, ClaimedPayment(told.event, claim, outcome))  # type: ignore[arg-type]
        return await outcome

    def _attempt_changed(self, lane_id: str, record_id: str) -> None:
        if self.on_attempt is not None:
            self.on_attempt(lane_id, record_id)

    def _count_settled(self, provider: str, paid: bool, car_gone: bool) -> None:
        self.metrics.settlement_attempt(provider, (sm.Status.PAID if paid else sm.Status.FAILED).value)
        if paid and car_gone:
            self.metrics.late_payment(provider)

    async def _call(self, record: _Record, effect: sm.CallProvider) -> None:
        """One provider call; its answer goes back through the inbox. The machine bounds it with a deadline
        (and cancels it when that passes)."""
        order = record.state.order
        provider = self.providers[effect.attempt.provider]
        assert order is not None
        try:
            if effect.kind == "precheck":
                answer = await provider.precheck(order, effect.attempt)  # type: ignore[attr-defined]
            elif effect.kind == "charge":
                answer = await provider.charge(order, effect.attempt)
            elif effect.kind == "code":
                answer = await provider.charge_code(order, effect.attempt, effect.code)  # type: ignore[attr-defined]
            else:
                answer = await provider.query(order, effect.attempt)
        except ProviderUnavailable as exc:
            record.put(sm.Answered(effect.call, unavailable=str(exc)))
            return
        except Exception as exc:  # a provider bug: no answer; the call's deadline decides
            log.error("settlement %s: %s %s raised %r", effect.attempt.record_id, effect.attempt.provider,
                      effect.kind, exc)
            return
        if answer is not None and answer.status == "paid":  # (a precheck answers None: go on and charge)
            self.expect_open(effect.attempt.lane_id)
        record.put(sm.Answered(effect.call, answer))

    def _perform(self, effects: Sequence[sm.Effect]) -> None:
        """The effects that only speak: to a lane, or to the log."""
        for effect in effects:
            if isinstance(effect, sm.ToLane):
                self.emit(effect.lane_id, effect.event)
            elif isinstance(effect, fx.Log):
                getattr(log, effect.level)(effect.message)

    async def _row(self, attempt: Attempt) -> Attempt:
        """The attempt as stored now."""
        found = await self._stored(lambda: self.store.attempts(record_id=attempt.record_id, provider=attempt.provider))
        return next(a for a in found if a.id == attempt.id)

    async def _stored(self, call: Callable[[], Awaitable[T]]) -> T:
        """A store call the flow cannot go on without: while storage is down it is tried again every
        `storage_retry_s` (the store logs the fault once; the flow neither dies nor acts without its row)."""
        while True:
            try:
                return await call()
            except StorageUnavailable:
                await self.clock.sleep(self.timing.storage_retry_s)
