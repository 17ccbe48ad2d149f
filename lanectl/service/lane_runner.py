"""One task per lane: events in, core.lane.handle, persistent effects committed, then the wire.

The runner is the only owner of its lane's state (ARCHITECTURE rule 2): adapters, the control socket and
callbacks only put events on its queue. A caller that needs an answer (an operator's release, a platform's
price query or plate-less entry) sends a request (core/events.py REQUESTS) with `request`: the reply slot stays
here, the lane answers with a typed result effect of the same request id, and the runner hands it over.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Optional

from lanectl.adapters.board_wording import status_line
from lanectl.core import effects as fx
from lanectl.core.events import (BOOTH_ACTIONS, REQUESTS, CommandDone, DeviceFault, DeviceRecovered, Event,
                                 OperatorOpen, PlateRead, QuoteRequest, Request, Tick)
from lanectl.core.lane import LaneContext, LaneRules, LaneState, Visit, handle, operator_name, restored
from lanectl.core.plates import classify_plate, near_plates
from lanectl.core.policy import Policy
from lanectl.service.claims import ClaimedPayment, ClaimLost
from lanectl.service.ports import (NO_METRICS, Barrier, BarrierError, BarrierUnsafe, Clock, Display, LaneStore,
                                   Metrics, StorageUnavailable)
from lanectl.service.storage import FAULT_DISPLAY, act_without_storage

log = logging.getLogger("lanectl.lane")
AFTER_THE_WIRE_S = 1e-6  # see step: the step's own work waits for the loop's next turn, after its I/O
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class RequestExpired(TimeoutError):
    """A request reached its deadline before the lane took it: it was not handled and will not be."""


class LaneDidNotAnswer(Exception):
    """An operator's request the lane did not decide (`code`, `message` for a person, HTTP `status`): its deadline
    passed before the lane took it (408, nothing done), or the lane took it and did not finish in time (503)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


NOT_HANDLED = "not handled: its records cannot be written now"


def not_handled(event: Request, message: str = NOT_HANDLED) -> fx.Result:
    """The answer to a request the lane could not carry out (its records could not be written): nothing done."""
    if isinstance(event, OperatorOpen):
        return fx.OperatorResult(event.request_id, "not_handled", message, operator=operator_name(event))
    if isinstance(event, QuoteRequest):
        return fx.QuoteResult(event.request_id, "not_handled")
    if isinstance(event, BOOTH_ACTIONS):
        return fx.BoothResult(event.request_id, "not_handled", message, operator=event.operator)
    return fx.PlatformEntryResult(event.request_id, False, message)


def _tell(claimed: ClaimedPayment, outcome: bool | BaseException) -> None:
    """Answer a claim's driver, unless it stopped waiting (cancelled: the daemon stops, a callback's client left);
    what was committed stands either way."""
    fut = claimed.outcome
    if fut.done():
        return
    if isinstance(outcome, bool):
        fut.set_result(outcome)
    elif isinstance(outcome, Exception):
        fut.set_exception(outcome)
    else:
        fut.cancel()


@dataclass
class LaneStatus:
    """What `lanectl status` and the demo show of a lane."""

    lane_id: str
    direction: str
    phase: str = "idle"
    barrier_fault: str = ""
    plate_reader_fault: str = ""
    scanner_fault: str = ""  # the booth's payment-code scanner (the lane still works without it)
    last_display: str = ""
    waiting: Optional[dict[str, Any]] = None
    events: int = 0
    # the last operator release (record, who, cash figures) and the releases since the daemon started: how many,
    # how many short of what the car owed (and by how much in all), how many over
    last_release: Optional[dict[str, Any]] = None
    releases: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("count", "short", "short_fen", "over", "over_fen"), 0))
    unreadable_plates: int = 0  # readings that were no plate (sent to the booth, never to the rules)
    last_plate: str = ""  # the last plate the lane read (site bus telemetry)
    # the car the lane handles now, as its last record says (plate, colour, class, entry, fee and breakdown)
    car: Optional[dict[str, Any]] = None
    # an entry lane's car turned away and held for the booth to admit or refuse (record, plate as read, reason)
    held: Optional[dict[str, Any]] = None


@dataclass
class LaneRunner:
    lane_id: str
    direction: str
    policy: Policy
    store: LaneStore
    clock: Clock
    barrier: Optional[Barrier] = None
    display: Optional[Display] = None
    rules: LaneRules = LaneRules()
    on_effects: Optional[Callable[[str, list[fx.Effect]], None]] = None  # demo / tests observe decisions
    after_commit: Optional[Callable[[], None]] = None  # e.g. wake the outbox relay
    # exit lanes with payment providers: settlement effects go here once committed (service/settlement.py)
    settlement: Optional[Callable[[str, list[fx.Effect]], None]] = None
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    state: LaneState = field(default_factory=LaneState)
    status: LaneStatus = field(init=False)
    storage_retry_s: float = 1.0  # after a step refused for want of storage, expired timers wait this long
    metrics: Metrics = NO_METRICS  # decisions, plate-to-command latency, barrier commands, device faults
    _commands: Optional[asyncio.Lock] = field(default=None, init=False)
    _tasks: set = field(default_factory=set, init=False)
    started: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    # requests whose caller waits for the lane's answer (request_id -> (future of the result, loop deadline))
    _requests: dict = field(default_factory=dict, init=False)
    # an operator's OPEN waiting for the barrier's answer (action_id -> future of (ok, error))
    _outcomes: dict = field(default_factory=dict, init=False)
    # requests whose requester gave up before the lane took them: dropped when they come out of the queue
    _abandoned: set = field(default_factory=set, init=False)
    _taken: set = field(default_factory=set, init=False)  # requests the lane has started to handle
    _queued: set = field(default_factory=set, init=False)  # requests put on the queue and not yet taken out
    # while storage refuses this lane's commits: since when (monotonic; None when fine), and events kept for later
    _refusing_since: Optional[float] = field(default=None, init=False)
    _retry_at: float = field(default=0.0, init=False)
    _kept: list = field(default_factory=list, init=False)
    _replayed: Optional[Event] = field(default=None, init=False)  # the kept event handed in again last
    _faulted_at: dict = field(default_factory=dict, init=False)  # device -> monotonic time its fault began
    on_status: Optional[Callable[[str], None]] = None  # told (lane id) after each step: the console's live view

    def __post_init__(self) -> None:
        self.status = LaneStatus(self.lane_id, self.direction)

    def emit(self, event: Event) -> None:
        """Thread-unsafe, loop-safe: adapters and the control socket hand events over here."""
        self.queue.put_nowait(event)

    async def request(self, event: Request, timeout: float = 5.0, deadline: Optional[float] = None) -> fx.Result:
        """Enqueue an operator's (or a platform's) request and wait for the lane's answer: its result effect
        (fx.OperatorResult, fx.QuoteResult, fx.PlatformEntryResult), once the step is committed.

        ``deadline`` (loop time; default: ``timeout`` from now) bounds both the handing over and the wait. The
        lane takes the event only while its requester still waits for it: :class:`RequestExpired` means the lane
        never handled it (and never will); a plain TimeoutError means it took it but did not finish in time."""
        loop = asyncio.get_running_loop()
        deadline = min(deadline, loop.time() + timeout) if deadline is not None else loop.time() + timeout
        rid = event.request_id
        if loop.time() >= deadline:
            raise RequestExpired(f"lane {self.lane_id}: the request's deadline passed before it was handed over")
        fut: asyncio.Future = loop.create_future()
        self._requests[rid] = (fut, deadline)
        self._queued.add(rid)
        self.emit(event)
        try:
            return await asyncio.wait_for(fut, deadline - loop.time())
        except TimeoutError:
            if rid in self._taken:
                raise
            raise RequestExpired(f"lane {self.lane_id}: the lane did not take the request before its deadline; "
                                 "it will not be handled") from None
        finally:
            self._requests.pop(rid, None)
            self._taken.discard(rid)
            if rid in self._queued:  # timed out or cancelled while still queued: it must never be handled now
                self._queued.discard(rid)
                self._abandoned.add(rid)

    def _admit(self, event: Event) -> bool:
        """Right before the lane handles a request: only while its requester waits and its deadline holds."""
        if not isinstance(event, REQUESTS):
            return True
        rid = event.request_id
        self._queued.discard(rid)
        if rid in self._abandoned:
            self._abandoned.discard(rid)
            log.warning("lane %s: %s dropped: its requester gave up before the lane could take it", self.lane_id,
                        type(event).__name__)
            return False
        waiting = self._requests.get(rid)
        if waiting is None:
            return True  # emitted directly (not through request()): nobody waits, nothing to expire
        fut, deadline = waiting
        if fut.done() or asyncio.get_running_loop().time() >= deadline:
            if not fut.done():
                fut.set_exception(RequestExpired(f"lane {self.lane_id}: the request's deadline passed while it "
                                                 "waited in the lane's queue; it was not handled"))
            log.warning("lane %s: %s dropped: its deadline passed while it waited in the queue", self.lane_id,
                        type(event).__name__)
            return False
        self._taken.add(rid)
        return True

    async def ask(self, event: Request, deadline: Optional[float] = None) -> fx.Result:
        """`request` for an operator: the two ways of not answering as one error a caller can word."""
        try:
            return await self.request(event, deadline=deadline)
        except RequestExpired:
            raise LaneDidNotAnswer("deadline_passed", f"lane {self.lane_id}: the request's deadline passed before "
                                   "the lane took it; nothing was done", 408) from None
        except asyncio.TimeoutError:
            raise LaneDidNotAnswer("lane_busy", f"lane {self.lane_id} did not answer in time", 503) from None

    async def delivered(self, action_id: str, timeout: float) -> tuple[bool, str]:
        """Whether the barrier took an OPEN the lane decided for an operator: (delivered, error), waiting at most
        `timeout` s."""
        try:
            return await self.outcome(action_id, timeout)
        except asyncio.TimeoutError:
            return False, f"no answer from the barrier within {timeout:g} s"

    async def outcome(self, action_id: str, timeout: float) -> tuple[bool, str]:
        """What the barrier answered to an operator's OPEN (see step): (delivered, error). TimeoutError if the
        command is still on its way after `timeout` s."""
        fut = self._outcomes.get(action_id)
        if fut is None:
            return False, "no such command waiting"
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        finally:
            # asked once: a command still on its way after the timeout answers nobody (no entry left behind)
            self._outcomes.pop(action_id, None)

    async def restore(self) -> None:
        saved = await self.store.load_lane_state(self.lane_id)
        if saved is not None:
            self.state = restored(LaneState.from_dict(saved))
            log.info("lane %s: restored phase=%s", self.lane_id, self.state.phase.value)
        self._refresh_status()

    async def run(self) -> None:
        self._commands = asyncio.Lock()
        await self.restore()
        self.started.set()
        try:
            while True:
                event = await self._next_event()
                if self._admit(event):
                    await self.step(event)
        finally:
            for t in list(self._tasks):
                t.cancel()
            # Let in-flight commands settle their audit rows before the store closes.
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _next_event(self) -> Event:
        deadline = self.state.next_deadline()
        wait = None if deadline is None else (deadline - self.clock.now()).total_seconds()
        if self._refusing_since is not None:
            # storage refused the last step: timers that expired (and events kept for later) wait a little, or an
            # expired timer would be retried in a busy loop
            retry = self._retry_at - self.clock.monotonic()
            if wait is not None:
                wait = max(wait, retry)
            if self._kept:
                wait = retry if wait is None else min(wait, retry)
        if wait is None:
            return await self.queue.get()
        if wait > 0:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that arrives as the event
            # does, and the lane task then outlives the daemon's stop until its next timer
            try:
                async with asyncio.timeout(wait):
                    return await self.queue.get()
            except TimeoutError:
                pass
        if self._kept and self.clock.monotonic() >= self._retry_at:
            self._replayed = self._kept.pop(0)
            return self._replayed
        return Tick()

    async def step(self, event: Event) -> list[fx.Effect]:
        """Handle one event: decide, commit (write ahead), then act."""
        claimed = event if isinstance(event, ClaimedPayment) else None
        if claimed is not None:  # a payment confirmed in this step's own transaction (service/claims.py)
            event = claimed.event
        now = self.clock.now()
        read_at = self.clock.monotonic() if isinstance(event, PlateRead) else None  # plate-to-command latency
        # the store's projections, live and read-only: no copy per step (a Tick included)
        ctx = LaneContext(self.lane_id, self.direction, self.policy, self.rules, self.store.inside_view(),
                          self.store.balances_view(), settle=self.settlement is not None)
        new_state, effects = handle(self.state, event, now, ctx)
        committed = True
        if claimed is not None or new_state != self.state or any(fx.is_persistent(e) for e in effects):
            try:
                # A SIGTERM arriving mid-write still finishes the transaction it started: a coroutine is shielded;
                # a store that answers with a future (SqliteStore) finishes it whatever its waiter does, and is
                # awaited as it is (one loop turn less between the COMMIT and the OPEN).
                commit = self.store.commit_lane(self.lane_id, new_state.to_dict(), effects, now) if claimed is None \
                    else self.store.commit_lane(self.lane_id, new_state.to_dict(), effects, now, claim=claimed.claim)
                await (commit if isinstance(commit, asyncio.Future) else asyncio.shield(commit))
            except ClaimLost:
                assert claimed is not None  # confirmed before, by a confirmation of its own: this step never was
                _tell(claimed, False)
                return []
            except StorageUnavailable as exc:
                committed = False
                # a claim is not kept for later: its driver tries again (its compare-and-set must be in the step)
                new_state, effects = self._without_storage(event, new_state, effects, now, ctx,
                                                           keep=claimed is None)
                if claimed is not None:
                    _tell(claimed, exc)
            except BaseException as exc:  # the lane stops (or a bug): the driver waiting on its claim is told
                if claimed is not None:
                    _tell(claimed, exc)
                raise
            else:
                self._refusing_since = None
        self.state = new_state
        self.status.events += 1
        if isinstance(event, PlateRead) and classify_plate(event.plate, self.rules.special_prefixes) == "unreadable":
            self.status.unreadable_plates += 1
        self._track_faults(event)
        for e in effects:
            if isinstance(e, fx.OperatorResult) and e.outcome == "released":
                assert isinstance(event, OperatorOpen)
                self._note_release(event, e, now)
                if e.request_id in self._requests:  # its operator waits: told whether the barrier took it
                    self._outcomes[e.action_id] = asyncio.get_running_loop().create_future()
            elif isinstance(e, fx.BoothResult) and e.action_id and e.request_id in self._requests:
                self._outcomes[e.action_id] = asyncio.get_running_loop().create_future()  # an admit's OPEN
        commands = [e for e in effects if isinstance(e, (fx.OpenBarrier, fx.CloseBarrier))]
        for effect in commands:
            self._act(effect, read_at)
        if commands:
            # The command goes out before the rest of the step (the decision's log line, the board, the status and
            # its listeners): its task runs up to the driver's first wait (the frame handed to the transport); a
            # serial port's transport writes it on the loop's next turn, once the port is writable, and the rest of
            # the step waits for that turn — a timer, which the loop runs after the I/O of its turn.
            try:
                await asyncio.sleep(0)
                await asyncio.sleep(AFTER_THE_WIRE_S)
            except asyncio.CancelledError:  # the daemon stops: the step still ends as it would have
                self._finish_step(event, effects, committed, read_at, claimed)
                raise
        self._finish_step(event, effects, committed, read_at, claimed)
        return effects

    def _finish_step(self, event: Event, effects: list[fx.Effect], committed: bool, read_at: Optional[float],
                     claimed: Optional[ClaimedPayment] = None) -> None:
        """After the step's commands went to the barrier driver: its other effects, the status, the listeners and
        the answer to a request (and to the driver whose claimed payment the step committed)."""
        for effect in effects:
            if not isinstance(effect, (fx.OpenBarrier, fx.CloseBarrier)):
                self._act(effect, read_at)
            if isinstance(effect, fx.NewRecord):
                self.metrics.decision(self.lane_id, effect.kind, effect.status)
        if claimed is not None and committed:  # told after the OPEN went to the driver: it runs first
            _tell(claimed, True)
        self._refresh_status(effects)
        if self.on_effects is not None and effects:
            self.on_effects(self.lane_id, effects)
        if committed and self.after_commit is not None and any(isinstance(e, fx.Publish) for e in effects):
            self.after_commit()
        if self.settlement is not None and any(isinstance(e, (fx.StartSettlement, fx.StopSettlement, fx.ChargeByCode))
                                               for e in effects):
            self.settlement(self.lane_id, effects)
        if isinstance(event, REQUESTS):
            self._answer(event, effects)

    def _answer(self, event: Request, effects: list[fx.Effect]) -> None:
        """Hand the lane's answer to the caller waiting on this request (if it still waits)."""
        fut, _ = self._requests.get(event.request_id, (None, None))
        if fut is None or fut.done():
            return
        result = next((e for e in effects if isinstance(e, fx.RESULTS) and e.request_id == event.request_id), None)
        # no answer from the lane: the step was refused for want of storage, so nothing was done
        fut.set_result(result if result is not None else not_handled(event))

    def _without_storage(self, event: Event, new_state: LaneState, effects: list[fx.Effect], now: datetime,
                         ctx: LaneContext, keep: bool = True) -> tuple[LaneState, list[fx.Effect]]:
        """The commit failed: do only what storage.act_without_storage allows (the lane's state as before the
        event, or an arm that must come down brought down with its audit row kept for later)."""
        # the board shows the fault unless it shows it already (not once per refused event)
        announce = self.status.last_display != status_line(FAULT_DISPLAY)
        plan = act_without_storage(self.state, new_state, effects, event, lane_id=self.lane_id, announce=announce,
                                   repeat=event is self._replayed)
        if plan.refused and self.state.held is not None:
            # The cycle's end would handle a plate held during it, which needs its record: without storage the
            # held plate is forgotten (the camera reads the car again) so the arm's own cycle still ends. Forgotten
            # whole: its next read is not taken for a repeat of this one.
            held = self.state.held
            forgot = replace(self.state, held=None, held_at=None)
            if forgot.last_plate == held.plate:
                forgot = replace(forgot, last_plate="", last_plate_at=None)
            alt_state, alt_effects = handle(forgot, event, now, ctx)
            alt = act_without_storage(self.state, alt_state, alt_effects, event, lane_id=self.lane_id,
                                      announce=announce, repeat=event is self._replayed)
            if not alt.refused:
                log.warning("lane %s: plate %s read during the last cycle forgotten: its record cannot be written "
                            "now", self.lane_id, held.plate)
                plan = alt
        for unwritten in plan.unwritten:
            self.store.defer_action(self.lane_id, unwritten, now)
        if plan.refused:
            if self._refusing_since is None:
                self._refusing_since = self.clock.monotonic()
            self._retry_at = self.clock.monotonic() + self.storage_retry_s
            if plan.retry and keep:
                self._kept.append(event)
        return plan.state, list(plan.act)

    def _act(self, effect: fx.Effect, read_at: Optional[float] = None) -> None:
        if isinstance(effect, (fx.OpenBarrier, fx.CloseBarrier)):
            self._spawn(self._command(effect, read_at))
        elif isinstance(effect, fx.Display):
            self.status.last_display = status_line(effect)
            if self.display is not None:
                self._spawn(self._show(effect))
        elif isinstance(effect, fx.Log):
            level = _LEVELS.get(effect.level, logging.WARNING)
            if not log.isEnabledFor(level):  # nothing formatted for a line nobody will see
                return
            fields = dict(effect.fields)
            text = " ".join(f"{k}={v}" for k, v in fields.items() if v not in ("", None))
            log.log(level, "%s %s", effect.message, text,
                    extra={"decision": {"lane": self.lane_id, **fields}})  # as JSON keys with --log-format json

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _command(self, effect: fx.OpenBarrier | fx.CloseBarrier, read_at: Optional[float] = None) -> None:
        """``read_at``: when the plate that caused this command was read (monotonic), for the latency metric."""
        assert self._commands is not None
        command = "open" if isinstance(effect, fx.OpenBarrier) else "close"
        async with self._commands:  # one lane's commands reach the wire in the order they were decided
            ok, error, result = True, "", "ok"
            if self.barrier is None:
                ok, error, result = False, "no barrier device configured", "no_device"
            else:
                try:
                    if isinstance(effect, fx.OpenBarrier):
                        await self.barrier.open()
                    else:
                        await self.barrier.close()
                except BarrierError as exc:
                    ok, error = False, f"{type(exc).__name__}: {exc}"
                    result = "refused" if isinstance(exc, BarrierUnsafe) else "failed"
            self.metrics.barrier_command(self.lane_id, command, result)
            if read_at is not None and ok:
                self.metrics.plate_to_command(self.lane_id, max(0.0, self.clock.monotonic() - read_at))
            try:
                await asyncio.shield(self.store.mark_action(effect.action_id, ok, error, self.clock.now()))
            except StorageUnavailable as exc:  # the store keeps it for later; a store that cannot: said, not fatal
                log.warning("lane %s: outcome of %s not written: %s", self.lane_id, effect.action_id, exc.reason)
            self.emit(CommandDone(effect.action_id, ok, error))
            waiting = self._outcomes.get(effect.action_id)
            if waiting is not None and not waiting.done():
                waiting.set_result((ok, error))

    async def _show(self, effect: fx.Display) -> None:
        assert self.display is not None
        try:
            await self.display.show(effect)
        except Exception as exc:  # a broken LED board must never stop a lane
            log.warning("lane %s: display failed: %s", self.lane_id, exc)

    def _track_faults(self, event: Event) -> None:
        if isinstance(event, DeviceFault) and event.device not in self._faulted_at:
            self._faulted_at[event.device] = self.clock.monotonic()
            self.metrics.device_fault(self.lane_id, event.device)
        elif isinstance(event, DeviceRecovered) and event.device in self._faulted_at:
            began = self._faulted_at.pop(event.device)
            self.metrics.device_recovered(self.lane_id, event.device, max(0.0, self.clock.monotonic() - began))
        # the barrier's fault is the lane's own state (core); the serial devices' are tracked here
        if isinstance(event, (DeviceFault, DeviceRecovered)) and event.device in ("plate_reader", "scanner"):
            reason = event.reason if isinstance(event, DeviceFault) else ""
            setattr(self.status, f"{event.device}_fault", reason)

    def _note_release(self, event: OperatorOpen, released: fx.OperatorResult, now: datetime) -> None:
        """`status` shows the last operator release and counts them, with what their records say of the money."""
        figures = dict(released.money)
        self.status.last_release = {"record_id": released.record_id, "at": now.isoformat(),
                                    "operator": released.operator, "operator_uid": event.operator_uid,
                                    "reason": event.reason.strip(), **figures}
        counts = self.status.releases
        counts["count"] += 1
        for kind in ("short", "over"):
            if figures.get(f"{kind}_fen"):
                counts[kind] += 1
                counts[f"{kind}_fen"] += figures[f"{kind}_fen"]

    def _entry_plate(self, e: fx.NewRecord) -> str:
        """The plate the exit was matched to, when it is not the plate read (a fuzzy match: the booth sees both).
        Looked up only then: an exact match needs no walk over the cars inside."""
        if not e.entry_record_id or "match:exact" in e.detail:
            return e.plate if e.entry_record_id else ""
        return next((plate for plate, car in self.store.inside_view().items()
                     if car.record_id == e.entry_record_id), "")
    def _booth_fields(self, v: Visit, phase: str) -> dict[str, Any]:
        """What the booth needs to correct a misread plate: the reading, and — while a car waits with no stay
        found for it — the cars inside it may be (plate, entry time, entry lane), for the page to offer."""
        fields: dict[str, Any] = {"read_plate": v.read_plate, "candidates": []}
        if phase == "awaiting_payment" and not v.entry_record_id:
            inside = self.store.inside_view()
            fields["candidates"] = [{"plate": p, "entered_at": inside[p].entered_at.isoformat(),
                                     "lane_id": inside[p].lane_id}
                                    for p in near_plates(v.read_plate or v.plate, inside.keys())]
        return fields

    def _refresh_status(self, effects: list[fx.Effect] = ()) -> None:  # type: ignore[assignment]
        s = self.state
        v = s.visit
        if v is None:
            self.status.car = None
        else:
            car = self.status.car if self.status.car and self.status.car["record_id"] == v.record_id else {
                "record_id": v.record_id, "entered_at": "", "at": "", "total_fen": v.due_fen, "detail": []}
            for e in effects:
                if isinstance(e, fx.NewRecord) and e.record_id == v.record_id:
                    car = {**car, "entered_at": e.entered_at, "at": e.at, "total_fen": e.total_fen,
                           "detail": list(e.detail), "image": e.image, "entry_record_id": e.entry_record_id,
                           "entry_plate": self._entry_plate(e)}
            self.status.car = {**car, "plate": v.plate, "color": v.color, "vehicle_class": v.vehicle_class,
                               "due_fen": v.due_fen, "paid_fen": v.paid_fen, "reason": v.reason,
                               "operator": v.operator, **self._booth_fields(v, s.phase.value)}
        h = s.booth  # an entry car held for the booth (the lane itself is idle)
        self.status.held = None if h is None else {"record_id": h.record_id, "plate": h.plate, "color": h.color,
                                                   "reason": h.reason, "vehicle_class": h.vehicle_class,
                                                   "image": h.image}
        self.status.phase = s.phase.value
        self.status.barrier_fault = s.barrier_fault
        self.status.last_plate = s.last_plate
        v = s.visit
        self.status.waiting = ({"plate": v.plate, "record_id": v.record_id, "due_fen": v.due_fen}
                               if v is not None and s.phase.value == "awaiting_payment" else None)
        if self.on_status is not None:
            self.on_status(self.lane_id)
