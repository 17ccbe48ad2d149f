"""Barrier + loops through a Modbus IO module (RTU on RS-485, or TCP). Implements service.ports.Barrier.

Two pieces:
- `ModbusBus` owns ONE pymodbus client per RS-485 line (port path) or TCP endpoint (host:port), shared by
  every lane whose module hangs on it. It serializes requests by rank (an OPEN or STOP first, then a CLOSE or
  a pulse's end, then input polls), keeps the Modbus 3.5-character silence between frames on serial, connects
  lazily and reports failures as `BusError`. `ModbusBusRegistry` hands out the buses.
- `ModbusBarrier` is one lane's barrier on a bus: it polls the inputs, emits IoSnapshot / DeviceFault /
  DeviceRecovered, and pulses the OPEN / CLOSE coils. CLOSE is refused (BarrierUnsafe, nothing written) when
  a fresh read shows the safety loop or anti-smash occupied.

A plate line arriving at any lane announces a command (`expect_command`): until its OPEN has gone, polls,
CLOSEs and pulse ends of every lane on the bus keep off the line — checked again once they hold the slot, and
by a CLOSE between its safety check and its write (it then checks again after the OPEN) — but never longer
than MAX_POLL_HOLD_S, so the loops are still read and the arm still closes. On a line that cannot spare the
time (8 units at 9600 baud) an OPEN then waits only for a frame already on the wire or another lane's OPEN.

Coil state is part of the lane's truth. The controller acts on a coil's rising edge, so a coil left ON (a
pulse cut short by a crash, an OFF whose answer was lost) would swallow the next command of its kind. At start
and after every reconnect every command coil is driven OFF and read back before the first poll is reported;
a coil of unknown level is reset the same way before a command goes onto it.

pymodbus (3.16) details handled here: calls take device_id=; a timeout raises ModbusIOException and logs an
ERROR with a frame dump (we quiet its logger and log faulted / recovered once ourselves); its own reconnect
is disabled (reconnect_delay=0) in favour of our backoff; its retries are 0 and we retry per lane config.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable, Optional, Union

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from lanectl.config.devices import ModbusRtuBarrier, ModbusTcpBarrier
from lanectl.core.events import DeviceFault, DeviceRecovered, IoSnapshot
from lanectl.service.ports import BarrierError, BarrierUnsafe, Emit

log = logging.getLogger(__name__)

BarrierConfig = Union[ModbusRtuBarrier, ModbusTcpBarrier]
Client = Union[AsyncModbusSerialClient, AsyncModbusTcpClient]

_EXCEPTION_NAMES = {1: "illegal function", 2: "illegal address", 3: "illegal value", 4: "device failure",
                    6: "device busy", 10: "gateway path unavailable", 11: "gateway target did not respond"}


class BusError(Exception):
    """A request did not complete: port / connection unavailable, no answer, or an exception answer."""


def bits_per_char(bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> int:
    """Start bit + data + parity + stop bits (8N1 = 10, 8E1 = 11)."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


def frame_gap_s(baudrate: int, bits: int = 10) -> float:
    """Modbus RTU inter-frame silence t3.5: 3.5 characters, fixed 1.75 ms above 19200 baud (spec 2.5.1.1)."""
    if baudrate > 19200:
        return 0.00175
    return 3.5 * bits / baudrate


COMMAND_HINT_S = 0.08  # a plate line was seen: polls wait this long after its last byte
MAX_POLL_HOLD_S = 0.25  # ... but the inputs are never left unread longer than this beyond the poll period
# (or beyond one round of polls of every unit on the line, when the line cannot poll them all that often)

# Ranks on the bus slot: an OPEN / STOP first, a CLOSE or a pulse's end next, input polls last.
URGENT, COMMAND, POLL = 0, 1, 2


def _quiet_pymodbus() -> None:
    # pymodbus logs an ERROR with a frame dump on every timeout and a WARNING on every failed connect; the
    # adapter reports the same facts once (faulted / recovered). An operator who configured the "pymodbus"
    # logger explicitly (level set) keeps their setting.
    logger = logging.getLogger("pymodbus")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.CRITICAL)


def _rank(priority: Union[bool, int]) -> int:
    """True / False (a command / a poll, as callers have always said) or a rank (URGENT, COMMAND, POLL)."""
    if isinstance(priority, bool):
        return URGENT if priority else POLL
    return priority


class _Slot:
    """Mutual exclusion for one bus, waiters served by rank, then in arrival order: an OPEN goes before a CLOSE
    or a pulse end of another lane, and every command before the polls.

    (asyncio.Lock is FIFO: an OPEN would wait behind every poll already queued by every lane on the line.)
    """

    def __init__(self) -> None:
        self._busy = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def acquire(self, priority: Union[bool, int]) -> None:
        if not self._busy:  # invariant: not busy => nobody waiting
            self._busy = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (_rank(priority), next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed the slot just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():  # skip waiters that were cancelled
                fut.set_result(None)  # the slot stays busy: ownership moves to that waiter
                return
        self._busy = False


class ModbusBus:
    """One RS-485 line or TCP endpoint: one client, one request at a time, the inter-frame gap."""

    _MIN_CONNECT_INTERVAL_S = 0.2  # lanes sharing a dead port do not each hammer it

    def __init__(self, key: str, make_client: Callable[[float], Client], gap_s: float) -> None:
        self.key = key
        self.gap_s = gap_s
        self.timeout_s = 0.0  # the largest timeout_s of the lanes on this bus; set by the registry
        self._make_client = make_client
        self._client: Optional[Client] = None
        self._slot = _Slot()
        self._quiet_since = 0.0
        self._holds: dict[object, float] = {}  # who announced a command (a barrier) -> until when polls wait
        self._nudge: Optional[asyncio.Event] = None  # set when a hold ends early or a lane's OPEN waits its turn
        self._connect_after = 0.0
        self._connect_error = ""
        self._pending: set[asyncio.Task] = set()
        self._pollers = 0  # barriers polling their inputs on this bus
        self._poll_s = 0.0  # how long one poll holds the bus (moving average of the answered ones)

    def add_poller(self, delta: int) -> None:
        self._pollers += delta

    def note_poll(self, seconds: float) -> None:
        self._poll_s = seconds if self._poll_s == 0.0 else 0.8 * self._poll_s + 0.2 * seconds

    def poll_round_s(self) -> float:
        """How long one poll of every unit takes on this line (at 9600 baud ~22 ms a unit: 8 units cannot be
        polled every 50 ms, whatever poll_ms says)."""
        return self._pollers * self._poll_s

    def hold_polls(self, seconds: float, who: object = None) -> None:
        """A command is probably coming (a plate line is arriving): keep polls off the line for a moment, so
        the OPEN does not wait behind a poll frame already on the wire (~15 ms at 9600 baud)."""
        self._holds[who] = max(self._holds.get(who, 0.0), time.monotonic() + seconds)

    def release_hold(self, who: object) -> None:
        """The command `who` announced has gone: its hold ends now, not COMMAND_HINT_S after its line (on a
        busy line the polls and CLOSEs it kept waiting would otherwise run late and meet the next car's OPEN),
        and whoever waits for the holds is woken (see wait_for_holds)."""
        if self._holds.pop(who, None) is not None:
            self.nudge()

    def nudge(self) -> None:
        """Wake everything waiting in wait_for_holds: a hold ended early, or a lane's own OPEN now waits."""
        if self._nudge is not None:
            self._nudge.set()
            self._nudge = None

    async def wait_for_holds(self, seconds: float) -> None:
        """Sleep while polls are held: `seconds` at most, less when a hold ends early (its OPEN has gone). A
        saturated line (8 units at 9600 baud) has no time to spare: a poll sleeping out a hold whose OPEN went
        long ago falls behind, and the starvation guard later puts it in front of another car's OPEN."""
        if self._nudge is None:
            self._nudge = asyncio.Event()
        try:
            async with asyncio.timeout(seconds):  # (not wait_for: no task per wait, a cancel is never lost)
                await self._nudge.wait()
        except TimeoutError:
            pass

    def polls_held_for(self) -> float:
        if not self._holds:
            return 0.0
        left = max(self._holds.values()) - time.monotonic()
        if left <= 0:
            self._holds.clear()
            return 0.0
        return left

    @asynccontextmanager
    async def exclusive(self, priority: Union[bool, int] = False) -> AsyncIterator["_Session"]:
        """Hold the bus for several requests in a row (e.g. CLOSE's safety read and its coil write)."""
        await self._slot.acquire(priority)
        try:
            yield _Session(self)
        finally:
            self._slot.release()

    async def read_bits(self, unit: int, address: int, count: int, *, retries: int = 0,
                        priority: Union[bool, int] = False) -> list[bool]:
        async with self.exclusive(priority) as bus:
            return await bus.read_bits(unit, address, count, retries=retries)

    async def write_coil(self, unit: int, address: int, value: bool, *, retries: int = 0,
                         priority: Union[bool, int] = True) -> None:
        async with self.exclusive(priority) as bus:
            await bus.write_coil(unit, address, value, retries=retries)

    def finish_before_close(self, task: asyncio.Task) -> None:
        """Register work that must reach the line before close() drops the client (a pulse's OFF write)."""
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        """Let pending pulse ends go out (bounded), then drop the client. Shutdown must not leave a relay ON."""
        if self._pending:
            # Each task ends by itself (pulse_ms <= 5 s, then one bounded write); the bound is a backstop.
            _, late = await asyncio.wait(set(self._pending), timeout=10.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # --- used by _Session while the slot is held ---

    async def _connected_client(self) -> Client:
        if self._client is None:
            self._client = self._make_client(self.timeout_s)
        if self._client.connected:
            return self._client
        now = time.monotonic()
        if now < self._connect_after:
            raise BusError(self._connect_error)
        if await self._client.connect():
            self._connect_error = ""
            return self._client
        self._connect_after = now + self._MIN_CONNECT_INTERVAL_S
        self._connect_error = f"cannot open {self.key}"
        raise BusError(self._connect_error)

    async def _request(self, what: str, call: Callable[[Client], Awaitable], retries: int):
        client = await self._connected_client()
        for attempt in range(retries + 1):
            # Keep the line silent for t3.5 after the previous frame ended (answer or timeout), so a slow
            # module or a second module on the line sees a frame boundary.
            wait = self._quiet_since + self.gap_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                # pymodbus enforces timeout_s itself; the outer bound only guards against a stuck transport. (A
                # timeout scope, not wait_for: no task of its own, so the frame reaches the transport in this turn
                # of the loop — before the lane's step goes on, see LaneRunner.step.)
                async with asyncio.timeout(self.timeout_s + 1.0):
                    response = await call(client)
            except (ModbusIOException, asyncio.TimeoutError):
                if attempt < retries and client.connected:
                    continue
                raise BusError(f"{what}: no answer within {self.timeout_s:g} s") from None
            except ModbusException as exc:  # ConnectionException and friends: the link is gone
                raise BusError(f"{what}: {exc}") from None
            finally:
                self._quiet_since = time.monotonic()
            if response.isError():
                code = getattr(response, "exception_code", 0)
                raise BusError(f"{what}: exception answer {code} ({_EXCEPTION_NAMES.get(code, 'unknown')})")
            return response
        raise AssertionError("unreachable")


class _Session:
    """Requests on a bus whose slot the caller holds (see ModbusBus.exclusive)."""

    def __init__(self, bus: ModbusBus) -> None:
        self._bus = bus

    async def read_bits(self, unit: int, address: int, count: int, *, retries: int = 0) -> list[bool]:
        """Discrete inputs (FC 2): the loops, the limits."""
        return await self._bits("inputs", unit, address, count, retries,
                                lambda c: c.read_discrete_inputs(address, count=count, device_id=unit))

    async def read_coils(self, unit: int, address: int, count: int, *, retries: int = 0) -> list[bool]:
        """Coils (FC 1): the command outputs, read back."""
        return await self._bits("coils", unit, address, count, retries,
                                lambda c: c.read_coils(address, count=count, device_id=unit))

    async def _bits(self, what: str, unit: int, address: int, count: int, retries: int,
                    call: Callable[[Client], Awaitable]) -> list[bool]:
        rsp = await self._bus._request(f"read {what} {address}+{count} of unit {unit} on {self._bus.key}", call,
                                       retries)
        if len(rsp.bits) < count:
            raise BusError(f"short answer from unit {unit}: {len(rsp.bits)} of {count} {what}")
        return list(rsp.bits[:count])

    async def write_coil(self, unit: int, address: int, value: bool, *, retries: int = 0) -> None:
        await self._bus._request(
            f"write coil {address}={'ON' if value else 'OFF'} of unit {unit} on {self._bus.key}",
            lambda c: c.write_coil(address, value, device_id=unit),
            retries,
        )


class ModbusBusRegistry:
    """Hands out one ModbusBus per serial port path / TCP host:port. Close it on shutdown."""

    def __init__(self) -> None:
        self._buses: dict[str, ModbusBus] = {}
        self._serial_params: dict[str, tuple] = {}
        _quiet_pymodbus()

    def bus_for(self, config: BarrierConfig) -> ModbusBus:
        if isinstance(config, ModbusRtuBarrier):
            # The configured path, not its symlink target: a pty or by-id link may point elsewhere after a
            # replug, while the path stays the identity of the line.
            key = os.path.normpath(config.port)
            params = (config.baudrate, config.bytesize, config.parity, config.stopbits)
            if key in self._serial_params and self._serial_params[key] != params:
                raise ValueError(f"serial line {key}: lanes disagree on baudrate/bytesize/parity/stopbits")
            self._serial_params[key] = params
            bus = self._buses.get(key)
            if bus is None:
                gap = frame_gap_s(config.baudrate, bits_per_char(config.bytesize, config.parity, config.stopbits))
                bus = self._buses[key] = ModbusBus(key, lambda t, c=config: _serial_client(c, t), gap)
        else:
            key = f"{config.host}:{config.tcp_port}"
            bus = self._buses.get(key)
            if bus is None:
                bus = self._buses[key] = ModbusBus(key, lambda t, c=config: _tcp_client(c, t), 0.0)
        bus.timeout_s = max(bus.timeout_s, config.timeout_s)
        return bus

    async def close(self) -> None:
        for bus in self._buses.values():
            await bus.close()

    async def __aenter__(self) -> "ModbusBusRegistry":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _serial_client(config: ModbusRtuBarrier, timeout_s: float) -> AsyncModbusSerialClient:
    return AsyncModbusSerialClient(
        config.port, framer=FramerType.RTU, baudrate=config.baudrate, bytesize=config.bytesize,
        parity=config.parity, stopbits=config.stopbits, timeout=timeout_s, retries=0, reconnect_delay=0,
        name=f"rtu {config.port}",
    )


def _tcp_client(config: ModbusTcpBarrier, timeout_s: float) -> AsyncModbusTcpClient:
    return AsyncModbusTcpClient(
        config.host, port=config.tcp_port, framer=FramerType.SOCKET, timeout=timeout_s, retries=0,
        reconnect_delay=0, name=f"tcp {config.host}:{config.tcp_port}",
    )


class _Backoff:
    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s, self.max_s = first_s, max_s
        self._next = first_s

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next = self.first_s


class ModbusBarrier:
    """One lane's barrier on a Modbus IO module (the Barrier port)."""

    def __init__(
        self,
        config: BarrierConfig,
        registry: ModbusBusRegistry,
        *,
        name: str = "",
        backoff_first_s: float = 0.2,
        backoff_max_s: float = 5.0,
    ) -> None:
        self.config = config
        self.bus = registry.bus_for(config)
        self.name = name or f"{self.bus.key} unit {config.unit}"
        p = config.points
        self._inputs = {"arming": p.arming, "safety": p.safety, "up_limit": p.up_limit, "down_limit": p.down_limit}
        if p.anti_smash is not None:
            self._inputs["anti_smash"] = p.anti_smash
        # One read covers every configured input.
        self._first = min(self._inputs.values())
        self._count = max(self._inputs.values()) - self._first + 1
        self._backoff = _Backoff(backoff_first_s, backoff_max_s)
        self._pulse_lock = asyncio.Lock()  # one pulse at a time: a pulse's OFF goes out before the next ON
        # this lane's own OPEN / STOP waits for the pulse lock: its deferred CLOSE or pulse end goes now
        self._urgent_waiting = 0
        self._urgent = asyncio.Event()
        self._release_task: Optional[asyncio.Task] = None
        self._coils = {"OPEN": p.open, "CLOSE": p.close, "STOP": p.stop}
        # Coils whose level we do not know (all of them until the first settle and after a reconnect; a pulsed
        # coil until its OFF is acknowledged): driven OFF and read back before the next command onto them.
        self._unknown: set[int] = set(self._coils.values())
        self._unsettled = True  # start / reconnect: the poll loop settles every coil before reporting inputs
        self.coils_reset = 0  # coils found ON at start / reconnect and reset (a pulse a crash cut short)
        self.last_snapshot: Optional[IoSnapshot] = None  # from the poll loop; None while faulted
        self.faulted: Optional[str] = None  # reason while faulted

    # --- Barrier port ---

    async def run(self, emit: Emit) -> None:
        period = self.config.poll_ms / 1000
        next_poll = last_poll = time.monotonic()
        self.bus.add_poller(1)
        try:
            await self._poll_loop(emit, period, next_poll, last_poll)
        finally:
            self.bus.add_poller(-1)

    async def _poll_loop(self, emit: Emit, period: float, next_poll: float, last_poll: float) -> None:
        reported: Optional[IoSnapshot] = None
        was_faulted = False
        while True:
            if self._poll_yields(last_poll, period):
                await self.bus.wait_for_holds(min(self.bus.polls_held_for(), period))
                continue
            try:
                async with self.bus.exclusive(priority=False) as bus:
                    # Checked again with the slot in hand: a plate line that began while this poll queued behind
                    # another lane's poll would otherwise have its OPEN wait for this one too (~19 ms at 9600).
                    if self._poll_yields(last_poll, period):
                        continue
                    last_poll = time.monotonic()
                    # Start or reconnect: no input is reported before the coils are known. (A pulse in progress
                    # settles them itself before its write, and must not have its own ON cut short here.)
                    if self._unsettled and not self._pulse_lock.locked():
                        await self._settle_coils(bus, found_on="found ON at start / reconnect")
                    started = time.monotonic()
                    snapshot = await self._read(bus)
                    self.bus.note_poll(time.monotonic() - started)
            except BusError as exc:
                reported = self.last_snapshot = None  # after recovery, report the inputs again even if unchanged
                self._unsettled = True  # the module may have lost power, or missed an OFF
                self._unknown = set(self._coils.values())
                if not was_faulted:
                    was_faulted, self.faulted = True, str(exc)
                    log.warning("barrier %s faulted: %s", self.name, exc)
                    emit(DeviceFault("barrier", str(exc)))
                await asyncio.sleep(self._backoff.next())
                next_poll = time.monotonic()
                continue
            if was_faulted:
                was_faulted, self.faulted = False, None
                log.info("barrier %s recovered", self.name)
                emit(DeviceRecovered("barrier"))
            self._backoff.reset()
            self.last_snapshot = snapshot
            if snapshot != reported:
                reported = snapshot
                emit(snapshot)
            # A fixed cadence against the monotonic clock; after a long stall, resume without a burst.
            next_poll = max(next_poll + period, time.monotonic())
            await asyncio.sleep(next_poll - time.monotonic())

    async def open(self) -> None:
        await self._pulse(self.config.points.open, "OPEN", URGENT)

    def _poll_yields(self, last_poll: float, period: float) -> bool:
        """A command is announced: the poll waits — but a noisy camera line must not starve the loops, so never
        longer than MAX_POLL_HOLD_S beyond the period without a poll. The period is the one the line can give:
        on a line that cannot poll its units as often as configured, every poll is always "late", and measured
        against poll_ms alone it would take the line in front of an OPEN every time."""
        if self.bus.polls_held_for() <= 0:
            return False
        return time.monotonic() - last_poll < max(period, self.bus.poll_round_s()) + MAX_POLL_HOLD_S

    def expect_command(self, seconds: float = COMMAND_HINT_S) -> None:
        """Hint from the lane's plate reader: a decision, maybe an OPEN, follows in a few milliseconds."""
        self.bus.hold_polls(seconds, who=self)

    async def close(self) -> None:
        await self._pulse(self.config.points.close, "CLOSE", COMMAND, check_safe=True)

    # --- extras ---

    async def stop(self) -> None:
        """Pulse STOP (halts the arm where it is)."""
        await self._pulse(self.config.points.stop, "STOP", URGENT)

    async def read_inputs(self, priority: bool = True) -> IoSnapshot:
        """Read every input now (BusError when the module does not answer)."""
        async with self.bus.exclusive(priority) as bus:
            return await self._read(bus)

    async def aclose(self) -> None:
        """Let a pending pulse finish (its OFF write) so no relay is left ON. (ModbusBusRegistry.close() does
        the same for every barrier on its buses.)"""
        task = self._release_task
        if task is not None and not task.done():
            bound = self.config.pulse_ms / 1000 + (self.config.retries + 1) * (self.bus.timeout_s + 1)
            try:
                await asyncio.wait_for(asyncio.shield(task), bound)
            except asyncio.TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    # --- internals ---

    async def _read(self, bus: "_Session") -> IoSnapshot:
        bits = await bus.read_bits(self.config.unit, self._first, self._count, retries=self.config.retries)
        level = {name: bits[addr - self._first] for name, addr in self._inputs.items()}
        return IoSnapshot(**level)

    async def _settle_coils(self, bus: "_Session", found_on: str) -> None:
        """Drive every coil of unknown level OFF and read it back (BusError if one stays ON)."""
        unit, retries = self.config.unit, self.config.retries
        names = {addr: name for name, addr in self._coils.items() if addr in self._unknown}
        if not names:
            self._unsettled = False
            return
        if not self.config.coil_readback:  # a module that cannot read coils back: OFF, trusted
            for addr in names:
                await bus.write_coil(unit, addr, False, retries=retries)
            self._unknown.difference_update(names)
            self._unsettled = False
            return
        first = min(names)
        count = max(names) - first + 1
        levels = await bus.read_coils(unit, first, count, retries=retries)
        on = [addr for addr in names if levels[addr - first]]
        for addr in on:
            if found_on.startswith("found"):
                log.warning("barrier %s: %s coil %d %s (a pulse cut short); reset to OFF", self.name, names[addr],
                            addr, found_on)
                self.coils_reset += 1
            await bus.write_coil(unit, addr, False, retries=retries)
        if on:  # read back: a module that ignores the OFF would swallow every later command
            levels = await bus.read_coils(unit, first, count, retries=retries)
            still = [names[addr] for addr in on if levels[addr - first]]
            if still:
                raise BusError(f"{', '.join(still)} coil stays ON after OFF on unit {unit}")
        self._unknown.difference_update(names)
        self._unsettled = False

    async def _pulse(self, coil: int, what: str, rank: int, check_safe: bool = False) -> None:
        unit, retries = self.config.unit, self.config.retries
        await self._acquire_pulse_lock(rank)
        handed_over = False
        # a CLOSE keeps off the line while plate lines announce an OPEN, at most this long in all
        deadline = time.monotonic() + MAX_POLL_HOLD_S
        try:
            while True:
                if rank != URGENT:
                    await self._after_announced_open(deadline)
                async with self.bus.exclusive(rank) as bus:
                    if rank != URGENT and self._yields_to_open(deadline):
                        continue  # a plate line began while this command queued for the slot
                    if coil in self._unknown or self._unsettled:
                        # Its last OFF was not acknowledged (or never written): without this reset the module
                        # could see no rising edge and the command would be lost.
                        await self._settle_coils(bus, found_on="still ON before a command")
                    if check_safe:
                        # Same bus slot as the write: nothing else goes on the line between the check and CLOSE.
                        snap = await self._read(bus)
                        if snap.safety or snap.anti_smash:
                            raise BarrierUnsafe(
                                f"{what} refused on {self.name}: "
                                + ("safety loop occupied" if snap.safety else "anti-smash tripped")
                            )
                        if rank != URGENT and self._yields_to_open(deadline):
                            # A plate line began during the check: its OPEN goes first, the CLOSE checks again
                            # after it (the write never follows a check older than its own slot).
                            continue
                    # Until an OFF is acknowledged the coil may be ON (an answer lost after the module acted,
                    # this call cancelled mid-pulse, or a module in pulse mode that has not dropped it yet).
                    self._unknown.add(coil)
                    await bus.write_coil(unit, coil, True, retries=retries)
                break
            if rank == URGENT:
                self.bus.release_hold(self)  # the command this lane's plate line announced has gone
            if self.config.pulse_ms > 0:
                # The OFF goes out in the background (the caller need not wait pulse_ms); the pulse lock moves
                # to that task, so a following command waits for it and the bus order stays ON, OFF, ON...
                self._release_task = asyncio.create_task(
                    self._release_after(coil, what), name=f"barrier {self.name} {what} release"
                )
                self.bus.finish_before_close(self._release_task)
                handed_over = True
        except BusError as exc:
            raise BarrierError(f"{what} not delivered to {self.name}: {exc}") from exc
        finally:
            if not handed_over:
                self._pulse_lock.release()

    async def _acquire_pulse_lock(self, rank: int) -> None:
        if rank != URGENT:
            await self._pulse_lock.acquire()
            return
        self._urgent_waiting += 1
        self._urgent.set()
        self.bus.nudge()  # this lane's deferred CLOSE or pulse end stops waiting for the holds
        try:
            await self._pulse_lock.acquire()
        finally:
            self._urgent_waiting -= 1
            if not self._urgent_waiting:
                self._urgent.clear()

    def _yields_to_open(self, deadline: float) -> bool:
        """A CLOSE or a pulse end lets an announced OPEN go first — not this lane's own (it waits for this
        command's pulse lock), and not after `deadline` (a noisy camera line must not keep the arm up)."""
        return (not self._urgent.is_set() and self.bus.polls_held_for() > 0
                and time.monotonic() < deadline)

    async def _after_announced_open(self, deadline: float) -> None:
        """A CLOSE or a pulse end is not urgent: while plate lines on this bus announce a command (maybe an OPEN
        of another lane), it waits — until `deadline` at most — so the OPEN does not find its frame on the
        wire (~20 ms at 9600 baud). The arm stays up a moment longer, a pulse lasts a moment longer. Not when
        this lane's own OPEN or STOP waits behind it (for the pulse lock)."""
        while self._yields_to_open(deadline):
            await self.bus.wait_for_holds(min(self.bus.polls_held_for(), deadline - time.monotonic()))

    async def _release_after(self, coil: int, what: str) -> None:
        try:
            await asyncio.sleep(self.config.pulse_ms / 1000)
            deadline = time.monotonic() + MAX_POLL_HOLD_S
            try:
                # after any OPEN waiting for the line (a pulse a few ms longer does no harm)
                while True:
                    await self._after_announced_open(deadline)
                    async with self.bus.exclusive(COMMAND) as bus:
                        if self._yields_to_open(deadline):
                            continue  # a plate line began while the OFF queued for the slot
                        await bus.write_coil(self.config.unit, coil, False, retries=self.config.retries)
                        break
                self._unknown.discard(coil)
            except BusError as exc:
                log.warning("barrier %s: %s pulse end not delivered: %s", self.name, what, exc)
        finally:
            self._pulse_lock.release()
