"""The one callback pipeline every payment platform's inbound messages go through.

    verify   the provider's codec parses the raw bytes and checks the signature (and replay window)
    park     a message naming another park / store is refused
    dispatch the provider routes the message by type; a payment result comes back here:
    inbox    stored under a unique (provider, key) BEFORE it is answered, so a repeat is answered again
             and changes nothing
    result   handed to the settlement (Results.on_result), which confirms a payment to a lane at most once
    count    one counter per outcome (the control socket's status shows them)
    ack      the platform's own answer form

A provider supplies only what is its own (`Steps`): the codec calls, the park its messages name, the
answer forms (ack, duplicate, error) and how one message maps to a settlement result (`Payment`). Nothing
here touches a lane or opens a barrier.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Generic, Optional, Protocol, TypeVar

from lanectl.core.settlement import ChargeAnswer
from lanectl.providers.ports import InboundStore, Results
from lanectl.service.ports import Clock, StorageUnavailable

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)


class Refused(Exception):
    """A step refused the message: counted under `count`, logged, answered with `answer` (the platform's form)."""

    def __init__(self, count: str, answer: bytes, reason: str) -> None:
        super().__init__(reason)
        self.count, self.answer, self.reason = count, answer, reason


@dataclass(frozen=True)
class Payment:
    """A payment result one message carries, as the settlement takes it."""

    inbox_key: str  # unique per provider: the same fact sent again has the same key
    payload: str  # what the inbox keeps (the message as received)
    order_ref: str = ""
    answer: Optional[ChargeAnswer] = None
    lane_id: Optional[str] = None
    # settlement providers asked in turn until one knows the order (default: the provider's own name)
    providers: tuple[str, ...] = ()
    # stored, but not to be applied: (log level, why) — logged once when new; the outcome is then None
    unbound: Optional[tuple[int, str]] = None


@dataclass(frozen=True)
class Answers:
    """The platform's answers to one payment message."""

    ack: Callable[[Optional[str]], bytes]  # stored (and applied): the settlement's outcome, None if not applied
    duplicate: bytes  # a repeat: answered, nothing changes
    count: Callable[[Optional[str]], str]  # which counter a new message goes to, by the outcome
    not_applied: Optional[bytes] = None  # the settlement raised after storing: answered this (None: raise)
    # the counter does not depend on the outcome: counted once stored, before the settlement is asked
    count_when_stored: bool = False


class Steps(Protocol[M_contra]):
    """What a provider supplies to the pipeline."""

    name: str  # the inbox's provider and the log's name
    content_type: str  # of every answer
    counts: dict[str, int]

    def verify(self, body: bytes, content_type: str) -> M_contra:  # type: ignore[misc]
        """Parse and check the signature; raise Refused in the platform's form."""

    def park_of(self, msg: M_contra) -> tuple[Optional[str], str]:
        """(the park the message names or None, ours); a mismatch is refused."""

    def wrong_park(self, msg: M_contra, park: str) -> bytes:
        """The platform's answer to a message for another park."""

    async def dispatch(self, msg: M_contra, body: bytes) -> Optional[bytes]:
        """The provider's handling by message type; payment results go through CallbackPipeline.pay."""

    def server_error(self) -> Optional[bytes]:
        """The platform's 'try again' when handling failed (not stored); None: the listener answers 503/500."""


class CallbackPipeline(Generic[M]):
    def __init__(self, steps: "Steps[M]", store: InboundStore, settlement: Optional[Results], clock: Clock,
                 log: logging.Logger) -> None:
        self.steps, self.store, self.settlement, self.clock, self.log = steps, store, settlement, clock, log
        self.counts = steps.counts

    async def handle_body(self, body: bytes, content_type: str = "") -> tuple[bytes, str]:
        """One POST -> (answer body, content type): verify, park check, then the provider's dispatch."""
        try:
            try:
                msg = self.steps.verify(body, content_type)
            except Refused as refused:
                return self.refuse(refused), self.steps.content_type
            reply = await self.handle_verified(msg, body)
        except StorageUnavailable:
            answer = self.steps.server_error()
            if answer is None:
                raise  # the listener answers 503: not stored, so not acknowledged
            self.counts["error"] += 1  # not stored: not acknowledged (the store logged the fault once)
            return answer, self.steps.content_type
        except Exception:
            answer = self.steps.server_error()
            if answer is None:
                raise
            self.counts["error"] += 1
            self.log.exception("%s callback could not be handled", self.steps.name)
            return answer, self.steps.content_type
        return (reply if reply is not None else b""), self.steps.content_type

    async def handle_verified(self, msg: M, body: bytes = b"") -> Optional[bytes]:
        """A message whose signature is checked already (Bolink's download.do): park check, then dispatch."""
        park, ours = self.steps.park_of(msg)
        if park not in (None, "") and ours and str(park) != ours:
            self.counts["refused"] += 1
            self.log.warning("%s message for park %r refused: this lane is park %r", self.steps.name, park, ours)
            return self.steps.wrong_park(msg, str(park))
        try:
            return await self.steps.dispatch(msg, body)
        except Refused as refused:
            return self.refuse(refused)

    def refuse(self, refused: Refused) -> bytes:
        self.counts[refused.count] += 1
        self.log.warning("%s callback refused (%s): %.300s", self.steps.name, refused.count, refused.reason)
        return refused.answer

    async def record(self, key: str, payload: str, *, inbox: str = "") -> bool:
        """Into the inbox before any answer: True when new, False for a repeat."""
        return await self.store.inbox_put(inbox or self.steps.name, key, payload, self.clock.now())

    async def pay(self, payment: Payment, answers: Answers) -> bytes:
        """A payment result: inbox (a repeat changes nothing), the settlement, the count, the answer."""
        if not await self.record(payment.inbox_key, payment.payload):
            self.counts["duplicate"] += 1
            self.log.info("%s %s repeated: answered again, nothing changed", self.steps.name, payment.inbox_key)
            return answers.duplicate
        if answers.count_when_stored:
            self.counts[answers.count(None)] += 1
        outcome = None
        if payment.unbound is not None:
            level, why = payment.unbound
            self.log.log(level, "%s %s: %s", self.steps.name, payment.inbox_key, why)
        elif self.settlement is not None and payment.answer is not None:
            try:
                outcome = await self._settle(payment)
            except Exception:
                if answers.not_applied is None:
                    raise
                # stored already: the books show it; the settlement's own polling may still settle the order
                self.counts["error"] += 1
                self.log.exception("%s %s stored but not applied", self.steps.name, payment.inbox_key)
                return answers.not_applied
        if not answers.count_when_stored:
            self.counts[answers.count(outcome)] += 1
        return answers.ack(outcome)

    async def _settle(self, payment: Payment) -> str:
        assert self.settlement is not None and payment.answer is not None
        outcome = "unknown_order"
        for provider in payment.providers or (self.steps.name,):
            outcome = await self.settlement.on_result(provider, payment.order_ref, payment.answer,
                                                      lane_id=payment.lane_id)
            if outcome != "unknown_order":
                break
        return outcome

