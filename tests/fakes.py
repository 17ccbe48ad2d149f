"""Shared in-memory twins of the ports, for unit tests (cosmicpython style: fakes, not mocks).

FakeClock        Clock port; time moves only when the test says so — tests never sleep for real.
MemoryOutboxQueue  OutboxQueue port with the store's head-of-line `due()` contract.
MemoryLaneStore  LaneStore port (cars inside kept from what it committed); storage can be taken down.
MemorySettlementStore  SettlementStore port with the SQLite store's compare-and-set rules.
ScriptedPublisher  Publisher port answering from a script, recording what it was sent and when.
EmitRecorder     an Emit callable that records events and lets a test await one.
LaneEvents       stands in for the lane runners behind the settlement service: collects (lane, event).
MemoryDaemonStore, FakeLaneDevices, FakeListener, FakeControlServer, FakeSession, FakeNotifier
                 the daemon's adapters (lanectl/app.py Adapters), for assembling the whole daemon from fakes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Optional, Sequence, Union
from zoneinfo import ZoneInfo

from lanectl.core import effects as fx
from lanectl.service.outbox import Outcome, OutboxItem
from lanectl.service.settlement import ATTEMPT_OPEN, ATTEMPT_PAYABLE, Attempt

SHANGHAI = ZoneInfo("Asia/Shanghai")


class FakeClock:
    """A Clock whose time only moves in advance() / run_until().

    sleep() parks the caller until the test moves time past its deadline; sleepers wake in deadline order,
    and after each wake-up the loop is allowed to settle, so code that sleeps again in a loop sees every
    intermediate time exactly as it would in real life.
    """

    def __init__(self, start: Optional[datetime] = None, *, monotonic_start: float = 1000.0) -> None:
        self._wall0 = start or datetime(2024, 3, 1, 8, 0, 0, tzinfo=SHANGHAI)
        if self._wall0.tzinfo is None:
            raise ValueError("FakeClock needs an aware start time")
        self._mono0 = self._mono = monotonic_start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.sleeps: list[float] = []  # every duration asked of sleep(), in call order

    # -- Clock port ----------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._mono - self._mono0)

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # a positive sleep always moves time, even when `seconds` is below the float resolution of _mono
        deadline = max(self._mono + seconds, math.nextafter(self._mono, math.inf))
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut  # cancelling the sleeper cancels fut; advance() skips it

    # -- test controls -------------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self._mono - self._mono0

    @property
    def next_deadline(self) -> Optional[float]:
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    @property
    def sleeping(self) -> int:
        """How many sleep() calls are parked right now."""
        self._drop_cancelled()
        return sum(1 for *_, f in self._sleepers if not f.done())

    async def settle(self) -> None:
        """Let every task that can run, run, until all of them wait (on this clock, a queue, an event...)."""
        loop = asyncio.get_running_loop()
        quiet = 0
        for _ in range(100_000):
            await asyncio.sleep(0)
            ready = getattr(loop, "_ready", None)  # CPython's run queue; without it, fall back to many yields
            quiet = quiet + 1 if not ready else 0
            if quiet >= 3:
                return
        raise AssertionError("the event loop never went quiet (a task spins without waiting)")

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking sleepers in deadline order."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        target = self._mono + seconds
        await self.settle()
        while (deadline := self.next_deadline) is not None and deadline <= target:
            self._wake_at(deadline)
            await self.settle()
        self._mono = target
        await self.settle()

    async def run_until(self, predicate: Callable[[], bool], *, limit_s: float = 86_400.0) -> float:
        """Jump from deadline to deadline until predicate() holds; return the fake seconds that took."""
        start = self._mono
        await self.settle()
        while not predicate():
            deadline = self.next_deadline
            if deadline is None:
                raise AssertionError("condition not met and nothing is sleeping: it would never be met")
            if deadline - start > limit_s:
                raise AssertionError(f"condition not met within {limit_s} fake seconds")
            self._wake_at(deadline)
            await self.settle()
        return self._mono - start

    def _wake_at(self, deadline: float) -> None:
        self._mono = max(self._mono, deadline)
        while self._sleepers and self._sleepers[0][0] <= deadline:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)


@dataclass
class _Row:
    item: OutboxItem
    state: str = "pending"  # pending | done | dead
    next_at: Optional[datetime] = None  # None: due at once
    error: str = ""
    finished_at: Optional[datetime] = None


class MemoryOutboxQueue:
    """OutboxQueue in a dict. Same contract as the SQLite store: ids increase, (destination, key) is
    unique, due() is head-of-line per destination."""

    def __init__(self) -> None:
        self._rows: dict[int, _Row] = {}
        self._ids = itertools.count(1)
        self.done_order: list[int] = []  # ids in the order mark_done was called
        self.fail_due: Optional[Exception] = None  # set to make due() raise (a broken disk, a locked db)

    def add(self, destination: str, kind: str, key: str, payload: Optional[dict] = None, *,
            created_at: Optional[datetime] = None, attempts: int = 0,
            next_at: Optional[datetime] = None) -> int:
        if any(r.item.destination == destination and r.item.key == key for r in self._rows.values()):
            raise ValueError(f"duplicate outbox key {destination}/{key}")
        item_id = next(self._ids)
        item = OutboxItem(item_id, destination, kind, key, dict(payload or {}), attempts,
                          created_at or datetime(2024, 3, 1, tzinfo=SHANGHAI))
        self._rows[item_id] = _Row(item, next_at=next_at)
        return item_id

    # -- OutboxQueue port ----------------------------------------------------------------------------------
    async def due(self, destination: str, now: datetime, limit: int) -> list[OutboxItem]:
        if self.fail_due is not None:
            raise self.fail_due
        out: list[OutboxItem] = []
        for row in self._pending(destination):
            if len(out) >= limit or (row.next_at is not None and row.next_at > now):
                break
            out.append(row.item)
        return out

    async def mark_done(self, item_id: int, now: datetime) -> None:
        row = self._rows[item_id]
        row.state, row.finished_at = "done", now
        self.done_order.append(item_id)

    async def mark_retry(self, item_id: int, attempts: int, next_at: datetime, error: str) -> None:
        row = self._rows[item_id]
        row.item = replace(row.item, attempts=attempts)
        row.next_at, row.error = next_at, error

    async def mark_dead(self, item_id: int, error: str, now: datetime) -> None:
        row = self._rows[item_id]
        row.state, row.error, row.finished_at = "dead", error, now

    # -- inspection ----------------------------------------------------------------------------------------
    def state(self, item_id: int) -> str:
        return self._rows[item_id].state

    def row(self, item_id: int) -> _Row:
        return self._rows[item_id]

    def pending_count(self, destination: Optional[str] = None) -> int:
        return sum(1 for _ in self._pending(destination))

    def _pending(self, destination: Optional[str]) -> Iterable[_Row]:
        for item_id in sorted(self._rows):
            row = self._rows[item_id]
            if row.state == "pending" and destination in (None, row.item.destination):
                yield row


Script = Union[Callable[[OutboxItem], Outcome], Iterable[Union[Outcome, Exception]]]


class ScriptedPublisher:
    """Publisher answering from a script: a function of the item, or a sequence of outcomes / exceptions to
    raise (then DONE for ever). Records (monotonic time, item) of every call."""

    def __init__(self, clock: FakeClock, script: Optional[Script] = None) -> None:
        self._clock = clock
        self._fn = script if callable(script) else None
        self._steps = iter(()) if callable(script) or script is None else iter(script)
        self.calls: list[tuple[float, OutboxItem]] = []

    @property
    def keys(self) -> list[str]:
        return [item.key for _, item in self.calls]

    async def publish(self, item: OutboxItem) -> Outcome:
        self.calls.append((self._clock.monotonic(), item))
        if self._fn is not None:
            return self._fn(item)
        step = next(self._steps, Outcome.done())
        if isinstance(step, Exception):
            raise step
        return step


class EmitRecorder:
    """An Emit port: records events; `await wait_for(...)` returns when a matching event has arrived."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self._changed = asyncio.Event()

    def __call__(self, event: object) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, predicate: Callable[[list], bool], timeout: float = 5.0) -> list:
        """Wait (real time: for integration tests) until predicate(events) holds; return the events."""
        async def _wait() -> None:
            while not predicate(self.events):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.events


class LaneEvents:
    """Stands in for the lane runners: collects what the settlement service emits, and lets a test await it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

    def emit(self, lane_id: str, event: Any) -> None:
        self.events.append((lane_id, event))
        self.changed.set()

    def of(self, kind: type) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type, n: int = 1, timeout: float = 4.0) -> list[Any]:
        async def _wait() -> list[Any]:
            while len(self.of(kind)) < n:
                self.changed.clear()
                await self.changed.wait()
            return self.of(kind)
        return await asyncio.wait_for(_wait(), timeout)


class FakeBarrier:
    """Barrier port twin: records the commands it was sent; like the Modbus adapter it refuses CLOSE (without
    sending it) while `safety` says a car is under the arm."""

    def __init__(self) -> None:
        self.commands: list[str] = []  # "open" / "close", as sent
        self.refused: list[str] = []  # commands refused without sending
        self.safety = False

    async def run(self, emit: Any) -> None:
        await asyncio.Event().wait()

    async def open(self) -> None:
        self.commands.append("open")

    async def close(self) -> None:
        from lanectl.service.ports import BarrierUnsafe
        if self.safety:
            self.refused.append("close")
            raise BarrierUnsafe("safety loop occupied")
        self.commands.append("close")


class FakeDisplay:
    """Display port twin: keeps every message shown."""

    def __init__(self) -> None:
        self.shown: list[Any] = []

    async def show(self, message: Any) -> None:
        self.shown.append(message)

    def keys(self) -> list[str]:
        return [m.key for m in self.shown]


class MemoryLaneStore:
    """LaneStore port twin whose storage can be taken down: while `down`, commits raise StorageUnavailable
    (nothing kept) and mark_action keeps its update aside, as the SQLite store does. Like the SQLite store it
    keeps the cars inside from what it committed (core/inside.py) and hands the lane a read-only view."""

    def __init__(self, inside: Optional[dict[str, Any]] = None) -> None:
        from lanectl.core.inside import InsideCars
        self.down = False
        self.commits: list[tuple[dict, list]] = []  # (state, persistent effects) committed
        self.deferred: list[Any] = []  # audit rows kept for later: (lane, CloseBarrier)
        self.marks: list[tuple[str, bool]] = []
        self.refused = 0
        self._inside = InsideCars(inside)

    def inside(self) -> dict:
        return self._inside.snapshot()

    def inside_view(self) -> Any:
        return self._inside.view

    def enter(self, plate: str, car: Any) -> None:
        """A car inside by an entry committed earlier: learnt as the store learns it, from the record's effect."""
        from lanectl.core import effects as fx
        self._inside.apply([fx.NewRecord(car.record_id, car.lane_id, "entry", plate, car.color,
                                         car.entered_at.isoformat(), "inside", reason=car.reason, image=car.image)])

    def balances(self) -> dict:
        return {}

    def balances_view(self) -> Any:
        return {}

    async def load_lane_state(self, lane_id: str) -> Optional[dict]:
        return self.commits[-1][0] if self.commits else None

    async def commit_lane(self, lane_id: str, state: dict, effects: list, now: datetime) -> None:
        from lanectl.service.ports import StorageUnavailable
        if self.down:
            self.refused += 1
            raise StorageUnavailable("disk full (test)")
        committed = [e for e in effects if fx.is_persistent(e)]
        self.commits.append((state, committed))
        self._inside.apply(committed)

    async def mark_action(self, action_id: str, ok: bool, error: str, now: datetime) -> None:
        self.marks.append((action_id, ok))

    def defer_action(self, lane_id: str, effect: Any, now: datetime) -> bool:
        self.deferred.append((lane_id, effect))
        return True

    def written(self, kind: type) -> list:
        return [e for _, effects in self.commits for e in effects if isinstance(e, kind)]


class MemorySettlementStore:
    """The SettlementStore port in dicts, with the SQLite store's compare-and-set rules."""

    def __init__(self, clock: Optional[FakeClock] = None) -> None:
        self.orders: dict[str, tuple[fx.StartSettlement, str]] = {}  # record id -> (order, open|closed)
        self.rows: dict[int, Attempt] = {}
        self.down = False  # writes refused, as on a full disk

    def add_order(self, order: fx.StartSettlement) -> fx.StartSettlement:
        self.orders[order.record_id] = (order, "open")
        return order

    async def open_settlements(self) -> list[fx.StartSettlement]:
        return [o for o, s in self.orders.values() if s == "open"]

    async def settlement_open(self, record_id: str) -> bool:
        return self.orders.get(record_id, (None, ""))[1] == "open"

    async def settlement_order(self, record_id: str) -> Optional[fx.StartSettlement]:
        return self.orders[record_id][0] if record_id in self.orders else None

    async def new_attempt(self, record_id: str, lane_id: str, provider: str, order_ref: str, amount_fen: int,
                          now: datetime) -> Attempt:
        self._writable()
        row = Attempt(len(self.rows) + 1, record_id, lane_id, provider, order_ref, amount_fen, "charging",
                      now.timestamp())
        self.rows[row.id] = row
        return row

    async def attempts(self, *, record_id: Optional[str] = None, provider: Optional[str] = None,
                       order_ref: Optional[str] = None, statuses: Sequence[str] = ()) -> list[Attempt]:
        return [a for a in self.rows.values() if record_id in (None, a.record_id) and provider in (None, a.provider)
                and order_ref in (None, a.order_ref) and (not statuses or a.status in statuses)]

    async def mark_attempt(self, attempt_id: int, status: str, detail: str, now: datetime,
                           *, only_from: Sequence[str] = ATTEMPT_OPEN) -> bool:
        self._writable()
        if self.rows[attempt_id].status not in only_from:
            return False
        self.rows[attempt_id] = replace(self.rows[attempt_id], status=status, detail=detail[:500])
        return True

    async def settle_attempt(self, attempt_id: int, paid: bool, trade_no: str, paid_fen: int, method: str,
                             detail: str, now: datetime) -> bool:
        self._writable()
        if self.rows[attempt_id].status not in (ATTEMPT_PAYABLE if paid else ATTEMPT_OPEN):
            return False
        self.rows[attempt_id] = replace(self.rows[attempt_id], status="paid" if paid else "failed",
                                        trade_no=trade_no, paid_fen=paid_fen, method=method, detail=detail[:500])
        return True

    def _writable(self) -> None:
        from lanectl.service.ports import StorageUnavailable
        if self.down:
            raise StorageUnavailable("disk full")


class SettlementResults:
    """Stands in for the settlement service: records what the platforms' inbound handlers hand it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, Optional[str]]] = []

    async def on_result(self, provider: str, order_ref: str, answer: Any, *,
                        lane_id: Optional[str] = None) -> str:
        self.calls.append((provider, order_ref, answer, lane_id))
        return "recorded"


# ---------------------------------------------------------------- the whole daemon from fakes (bootstrap.build_app)

class MemoryDaemonStore(MemoryLaneStore):
    """The store as the daemon uses it at start and stop, on top of the lane-store twin: open, health, the
    storage probe, stored renewals and opening balances."""

    def __init__(self) -> None:
        from lanectl.service.storage import StorageHealth
        super().__init__()
        self.health = StorageHealth("memory")
        self.opened = self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.closed = True

    async def watch(self) -> None:  # the storage probe: nothing to probe in memory
        await asyncio.Event().wait()

    async def outbox_summary(self, limit: int = 50) -> dict:  # nothing queued in memory
        return {"counts": {}, "pending": []}

    async def renewals(self) -> list:
        return []

    async def outbox_depths(self, destinations: list) -> dict:  # /metrics: nothing is queued in memory
        return {d: (0, 0, None) for d in destinations}

    async def seed_balances(self, balances: dict, now: datetime) -> list:
        return []

    async def inbox_put(self, provider: str, key: str, payload: str, now: datetime) -> bool:
        """As the SQLite inbox: False for a (provider, key) kept before."""
        inbox = self.__dict__.setdefault("inbox", {})
        if (provider, key) in inbox:
            return False
        inbox[(provider, key)] = payload
        return True


class FakeLaneDevice:
    """A device task (plate reader, scanner) that emits what the test tells it: `await device.send(event)`."""

    def __init__(self) -> None:
        self._emit: Optional[Callable[[Any], None]] = None
        self.running = asyncio.Event()

    async def run(self, emit: Callable[[Any], None]) -> None:
        self._emit = emit
        self.running.set()
        await asyncio.Event().wait()

    async def send(self, event: Any) -> None:
        await asyncio.wait_for(self.running.wait(), 5)
        assert self._emit is not None
        self._emit(event)


class FakeLaneBarrier(FakeLaneDevice, FakeBarrier):
    """FakeBarrier as a device: its inputs (IoSnapshot) come from the test; each OPEN sets `opened`."""

    def __init__(self) -> None:
        FakeLaneDevice.__init__(self)
        FakeBarrier.__init__(self)
        self.opened = asyncio.Event()
        self.hints = 0

    async def open(self) -> None:
        await super().open()
        self.opened.set()

    def expect_command(self) -> None:  # the plate reader's hint that a decision follows
        self.hints += 1


class FakeLaneDevices:
    """DeviceFactory twin: a FakeLaneBarrier / FakeLaneDevice for each device a lane's configuration names."""

    def __init__(self) -> None:
        self.barriers: dict[str, FakeLaneBarrier] = {}
        self.readers: dict[str, FakeLaneDevice] = {}
        self.cameras: dict[str, Any] = {}  # cameras over MQTT (real, on the test's bus)
        self.closed = False

    def camera(self, lane: Any, images_dir: Any, clock: Any) -> Any:
        raise AssertionError("FakeLaneDevices has no HTTP camera")

    def mqtt_camera(self, lane: Any, images_dir: Any, clock: Any, bus: Any) -> Any:
        """The real camera over MQTT: on a MemoryBus it is in-memory already."""
        from lanectl.adapters.camera_mqtt import VzenithMqttCamera
        camera = self.cameras[lane.id] = VzenithMqttCamera(lane.id, lane.devices.camera, images_dir, clock, bus)
        return camera

    def barrier(self, lane: Any, camera: Any) -> Optional[FakeLaneBarrier]:
        if lane.devices.barrier is None:
            return None
        barrier = self.barriers[lane.id] = FakeLaneBarrier()
        return barrier

    def display(self, lane: Any, via: Any) -> FakeDisplay:
        return FakeDisplay()

    def plate_reader(self, lane: Any, on_activity: Any) -> FakeLaneDevice:
        from lanectl.protocols.plate_serial import DecodeStats
        reader = self.readers[lane.id] = FakeLaneDevice()
        reader.stats = DecodeStats()  # type: ignore[attr-defined]  # what `status` reports of a plate line
        return reader

    def scanner(self, lane: Any) -> FakeLaneDevice:
        return FakeLaneDevice()

    async def aclose(self) -> None:
        self.closed = True


class FakeListener:
    """CallbackServer twin: keeps its routes; started / stopped by the daemon."""

    def __init__(self, host: str, port: int, **options: Any) -> None:
        self.host, self.port, self.options = host, port, options
        self.routes: dict[str, Any] = {}
        self.listening = False
        self.stopped = False

    def add_post(self, path: str, handler: Any) -> None:
        self.routes[path] = handler

    def add_get(self, path: str, handler: Any) -> None:
        self.routes[path] = handler

    async def start(self) -> None:
        self.listening = True

    async def stop(self) -> None:
        self.listening, self.stopped = False, True


class FakeControlServer:
    """ControlServer twin: holds the handlers (the App); a test calls them directly."""

    def __init__(self, path: str, handlers: Any, **options: Any) -> None:
        self.path, self.handlers, self.options = path, handlers, options
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


class FakeSession:
    """aiohttp.ClientSession stand-in for a daemon that sends nothing: only closed."""

    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class FakeNotifier:
    """SystemdNotifier twin: what the daemon told systemd, in order ("ready", "status: ...", "stopping")."""

    enabled = False  # no watchdog

    def __init__(self) -> None:
        self.said: list[str] = []

    def ready(self, status: Optional[str] = None) -> bool:
        self.said.append("ready")
        return True

    def stopping(self, status: Optional[str] = None) -> bool:
        self.said.append("stopping")
        return True

    def status(self, text: str) -> bool:
        self.said.append(f"status: {text}")
        return True


# --- the site bus (lanectl/service/site_bus.py) --------------------------------------------------------------
def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching: `+` one level, `#` this level and all below."""
    want, got = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(got) or (part != "+" and part != got[i]):
            return False
    return len(want) == len(got)


class MemoryBroker:
    """An in-memory broker for SiteBus twins: delivers each message to every matching subscription of every
    connected client (in publish order), keeps retained messages and hands them to new subscriptions."""

    def __init__(self) -> None:
        self.clients: list["MemoryBus"] = []
        self.retained: dict[str, bytes] = {}
        self.log: list[tuple[str, bytes, int, bool]] = []  # every accepted publish: (topic, payload, qos, retain)

    def client(self) -> "MemoryBus":
        bus = MemoryBus(self)
        self.clients.append(bus)
        return bus

    async def deliver(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.log.append((topic, payload, qos, retain))
        if retain:
            if payload:
                self.retained[topic] = payload
            else:
                self.retained.pop(topic, None)  # an empty retained message clears the topic
        for client in list(self.clients):
            if client.connected:
                await client.receive(topic, payload)


class MemoryBus:
    """SiteBus twin over a MemoryBroker. `connected = False` takes it off the bus: publishes raise
    BusUnavailable and nothing reaches it."""

    def __init__(self, broker: MemoryBroker) -> None:
        from lanectl.service.site_bus import MessageHandler
        self.broker = broker
        self.connected = True
        self.handlers: list[tuple[str, MessageHandler]] = []

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        from lanectl.service.site_bus import BusUnavailable
        if not self.connected:
            raise BusUnavailable("memory bus disconnected")
        await self.broker.deliver(topic, payload, qos, retain)

    def subscribe(self, topic_filter: str, handler: Any) -> None:
        self.handlers.append((topic_filter, handler))

    async def receive(self, topic: str, payload: bytes) -> None:
        for topic_filter, handler in self.handlers:
            if topic_matches(topic_filter, topic):
                await handler(topic, payload)

    async def run(self) -> None:  # connected from the start; retained messages reach the subscriptions
        for topic, payload in list(self.broker.retained.items()):
            await self.receive(topic, payload)
        await asyncio.Event().wait()
