"""Each payment provider's state for the car waiting at an exit lane, as the booth console shows it.

Read from the store's payment_attempts (never from a running settlement's state): the settlement driver says
when an attempt row of an exit changed (SettlementService.on_attempt), the rows of that exit are read again
off the loop, and the lane's view is refreshed. One exit per lane is kept (the car at it), so the memory is
bounded by the lanes.

States: not_asked (no attempt yet) · charging (the call is out) · no_answer (a charge without an answer:
timeout, unreachable — it may still have reached the platform) · pending (the platform answered and has not
decided: being polled) · fallback (the window ended while pending: reconciled in the background) · paid ·
refused (the platform's reason) · skipped (the provider does not charge this car, e.g. not signed up).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Iterable, Optional, Sequence

from lanectl.core.settlement import UNANSWERED, Attempt, Status

log = logging.getLogger("lanectl.console")


def provider_state(attempt: Optional[Attempt]) -> dict[str, Any]:
    """One provider's state from its latest attempt for the exit (None: not asked)."""
    if attempt is None:
        return {"state": "not_asked", "reason": ""}
    status, detail = attempt.status, attempt.detail
    if status == Status.CHARGING.value:
        state = "no_answer" if detail else "charging"  # a detail on a charging row says why no answer came
    elif status == Status.FALLBACK.value:
        state = "no_answer" if UNANSWERED in detail else "fallback"
    else:
        state = {Status.PENDING.value: "pending", Status.PAID.value: "paid", Status.FAILED.value: "refused",
                 Status.SKIPPED.value: "skipped"}.get(status, status)
    answer: dict[str, Any] = {"state": state, "reason": detail, "amount_fen": attempt.amount_fen}
    if state == "paid":
        answer.update(amount_fen=attempt.paid_fen, method=attempt.method)
    return answer


def provider_states(providers: Sequence[str], attempts: Iterable[Attempt]) -> list[dict[str, Any]]:
    """Per provider configured for the lane, in the order they are tried: the state of its latest attempt."""
    latest: dict[str, Attempt] = {}
    for a in attempts:
        if a.provider not in latest or a.id > latest[a.provider].id:
            latest[a.provider] = a
    named = [{"provider": p, **provider_state(latest.get(p))} for p in providers]
    # an attempt by a provider the lane no longer lists (config changed since) is still money: shown after
    return named + [{"provider": p, **provider_state(a)} for p, a in latest.items() if p not in providers]


class PaymentStates:
    """The attempts of the exit at each lane, read from the store when the settlement driver says they changed."""

    def __init__(self, read: Callable[[str], Awaitable[list[Attempt]]], changed: Callable[[str], None]) -> None:
        self._read = read
        self._changed = changed
        self._rows: dict[str, tuple[str, list[Attempt]]] = {}  # lane -> (record id, its attempts)
        self._dirty: set[tuple[str, str]] = set()
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def states(self, lane_id: str, record_id: str, providers: Sequence[str]) -> list[dict[str, Any]]:
        """For the lane's view (synchronous): what was read last; a record not read yet is read now."""
        held = self._rows.get(lane_id)
        if held is None or held[0] != record_id:
            self.attempt_changed(lane_id, record_id)
            return provider_states(providers, ())
        return provider_states(providers, held[1])

    def attempt_changed(self, lane_id: str, record_id: str) -> None:
        key = (lane_id, record_id)
        if key in self._tasks:  # a read is out: read once more after it (it may have missed this change)
            self._dirty.add(key)
            return
        self._tasks[key] = asyncio.get_running_loop().create_task(self._refresh(key), name=f"console-pay-{record_id}")

    async def _refresh(self, key: tuple[str, str]) -> None:
        lane_id, record_id = key
        try:
            while True:
                self._dirty.discard(key)
                try:
                    rows = await self._read(record_id)
                except Exception as exc:  # storage down: the card keeps what it showed; the next change reads
                    log.debug("console: payment attempts of %s not read: %s", record_id, exc)
                    return
                self._rows[lane_id] = (record_id, rows)
                if key not in self._dirty:
                    break
        finally:
            del self._tasks[key]
        self._changed(lane_id)

    def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
