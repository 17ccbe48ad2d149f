"""When the local store cannot write (issue 12): its health, and what a lane may still do without it.

`StorageHealth` is told about every write the store tries. It logs once when writes start failing (naming the
database and the error) and once when they succeed again, and tells its listeners (sd_notify STATUS, the
control socket's status) on each change — never once per refused write.

`act_without_storage` is the one rule a lane runner follows when the commit of a step failed. Write ahead, then
act: whatever needed its rows written first (an OPEN, a record, a payment, a settlement, an upload) is not done,
and the lane stays as it was before the event — the camera reads the car again, the operator acts, the
settlement service says again what it learned. Two kinds of step are still taken:

* steps that change only the lane's own state (inputs seen, a command acknowledged, the arm reached a limit):
  nothing was to be written but the state itself, which is stored whole with the next commit that succeeds;
* steps whose only writes are CloseBarrier audit rows (the car passed and cleared the loops; the arm stayed up
  too long over clear loops): an arm that must come down comes down. The barrier adapter still refuses CLOSE
  while its safety loop reads occupied. The audit rows are kept in memory and written when storage is back,
  and so are the audit's confirmations (AuditAction: the up / down limit agreed with a command): a lane must
  follow its arm to the up limit and back even while nothing can be written.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional, Sequence

from lanectl.core import effects as fx
from lanectl.core.events import Event, PaymentConfirmed, PaymentFallback
from lanectl.core.lane import LaneState

log = logging.getLogger("lanectl.store")

FAULT_DISPLAY = fx.Display("fault", (("cause", "storage"),))  # the board: 系统故障 (adapters/board_wording.py)
# Facts from the settlement service it will not tell again: a lane that could not take one keeps it and tries
# again until storage is back (a car that has paid is let out then).
RETRIED_EVENTS = (PaymentConfirmed, PaymentFallback)
# Events the lane handles on its own schedule or from its devices: refusing one is not worth a log line.
QUIET_EVENTS = ("Tick", "IoSnapshot", "CommandDone", "DeviceFault", "DeviceRecovered")


@dataclass(frozen=True)
class WithoutStorage:
    """What a lane does with a step whose commit failed."""

    state: LaneState  # the lane's state from now on (before or after the event)
    act: tuple[fx.Effect, ...]  # effects still carried out (none of them needs a row written first)
    # commands sent without their audit row, and limit confirmations of earlier commands: to be written later
    unwritten: tuple[fx.CloseBarrier | fx.AuditAction, ...]
    refused: bool  # the event was not handled; the lane is as it was before it
    retry: bool  # keep the event and hand it to the lane again later


def act_without_storage(before: LaneState, after: LaneState, effects: Sequence[fx.Effect], event: Event, *,
                        lane_id: str, announce: bool, repeat: bool = False) -> WithoutStorage:
    """The step from `before` to `after` with `effects` could not be committed. `announce`: the lane's board
    does not show the fault now. `repeat`: the event was refused before (kept and handed in
    again), so it is not logged again."""
    persistent = [e for e in effects if fx.is_persistent(e)]
    if all(isinstance(e, (fx.CloseBarrier, fx.AuditAction)) for e in persistent):
        kept = tuple(e for e in persistent if isinstance(e, (fx.CloseBarrier, fx.AuditAction)))
        return WithoutStorage(after, tuple(effects), kept, refused=False, retry=False)
    act: list[fx.Effect] = []
    if not repeat and type(event).__name__ not in QUIET_EVENTS:
        fields: list[tuple[str, Any]] = [("lane", lane_id), ("event", type(event).__name__)]
        plate = getattr(event, "plate", "")
        if plate:
            fields.append(("plate", plate))
        record = getattr(event, "record_id", "")
        if record:
            fields.append(("record", record))
        fields.append(("reason", "storage unavailable"))
        act.append(fx.Log("warning", "not handled: its records cannot be written now", tuple(fields)))
    if announce:
        act.append(FAULT_DISPLAY)
    return WithoutStorage(before, tuple(act), (), refused=True, retry=isinstance(event, RETRIED_EVENTS))


@dataclass(frozen=True)
class StorageFault:
    reason: str
    since: datetime
    refused: int  # writes refused since it began


class StorageHealth:
    """Whether the store can write. Thread-safe: the store's writer thread reports to it."""

    def __init__(self, path: str, *, now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.path = path
        self._now = now
        self._lock = threading.Lock()
        self._fault: Optional[StorageFault] = None
        self.queued = 0  # audit rows kept in memory for later (the store sets it)
        self.dropped = 0  # audit rows that did not fit in memory
        self.listeners: list[Callable[["StorageHealth"], None]] = []

    @property
    def fault(self) -> Optional[StorageFault]:
        return self._fault

    @property
    def ok(self) -> bool:
        return self._fault is None

    @property
    def reason(self) -> str:
        fault = self._fault
        return fault.reason if fault is not None else ""

    def failed(self, reason: str) -> None:
        with self._lock:
            fault = self._fault
            if fault is not None:
                self._fault = StorageFault(fault.reason, fault.since, fault.refused + 1)
                return
            self._fault = StorageFault(reason, self._now(), 1)
        log.error("storage failing: database %s cannot be written: %s — lanes refuse what must be written "
                  "first; probing for recovery", self.path, reason)
        self._changed()

    def succeeded(self) -> None:
        with self._lock:
            fault = self._fault
            if fault is None:
                return
            self._fault = None
        down_s = (self._now() - fault.since).total_seconds()
        log.info("storage recovered: database %s writable again after %.0f s (%d write(s) refused)", self.path,
                 down_s, fault.refused)
        self._changed()

    def summary(self) -> str:
        """One line for sd_notify STATUS and `lanectl status`."""
        fault = self._fault
        if fault is None:
            return "storage ok"
        return f"STORAGE FAULT since {fault.since.isoformat(timespec='seconds')}: {fault.reason}"

    def as_dict(self) -> dict[str, Any]:
        fault = self._fault
        return {"ok": fault is None, "path": self.path, "reason": fault.reason if fault else "",
                "since": fault.since.isoformat() if fault else "", "refused": fault.refused if fault else 0,
                "queued_audit_rows": self.queued, "dropped_audit_rows": self.dropped}

    def _changed(self) -> None:
        for listener in list(self.listeners):
            try:
                listener(self)
            except Exception:  # a listener must never break the store's writer
                log.exception("storage health listener failed")
