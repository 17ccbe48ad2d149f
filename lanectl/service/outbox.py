"""The outbox relay: drains queued uploads (entry/exit records, later payment reports) to their destinations.

The daemon writes an outbox row in the same SQLite transaction as the state change it reports; this relay
sends those rows afterwards, so a record is never lost to a network outage and never sent before it is
committed. Rules:

* FIFO per destination: an exit record must not overtake its entry record. While the oldest item of a
  destination is waiting for a retry, every later item of that destination waits behind it.
* One worker per destination, a token bucket per destination (Bolink wants < 10 requests/s).
* Exponential backoff with jitter; a publisher that raises counts as RETRY; REJECT is final (dead letter).
* Log when a destination starts failing and when it recovers, never each retry.

Pure asyncio over ports: the queue (SQLite in production, MemoryOutboxQueue in tests), the publishers and
the clock are injected.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Mapping, Optional, Protocol

# OutboxQueue: the port the relay takes (declared with the store's other ports)
from lanectl.service.ports import Clock, OutboxQueue, StorageUnavailable

log = logging.getLogger(__name__)
# retry_now(): how far past a stored retry time the next drain looks (a backoff is never longer than a day)
RETRY_NOW_HORIZON = timedelta(days=1)


@dataclass(frozen=True)
class OutboxItem:
    id: int  # increasing in commit order: the FIFO order of a destination
    destination: str  # "bolink", "webhook", ... — selects the Publisher
    kind: str  # "entry", "exit", ...
    key: str  # idempotency key (unique per destination), e.g. the record id + kind
    payload: dict
    attempts: int  # failed attempts so far
    created_at: datetime


class PublishResult(Enum):
    DONE = "done"  # delivered, or the destination already had it
    RETRY = "retry"  # transient: try again later, keep later items waiting
    REJECT = "reject"  # the destination refuses this item for good: dead letter


@dataclass(frozen=True)
class Outcome:
    result: PublishResult
    error: str = ""

    @classmethod
    def done(cls) -> "Outcome":
        return cls(PublishResult.DONE)

    @classmethod
    def retry(cls, error: str) -> "Outcome":
        return cls(PublishResult.RETRY, error)

    @classmethod
    def reject(cls, error: str) -> "Outcome":
        return cls(PublishResult.REJECT, error)


class Publisher(Protocol):
    async def publish(self, item: OutboxItem) -> Outcome:
        """Deliver one item. Expected failures are returned as RETRY / REJECT outcomes, not raised."""


@dataclass(frozen=True)
class DestinationStatus:
    """What `lanectl outbox` shows per destination (the pending count comes from the store)."""

    sent: int = 0
    rejected: int = 0  # dead-lettered: REJECT or max_attempts reached
    last_error: str = ""
    failing_since: Optional[datetime] = None  # None while healthy
    last_sent_at: Optional[datetime] = None
    retry_at: Optional[datetime] = None  # when the blocked head item is tried again


@dataclass(frozen=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 300.0
    jitter: float = 0.2  # the delay is shortened by up to this fraction, so retries of many lanes spread out

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds before attempt number attempts+1 (attempts >= 1 failed so far)."""
        raw = min(self.cap_s, self.base_s * 2 ** min(attempts - 1, 62))
        return raw * (1.0 - self.jitter * rng.random())


class TokenBucket:
    """At most `rate` sends per second on average, bursts of `burst`; waits on the injected clock."""

    def __init__(self, clock: Clock, rate: float, burst: float = 1.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._clock, self._rate, self._burst = clock, rate, burst
        self._tokens = burst
        self._last = clock.monotonic()

    async def take(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0 - 1e-9:  # float refill lands a hair below 1.0: do not sleep 1e-14 s
            self._tokens = max(0.0, self._tokens - 1.0)
            return
        due = now + (1.0 - self._tokens) / self._rate
        await self._clock.sleep(due - now)
        # Taken as of when it was due, not when the sleep ended: a late wake-up (a busy loop, a loaded machine:
        # ~1 ms each) would otherwise stretch every interval of a drain (1/rate + the lateness: 10-15 % at
        # 100/s). The rate holds on average, and any second still sees at most rate + 1 sends.
        self._tokens, self._last = 0.0, due


class OutboxRelay:
    def __init__(
        self,
        queue: OutboxQueue,
        publishers: Mapping[str, Publisher],
        clock: Clock,
        *,
        rate_per_s: Optional[Mapping[str, float]] = None,
        default_rate_per_s: float = 5.0,
        backoff: Backoff = Backoff(),
        backoffs: Optional[Mapping[str, Backoff]] = None,  # per destination, where `backoff` does not fit
        max_attempts: Optional[int] = None,  # None: retry forever (a record upload must not be dropped)
        rng: Optional[random.Random] = None,
        batch: int = 20,
        idle_s: float = 5.0,  # poll the store at least this often (items written by another process, restarts)
    ) -> None:
        self._queue = queue
        self._publishers = dict(publishers)
        self._clock = clock
        self._backoff = backoff
        self._backoffs = dict(backoffs or {})
        self._max_attempts = max_attempts
        self._rng = rng or random.Random()
        self._batch = batch
        self._idle_s = idle_s
        rates = dict(rate_per_s or {})
        self._buckets = {d: TokenBucket(clock, rates.get(d, default_rate_per_s)) for d in self._publishers}
        self._wakeups = {d: asyncio.Event() for d in self._publishers}
        self._status = {d: DestinationStatus() for d in self._publishers}
        self._blocked_until: dict[str, float] = {}  # monotonic time the head item may be retried
        # retry_now(): the destination is back; its head item goes at once, its stored retry time not waited for
        self._retry_now: dict[str, asyncio.Event] = {d: asyncio.Event() for d in self._publishers}

    # -- public ------------------------------------------------------------------------------------------
    def wake(self, destination: Optional[str] = None) -> None:
        """New items were committed: send them now instead of at the next poll. Never blocks."""
        for d, ev in self._wakeups.items():
            if destination is None or d == destination:
                ev.set()

    def retry_now(self, destination: str) -> None:
        """`destination` is reachable again (the site bus reconnected): the item waiting out its backoff is tried
        at once instead of at its retry time, and the items behind it follow. Never blocks."""
        if destination in self._retry_now:
            self._retry_now[destination].set()
            self._wakeups[destination].set()

    def status(self) -> dict[str, dict[str, Any]]:
        """Per destination: sent, rejected, last_error, failing_since, last_sent_at, retry_at — plain dicts
        (datetimes as values) ready for the control socket's JSON."""
        return {d: asdict(st) for d, st in self._status.items()}

    def destination_status(self, destination: str) -> DestinationStatus:
        return self._status[destination]

    async def run(self) -> None:
        """One worker per destination, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for destination in self._publishers:
                tg.create_task(self._worker(destination), name=f"outbox:{destination}")

    # -- worker ------------------------------------------------------------------------------------------
    async def _worker(self, destination: str) -> None:
        store_failing = False
        while True:
            await self._wait_out_backoff(destination)
            self._wakeups[destination].clear()  # before due(): a wake() during the query is not lost
            try:
                sent_any = await self._drain_once(destination)
            except Exception as exc:  # the store failed (disk, lock): keep the worker alive, try again later
                if not store_failing:
                    log.error("outbox %s: queue error, will retry: %s", destination, exc,
                              exc_info=not isinstance(exc, StorageUnavailable))
                store_failing = True
                await self._clock.sleep(self._idle_s)
                continue
            if store_failing:
                log.info("outbox %s: queue readable again", destination)
                store_failing = False
            if not sent_any and destination not in self._blocked_until:
                await self._idle(destination)

    async def _drain_once(self, destination: str) -> bool:
        """Send one batch of due items in order; stop at the first RETRY. True if any item was handled."""
        now = self._clock.now()
        if self._retry_now[destination].is_set():  # back: the head's stored retry time is not waited for
            self._retry_now[destination].clear()
            now += RETRY_NOW_HORIZON
        items = await self._queue.due(destination, now, self._batch)
        # An item's "done" is written while the next one goes out: waiting for that commit (an fsync) before
        # each send would add it to every interval once it is longer than 1/rate - the send (a drain 10-15 %
        # slower than the rate at 100/s). All are written before the next due() and before a retry is recorded.
        marks: list[asyncio.Future[None]] = []
        try:
            for item in items:
                await self._buckets[destination].take()
                outcome = await self._publish(destination, item)
                if outcome.result is PublishResult.RETRY:
                    await self._settle(marks)
                    await self._on_retry(destination, item, outcome.error)
                    return True
                if outcome.result is PublishResult.REJECT:
                    await self._dead(destination, item, outcome.error or "rejected", answered=True)
                else:
                    marks.append(asyncio.ensure_future(self._queue.mark_done(item.id, self._clock.now())))
                    self._on_success(destination)
        finally:
            await self._settle(marks)
        return bool(items)

    @staticmethod
    async def _settle(marks: list[asyncio.Future[None]]) -> None:
        """Wait for the pending done-marks; the first failure (the store) is raised once all have ended."""
        pending, marks[:] = list(marks), []
        results = await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _publish(self, destination: str, item: OutboxItem) -> Outcome:
        try:
            outcome = await self._publishers[destination].publish(item)
        except Exception as exc:  # a publisher bug or an unexpected library error: retry, do not crash
            return Outcome(PublishResult.RETRY, f"{type(exc).__name__}: {exc}")
        if not isinstance(outcome, Outcome):
            return Outcome(PublishResult.RETRY, f"publisher returned {outcome!r}")
        return outcome

    async def _on_retry(self, destination: str, item: OutboxItem, error: str) -> None:
        attempts = item.attempts + 1
        error = error or "retry"
        if self._max_attempts is not None and attempts >= self._max_attempts:
            await self._dead(destination, item, f"gave up after {attempts} attempts: {error}", answered=False)
            return
        delay = self._backoffs.get(destination, self._backoff).delay(attempts, self._rng)
        next_at = self._clock.now() + timedelta(seconds=delay)
        await self._queue.mark_retry(item.id, attempts, next_at, error)
        self._blocked_until[destination] = self._clock.monotonic() + delay
        st = self._status[destination]
        if st.failing_since is None:
            log.warning("outbox %s: failing (%s %s): %s — retrying with backoff", destination, item.kind,
                        item.key, error)
        self._status[destination] = replace(st, last_error=error, retry_at=next_at,
                                            failing_since=st.failing_since or self._clock.now())

    async def _dead(self, destination: str, item: OutboxItem, error: str, *, answered: bool) -> None:
        await self._queue.mark_dead(item.id, error, self._clock.now())
        # each dead item is logged: it is a lost upload that someone must look at, not a retry
        log.error("outbox %s: dropped %s %s (id %d): %s", destination, item.kind, item.key, item.id, error)
        st = self._status[destination]
        self._status[destination] = replace(st, rejected=st.rejected + 1, last_error=error)
        if answered:  # a REJECT proves the destination is reachable; giving up after retries does not
            self._on_answered(destination)

    def _on_success(self, destination: str) -> None:
        st = self._status[destination]
        self._status[destination] = replace(st, sent=st.sent + 1, last_sent_at=self._clock.now())
        self._on_answered(destination)

    def _on_answered(self, destination: str) -> None:
        """The destination answered for good (done or reject): it is reachable again."""
        st = self._status[destination]
        if st.failing_since is not None:
            down_s = (self._clock.now() - st.failing_since).total_seconds()
            log.info("outbox %s: recovered after %.0f s", destination, down_s)
            self._status[destination] = replace(st, failing_since=None, retry_at=None)

    async def _wait_out_backoff(self, destination: str) -> None:
        """A head item waits for its retry time; wake() does not shorten it (new items queue behind), retry_now()
        does."""
        until = self._blocked_until.pop(destination, None)
        if until is None:
            return
        remaining = until - self._clock.monotonic()
        if remaining <= 0 or self._retry_now[destination].is_set():
            return
        back = asyncio.ensure_future(self._retry_now[destination].wait())
        sleeper = asyncio.ensure_future(self._clock.sleep(remaining))
        try:
            await asyncio.wait({back, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            back.cancel()
            sleeper.cancel()

    async def _idle(self, destination: str) -> None:
        """Sleep until wake() or the poll interval, whichever comes first."""
        ev = self._wakeups[destination]
        if ev.is_set():
            return
        waiter = asyncio.ensure_future(ev.wait())
        sleeper = asyncio.ensure_future(self._clock.sleep(self._idle_s))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
