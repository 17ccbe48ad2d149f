"""Exit settlement: charge a waiting car through the lane's payment providers until the money is settled.

One model for every platform (Bolink, XFT, tdzn): the lane asks for a settlement (StartSettlement, written
with the exit record); this service tries the lane's providers in their configured order:

    precheck (optional, nothing that moves money: e.g. XFT's signed relation) ──skip / unknown──▶ next provider
    charge ──paid──▶ PaymentConfirmed to the lane (which alone decides to open)
       │  ──failed / skip──▶ next provider
       └─pending / no answer──▶ poll (and accept callbacks) until the window ends
                                   ──paid──▶ PaymentConfirmed      ──failed──▶ next provider
                                   ──"no such order" (absent), for a charge that was never answered, a few
                                     times over `absent_span_s`──▶ not charged: failed ──▶ next provider
                                   ──window over──▶ PaymentFallback; keep reconciling in the background:
                                                    a late success is still confirmed (the lane opens if
                                                    the car still waits, else records it for refund)

Attempt statuses: `charging` — written ahead of the call, and kept while the charge has had no answer (timeout,
5xx, garbage); `pending` — the platform answered and has not decided; `fallback` — the window ended while
charging or pending (the detail says which: UNANSWERED); then `paid`, `failed` or `skipped`.

The precheck has no charge timeout of its own here (the provider bounds its own call); the settlement bounds it
by what is left of the window. Only the charge call is under `charge_timeout_s`, so a slow precheck can never
be booked as a charge that may have reached the platform.

"Absent" (the platform says it has no order under our reference) means something only for a charge that never
got an answer: the charge may not have reached the platform at all. It is asked again, at most
`absent_checks` times spread over at least `absent_span_s` (an order created by a slow platform a moment after
our timeout shows up in between), then booked as not charged. A result that still comes later (a notify, or
the one last query `absent_late_check_s` after) is a payment like any other late one: recorded and confirmed to
the lane, which records it for refund if the car has left another way. A charge the platform did answer
(INIT / pending) is never failed for a "no such order": it is reconciled as before.

Every attempt is written ahead of the provider call, and "paid" is a compare-and-set in the store, so a sync
answer, a poll and a callback racing each other confirm one payment once. After a restart, open settlements
resume from their attempts: a charge that may have reached the platform is polled, never sent twice to
another provider.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Literal, Mapping, Optional, Protocol, Sequence, TypeVar

from lanectl.core import effects as fx
from lanectl.core.events import Event, PaymentConfirmed, PaymentFallback
from lanectl.service.ports import Clock, StorageUnavailable

log = logging.getLogger("lanectl.settlement")
T = TypeVar("T")

ATTEMPT_OPEN = ("charging", "pending", "fallback")  # may still turn into money: polled and reconciled
# A result can still arrive for these: the driver pays the same order by scanning the exit QR after the
# provider skipped the car (no sign-free wallet) or after a failed charge. A paid result is money for this car.
ATTEMPT_PAYABLE = ATTEMPT_OPEN + ("skipped", "failed")
# The detail of a `fallback` attempt whose charge never had an answer (the status vocabulary is fixed by the
# store's schema; this marker keeps "never answered" across the window's end and a restart).
UNANSWERED = "charge never answered"


@dataclass(frozen=True)
class Attempt:
    id: int
    record_id: str
    lane_id: str
    provider: str
    order_ref: str
    amount_fen: int
    status: str  # charging | pending | fallback | paid | failed | skipped
    created_ts: float
    trade_no: str = ""
    paid_fen: int = 0
    method: str = ""
    delivered: bool = False
    detail: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Attempt":
        return cls(row["id"], row["record_id"], row["lane_id"], row["provider"], row["order_ref"], row["amount_fen"],
                   row["status"], row["created_ts"], row["trade_no"], row["paid_fen"], row["method"],
                   bool(row["delivered"]), row["detail"])

    @property
    def open(self) -> bool:
        return self.status in ATTEMPT_OPEN


@dataclass(frozen=True)
class ChargeAnswer:
    """What a provider made of one call. Only "paid" can ever lead to an OPEN. "absent" (queries only): the
    platform says it has no order under this reference — for now."""

    status: Literal["paid", "failed", "pending", "skip", "absent"]
    trade_no: str = ""
    amount_fen: Optional[int] = None  # what the platform says it took (None: it did not say)
    method: str = ""
    detail: str = ""
    answered: bool = field(default=True, compare=False)  # False: no usable answer (timeout, 5xx) — we know nothing


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


class SettlementStore(Protocol):
    async def open_settlements(self) -> list[fx.StartSettlement]: ...

    async def settlement_open(self, record_id: str) -> bool: ...

    async def settlement_order(self, record_id: str) -> Optional[fx.StartSettlement]: ...

    async def new_attempt(self, record_id: str, lane_id: str, provider: str, order_ref: str, amount_fen: int,
                          now: datetime) -> Attempt: ...

    async def attempts(self, *, record_id: Optional[str] = None, provider: Optional[str] = None,
                       order_ref: Optional[str] = None, statuses: Sequence[str] = ()) -> list[Attempt]: ...

    async def mark_attempt(self, attempt_id: int, status: str, detail: str, now: datetime,
                           *, only_from: Sequence[str] = ATTEMPT_OPEN) -> bool: ...

    async def settle_attempt(self, attempt_id: int, paid: bool, trade_no: str, paid_fen: int, method: str,
                             detail: str, now: datetime) -> bool: ...


@dataclass(frozen=True)
class SettlementTiming:
    charge_timeout_s: float = 5.0  # one provider call; no answer in time = pending, never paid
    poll_interval_s: float = 2.0  # while the car waits (Bolink SDK: every 2 s)
    window_s: float = 120.0  # then fall back to scan-to-pay / the booth (Bolink SDK: stop after 2 min)
    reconcile_interval_s: float = 30.0  # after the window, in the background
    reconcile_for_s: float = 3600.0  # give up reconciling an attempt this long after it started
    storage_retry_s: float = 2.0  # a write the flow needs, refused because storage is down: tried again after this
    absent_checks: int = 3  # "no such order" for a never-answered charge this many times ...
    absent_span_s: float = 10.0  # ... over at least this long: not charged
    absent_late_check_s: float = 60.0  # then one last query this long after, for a payment made regardless


Outcome = Literal["accepted", "duplicate", "unknown_order", "mismatch"]


@dataclass
class SettlementService:
    store: SettlementStore
    providers: Mapping[str, PaymentProvider]
    lane_providers: Mapping[str, Sequence[str]]  # lane id -> provider names, in the order they are tried
    emit: Callable[[str, Event], None]  # (lane id, event) onto that lane's queue
    clock: Clock
    timing: SettlementTiming = SettlementTiming()
    _flows: dict[str, asyncio.Task[Any]] = field(default_factory=dict, init=False)
    _reconcilers: dict[int, asyncio.Task[Any]] = field(default_factory=dict, init=False)
    _settled: dict[int, asyncio.Event] = field(default_factory=dict, init=False)
    # attempt id -> (absent answers, first one's time, last one's time); None once the platform showed it has
    # the order
    _absent: dict[int, Optional[tuple[int, float, float]]] = field(default_factory=dict, init=False)
    _late_checks: dict[int, asyncio.Task[Any]] = field(default_factory=dict, init=False)

    # --- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume after a restart: re-deliver confirmed payments the lanes never committed, resume open
        settlements, and reconcile attempts still open at a provider."""
        for a in await self.store.attempts(statuses=("paid",)):
            if not a.delivered and await self.store.settlement_open(a.record_id):
                log.info("settlement %s: re-delivering %s payment %s after a restart", a.record_id, a.provider,
                         a.trade_no)
                self._confirm(a, a.trade_no, a.paid_fen, a.method)
        for order in await self.store.open_settlements():
            self._spawn_flow(order)
        for a in await self.store.attempts(statuses=ATTEMPT_OPEN):
            if a.record_id not in self._flows:
                self._spawn_reconcile(a)

    async def stop(self) -> None:
        tasks = list(self._flows.values()) + list(self._reconcilers.values()) + list(self._late_checks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def on_effects(self, lane_id: str, effects: Sequence[fx.Effect]) -> None:
        """Called by the lane runner after a commit: the settlement rows are already on disk."""
        for e in effects:
            if isinstance(e, fx.StartSettlement):
                self._spawn_flow(e)
            elif isinstance(e, fx.StopSettlement):
                self._stop_flow(e.record_id)
            elif isinstance(e, fx.ChargeByCode):
                # the driver chose to pay by scan: that charge replaces the flow (its attempts are reconciled)
                self._stop_flow(e.record_id)
                task = asyncio.get_running_loop().create_task(self._code_flow(lane_id, e),
                                                              name=f"settle-code-{e.record_id}")
                self._flows[e.record_id] = task
                task.add_done_callback(lambda t, rid=e.record_id: self._flow_done(rid, t))

    def _stop_flow(self, record_id: str) -> None:
        task = self._flows.pop(record_id, None)
        if task is not None:
            task.cancel()
            # whatever is still open at a provider is reconciled in the background
            asyncio.get_running_loop().create_task(self._reconcile_open(record_id))

    def status(self) -> dict[str, Any]:
        return {"settling": sorted(self._flows), "reconciling": len(self._reconcilers)}

    # --- results from callbacks (and from our own polls) --------------------------------------------------------
    async def on_result(self, provider: str, order_ref: str, answer: ChargeAnswer, *,
                        lane_id: Optional[str] = None) -> Outcome:
        """A verified result from a provider for one of our charges. Confirms a payment at most once."""
        attempts = await self.store.attempts(provider=provider, order_ref=order_ref)
        if not attempts:
            log.warning("%s result for unknown order %s (%s): ignored", provider, order_ref, answer.status)
            return "unknown_order"
        attempt = next((a for a in reversed(attempts) if a.open),
                       next((a for a in reversed(attempts) if a.status in ATTEMPT_PAYABLE), attempts[-1]))
        if lane_id is not None and lane_id != attempt.lane_id:
            log.error("%s result for order %s names lane %s, but the charge is lane %s's: ignored", provider,
                      order_ref, lane_id, attempt.lane_id)
            return "mismatch"
        if answer.status not in ("paid", "failed"):
            return "accepted"  # pending: nothing to record
        if answer.status == "failed" and not attempt.open:
            return "duplicate"  # a failure changes nothing once the attempt has ended
        if attempt.status == "paid":
            if answer.trade_no not in ("", attempt.trade_no):
                # A second, different payment for one charge: real money, kept on the books for a refund.
                log.error("%s: second payment %s for order %s (first %s): recorded for refund", provider,
                          answer.trade_no, order_ref, attempt.trade_no)
                self._confirm(attempt, answer.trade_no, self._amount(attempt, answer), answer.method)
                return "accepted"
            return "duplicate"
        return "accepted" if await self._settle(attempt, answer) else "duplicate"

    # --- the flow ------------------------------------------------------------------------------------------------
    def _spawn_flow(self, order: fx.StartSettlement) -> None:
        if order.record_id in self._flows or not self.lane_providers.get(order.lane_id):
            return
        task = asyncio.get_running_loop().create_task(self._flow(order), name=f"settle-{order.record_id}")
        self._flows[order.record_id] = task
        task.add_done_callback(lambda t, rid=order.record_id: self._flow_done(rid, t))

    def _flow_done(self, record_id: str, task: asyncio.Task[Any]) -> None:
        if self._flows.get(record_id) is task:
            del self._flows[record_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("settlement %s failed: %r", record_id, task.exception())

    async def _flow(self, order: fx.StartSettlement) -> None:
        # attempts of this exit by provider, for the order as it is now (a car identified later is another order)
        previous = {(a.provider, a.order_ref): a for a in await self.store.attempts(record_id=order.record_id)}
        why: list[str] = []  # what each provider said, for the fallback's reason
        for name in self.lane_providers[order.lane_id]:
            provider = self.providers[name]
            attempt = previous.get((name, provider.order_ref(order)))
            if attempt is not None and attempt.status in ("failed", "skipped"):
                why.append(f"{name}: {attempt.detail or attempt.status}")
                continue
            if attempt is not None and attempt.status == "paid":
                return  # confirmed already (re-delivered by start() if the lane never committed it)
            if attempt is None:
                # written ahead of the charge: while storage is down no charge is made, the flow waits
                attempt = await self._stored(lambda: self.store.new_attempt(
                    order.record_id, order.lane_id, name, provider.order_ref(order), order.due_fen, self.clock.now()))
                outcome, detail = await self._charge(provider, order, attempt, provider.charge,
                                                     getattr(provider, "precheck", None))
            else:  # resumed after a restart: the charge may have reached the platform, only wait for it
                outcome, detail = await self._wait(provider, order, attempt)
            if outcome == "paid":
                return
            if outcome == "window":
                self.emit(order.lane_id, PaymentFallback(order.record_id, f"{name} did not settle within "
                                                                          f"{self.timing.window_s:g} s"))
                return
            log.info("settlement %s: %s %s: %s", order.record_id, name,
                     "does not charge this car" if outcome == "skip" else "failed", detail)
            why.append(f"{name}: {detail or 'does not charge this car'}" if outcome == "skip"
                       else f"{name} failed" + (f": {detail}" if detail else ""))
        self.emit(order.lane_id, PaymentFallback(order.record_id, "; ".join(why) or "no provider could charge this car"))

    async def _code_flow(self, lane_id: str, charge: fx.ChargeByCode) -> None:
        """One charge with the scanned code through the first of the lane's providers that takes codes."""
        order = await self.store.settlement_order(charge.record_id)
        name = next((n for n in self.lane_providers.get(lane_id, ()) if hasattr(self.providers[n], "charge_code")),
                    None)
        if order is None or name is None:
            self.emit(lane_id, PaymentFallback(charge.record_id, "no provider here takes a scanned payment code"))
            return
        provider = self.providers[name]
        attempt = await self._stored(lambda: self.store.new_attempt(
            order.record_id, order.lane_id, name, provider.order_ref(order), order.due_fen, self.clock.now()))
        outcome, detail = await self._charge(provider, order, attempt,
                                             lambda o, a: provider.charge_code(o, a, charge.code))  # type: ignore[attr-defined]
        if outcome in ("failed", "skip"):
            self.emit(lane_id, PaymentFallback(order.record_id,
                                               f"{name}: scanned code refused: {detail or 'no reason given'}"))
        elif outcome == "window":
            self.emit(lane_id, PaymentFallback(order.record_id, f"{name}: scanned code payment not settled"))

    async def _charge(self, provider: PaymentProvider, order: fx.StartSettlement, attempt: Attempt,
                      call: Callable[..., Any], precheck: Optional[Callable[..., Any]] = None) -> tuple[str, str]:
        """Precheck, one charge (the attempt is written already), then wait for it:
        (paid | failed | skip | window, detail)."""
        answer = await self._precheck(precheck, order, attempt) if precheck is not None else None
        if answer is None:
            answer = await self._call(call, order, attempt)
        if answer.status == "skip":
            await self._stored(lambda: self.store.mark_attempt(attempt.id, "skipped", answer.detail, self.clock.now()))
            return "skip", answer.detail
        if answer.status in ("paid", "failed"):
            if await self._settle(attempt, answer, retry=True):
                return answer.status, answer.detail
            # a callback settled it while the call was out: its word stands
            current = await self._reload(attempt)
            return ("paid" if current.status == "paid" else "failed"), current.detail
        # an answer (INIT, "paying") makes it pending; no answer leaves it charging: it may never have arrived
        status = "pending" if answer.answered else "charging"
        await self._stored(lambda: self.store.mark_attempt(attempt.id, status, answer.detail, self.clock.now(),
                                                           only_from=("charging",)))
        return await self._wait(provider, order, attempt)

    async def _precheck(self, fn: Callable[..., Any], order: fx.StartSettlement,
                        attempt: Attempt) -> Optional[ChargeAnswer]:
        """None: go on and charge. Otherwise a skip: nothing was sent that could charge the car."""
        left = attempt.created_ts + self.timing.window_s - self.clock.now().timestamp()
        try:
            async with asyncio.timeout(max(left, 0.0)):
                answer = await fn(order, attempt)
        except TimeoutError:
            return ChargeAnswer("skip", detail=f"precheck not answered within the {self.timing.window_s:g} s window")
        except ProviderUnavailable as exc:
            return ChargeAnswer("skip", detail=f"precheck unanswered: {exc}")
        if answer is None:
            return None
        if answer.status != "skip":  # a precheck never pays, fails or leaves anything pending
            log.error("settlement %s: %s precheck answered %s: taken as a skip", attempt.record_id, attempt.provider,
                      answer.status)
        return ChargeAnswer("skip", detail=answer.detail)

    async def _wait(self, provider: PaymentProvider, order: fx.StartSettlement,
                    attempt: Attempt) -> tuple[str, str]:
        """Poll (and take callbacks) until the attempt settles or the window ends; after the window the attempt
        is reconciled in the background."""
        result = await self._poll(provider, order, attempt)
        if result == "window":
            await self._stored(lambda: self.store.mark_attempt(
                attempt.id, "fallback", f"settlement window ended; {UNANSWERED}", self.clock.now(),
                only_from=("charging",)))
            await self._stored(lambda: self.store.mark_attempt(attempt.id, "fallback", "settlement window ended",
                                                               self.clock.now(), only_from=("pending",)))
            self._spawn_reconcile(attempt)
            return result, ""
        return result, (await self._reload(attempt)).detail  # the refusal's reason, from a poll or a callback

    async def _poll(self, provider: PaymentProvider, order: fx.StartSettlement,
                    attempt: Attempt) -> Literal["paid", "failed", "window"]:
        settled = self._settled.setdefault(attempt.id, asyncio.Event())
        try:
            while True:
                left = attempt.created_ts + self.timing.window_s - self.clock.now().timestamp()
                if left <= 0:
                    return "window"
                # an order the platform says it does not have is asked again only when its spread is due; the
                # window's end is then no reason to ask early (the reconciler goes on at the same spread)
                absent = self._absent.get(attempt.id) is not None
                due = max(self._absent_wait(attempt), self.timing.poll_interval_s)
                try:  # a callback settling the attempt wakes us at once
                    async with asyncio.timeout(min(due, left)):
                        await settled.wait()
                except TimeoutError:
                    pass
                if not settled.is_set() and (not absent or due <= left):
                    answer = await self._call(provider.query, order, attempt)
                    await self._take_query_answer(attempt, answer)
                current = await self._reload(attempt)
                if current.status in ("paid", "failed"):
                    return current.status  # type: ignore[return-value]
        finally:
            self._settled.pop(attempt.id, None)

    def _spawn_reconcile(self, attempt: Attempt) -> None:
        if attempt.id in self._reconcilers:
            return
        task = asyncio.get_running_loop().create_task(self._reconcile(attempt), name=f"reconcile-{attempt.id}")
        self._reconcilers[attempt.id] = task
        task.add_done_callback(lambda t, aid=attempt.id: self._reconcilers.pop(aid, None))

    async def _reconcile_open(self, record_id: str) -> None:
        for a in await self.store.attempts(record_id=record_id, statuses=ATTEMPT_OPEN):
            self._spawn_reconcile(a)

    async def _reconcile(self, attempt: Attempt) -> None:
        """After the car stopped waiting on it: ask now and then until it settles or we give up."""
        try:
            await self._reconcile_until_settled(attempt)
        finally:
            self._absent.pop(attempt.id, None)

    async def _reconcile_until_settled(self, attempt: Attempt) -> None:
        provider = self.providers.get(attempt.provider)
        order = await self.store.settlement_order(attempt.record_id)
        if provider is None or order is None:
            return
        while self.clock.now().timestamp() < attempt.created_ts + self.timing.reconcile_for_s:
            await asyncio.sleep(self._absent_wait(attempt))
            answer = await self._call(provider.query, order, attempt)
            if await self._take_query_answer(attempt, answer):
                return
            current = await self._reload(attempt)
            if not current.open:
                return
            await asyncio.sleep(self._poll_interval(attempt, self.timing.reconcile_interval_s))
        await self._stored(lambda: self.store.mark_attempt(attempt.id, "failed", "not settled: reconciliation gave up",
                                                           self.clock.now()))
        log.warning("settlement %s: %s charge %s never settled; reconciliation gave up", attempt.record_id,
                    attempt.provider, attempt.order_ref)

    # --- query answers, and orders the platform does not have -------------------------------------------------
    async def _take_query_answer(self, attempt: Attempt, answer: ChargeAnswer) -> bool:
        """Apply one query answer; True when the attempt is settled by it (paid, failed, or not charged)."""
        if answer.status in ("paid", "failed"):
            await self._settle(attempt, answer, retry=True)
            return True
        if answer.status == "absent":
            return await self._on_absent(attempt, answer)
        if answer.answered:
            self._absent[attempt.id] = None  # the platform has the order: "no such order" later means nothing
        return False

    async def _on_absent(self, attempt: Attempt, answer: ChargeAnswer) -> bool:
        if attempt.id in self._absent and self._absent[attempt.id] is None:
            return False
        current = await self._reload(attempt)
        if not _never_answered(current):
            self._absent[attempt.id] = None  # the charge was answered: the order exists, keep reconciling it
            return False
        now = self.clock.now().timestamp()
        count, first, _ = self._absent.get(attempt.id) or (0, now, now)
        count += 1
        self._absent[attempt.id] = (count, first, now)
        # (a timer may wake a hair early against the wall clock: 10 ms are not worth another spread of waiting)
        if count < self.timing.absent_checks or now - first < self.timing.absent_span_s - 0.01:
            return False
        detail = (f"not charged: {attempt.provider} has no order {attempt.order_ref} ({count} answers over "
                  f"{now - first:.0f} s; the charge was never answered)" + (f": {answer.detail}" if answer.detail
                                                                            else ""))
        if await self._settle(attempt, ChargeAnswer("failed", detail=detail), retry=True):
            self._absent.pop(attempt.id, None)
            log.warning("settlement %s: %s", attempt.record_id, detail)
            self._spawn_late_check(attempt)
        return True

    def _poll_interval(self, attempt: Attempt, interval: float) -> float:
        """Queries of an order the platform says it does not have are spread over absent_span_s."""
        if self._absent.get(attempt.id) is None:
            return interval
        return max(interval, self._absent_spread())

    def _absent_spread(self) -> float:
        return self.timing.absent_span_s / max(self.timing.absent_checks - 1, 1)

    def _absent_wait(self, attempt: Attempt) -> float:
        """How long until the next "no such order" query is due (0: now, or not in that phase). Keeps the
        spread across the window's end, where the last poll and the reconciler's first query meet."""
        seen = self._absent.get(attempt.id)
        if seen is None:
            return 0.0
        return max(0.0, seen[2] + self._absent_spread() - self.clock.now().timestamp())

    def _spawn_late_check(self, attempt: Attempt) -> None:
        """One last query for an order booked as not charged (the notify is the other way a late payment
        comes in). stop() cancels it."""
        if attempt.id in self._late_checks or self.timing.absent_late_check_s <= 0:
            return
        task = asyncio.get_running_loop().create_task(self._late_check(attempt), name=f"late-check-{attempt.id}")
        self._late_checks[attempt.id] = task
        task.add_done_callback(lambda t, aid=attempt.id: self._late_checks.pop(aid, None))

    async def _late_check(self, attempt: Attempt) -> None:
        provider = self.providers.get(attempt.provider)
        order = await self.store.settlement_order(attempt.record_id)
        if provider is None or order is None:
            return
        await asyncio.sleep(self.timing.absent_late_check_s)
        answer = await self._call(provider.query, order, attempt)
        if answer.status == "paid":
            log.error("settlement %s: %s order %s booked as not charged was paid after all: recorded", attempt.record_id,
                      attempt.provider, attempt.order_ref)
            await self._settle(attempt, answer, retry=True)

    # --- helpers -------------------------------------------------------------------------------------------------
    async def _call(self, fn: Callable[..., Any], order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands as the call finishes,
        # and stop() would then wait for a reconciler until its horizon
        try:
            async with asyncio.timeout(self.timing.charge_timeout_s):
                return await fn(order, attempt)
        except TimeoutError:
            return ChargeAnswer("pending", detail=f"no answer within {self.timing.charge_timeout_s:g} s",
                                answered=False)
        except ProviderUnavailable as exc:
            return ChargeAnswer("pending", detail=str(exc), answered=False)

    async def _reload(self, attempt: Attempt) -> Attempt:
        """The attempt as stored now (a callback or another task may have moved it)."""
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

    async def _settle(self, attempt: Attempt, answer: ChargeAnswer, *, retry: bool = False) -> bool:
        """`retry`: a flow waits for storage; a callback (on_result) does not — StorageUnavailable reaches its
        handler, which does not acknowledge it, so the platform sends it again."""
        paid = answer.status == "paid"
        amount = self._amount(attempt, answer) if paid else 0

        def write() -> Awaitable[bool]:
            return self.store.settle_attempt(attempt.id, paid, answer.trade_no, amount, answer.method,
                                             answer.detail, self.clock.now())
        won = await (self._stored(write) if retry else write())
        if won:
            self._absent.pop(attempt.id, None)
            event = self._settled.get(attempt.id)
            if event is not None:
                event.set()
            if paid:
                log.info("settlement %s: %s paid %d fen (trade %s)", attempt.record_id, attempt.provider, amount,
                         answer.trade_no)
                self._confirm(attempt, answer.trade_no, amount, answer.method)
        return won

    @staticmethod
    def _amount(attempt: Attempt, answer: ChargeAnswer) -> int:
        # A platform that says "paid" without an amount took what we asked it to charge.
        return attempt.amount_fen if answer.amount_fen is None else answer.amount_fen

    def _confirm(self, attempt: Attempt, trade_no: str, amount_fen: int, method: str) -> None:
        # trade_no doubles as the payment's reference; the order ref keeps a sync "paid" without one traceable
        self.emit(attempt.lane_id, PaymentConfirmed(attempt.record_id, attempt.provider, amount_fen,
                                                    trade_no or attempt.order_ref, method))


def _never_answered(attempt: Attempt) -> bool:
    """The charge went out and the platform never answered it (it may never have arrived)."""
    return attempt.status == "charging" or (attempt.status == "fallback" and UNANSWERED in attempt.detail)
