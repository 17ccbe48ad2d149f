"""lanectl.adapters.modbus_barrier against the barrier emulator: real pymodbus on both sides, over TCP and over
RTU through a VirtualCable (unpaced, and paced at 9600 baud)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import pytest

from hil.emulators.barrier_io import BarrierEmulator, Physics
from hil.wire import VirtualCable
from lanectl.adapters.modbus_barrier import (
    BusError,
    ModbusBarrier,
    ModbusBus,
    ModbusBusRegistry,
    _Slot,
    bits_per_char,
    frame_gap_s,
)
from lanectl.config.devices import ModbusRtuBarrier, ModbusTcpBarrier, PointMap
from lanectl.core.events import DeviceFault, DeviceRecovered, Event, IoSnapshot
from lanectl.service.ports import BarrierError, BarrierUnsafe

FAST = Physics(rise_s=0.15, fall_s=0.15)
DOWN = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True, anti_smash=False)
ADAPTER_LOG = "lanectl.adapters.modbus_barrier"




class Recorder:
    """The `emit` a lane would pass: keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait(self, kind: type, where: Callable = lambda e: True, start: int = 0, timeout: float = 3.0):
        async with asyncio.timeout(timeout):
            while True:
                for e in self.events[start:]:
                    if isinstance(e, kind) and where(e):
                        return e
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Rig:
    kind: str
    emu: BarrierEmulator
    registry: ModbusBusRegistry
    cable: Optional[VirtualCable] = None
    tcp_port: int = 0
    a_link: str = ""
    barriers: list[ModbusBarrier] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)

    def config(self, unit: int = 1, **kw):
        common = dict(unit=unit, poll_ms=20, timeout_s=0.3, retries=0, pulse_ms=50) | kw
        if self.kind == "tcp":
            return ModbusTcpBarrier(kind="modbus_tcp", host="127.0.0.1", tcp_port=self.tcp_port, **common)
        return ModbusRtuBarrier(kind="modbus_rtu", port=self.a_link, baudrate=9600, **common)

    def barrier(self, unit: int = 1, *, backoff_max_s: float = 0.4, **kw) -> ModbusBarrier:
        b = ModbusBarrier(self.config(unit, **kw), self.registry, backoff_max_s=backoff_max_s)
        self.barriers.append(b)
        return b

    def run(self, barrier: ModbusBarrier) -> Recorder:
        rec = Recorder()
        self.tasks.append(asyncio.create_task(barrier.run(rec), name=f"run {barrier.name}"))
        return rec

    async def aclose(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for b in self.barriers:
            await b.aclose()
        await self.registry.close()
        await self.emu.stop()
        if self.cable:
            self.cable.close()


@pytest.fixture(params=["tcp", "rtu", "rtu-9600"])
def kind(request) -> str:
    return request.param


@pytest.fixture
async def make_rig(tmp_path):
    rigs: list[Rig] = []

    async def make(kind: str, units=(1,), physics: Physics = FAST) -> Rig:
        emu = BarrierEmulator(units, physics=physics)
        rig = Rig(kind, emu, ModbusBusRegistry())
        rigs.append(rig)
        if kind == "tcp":
            rig.tcp_port = await emu.start_tcp(0)
        else:
            rig.a_link, b_link = str(tmp_path / "barrier-daemon"), str(tmp_path / "barrier-device")
            rig.cable = VirtualCable(rig.a_link, b_link, baudrate=9600 if kind == "rtu-9600" else None)
            await emu.start_serial(b_link, baudrate=9600)
        return rig

    yield make
    for rig in rigs:
        await rig.aclose()


@pytest.fixture
async def rig(make_rig, kind) -> Rig:
    return await make_rig(kind)


# --- every transport -----------------------------------------------------------------------------------------


async def test_snapshots_follow_loop_changes(rig):
    rec = rig.run(rig.barrier())
    assert await rec.wait(IoSnapshot) == DOWN
    rig.emu.set_loop(1, "arming", True)
    await rec.wait(IoSnapshot, lambda s: s.arming and not s.safety)
    rig.emu.set_loop(1, "safety", True)
    await rec.wait(IoSnapshot, lambda s: s.arming and s.safety)
    rig.emu.set_anti_smash(1, True)
    await rec.wait(IoSnapshot, lambda s: s.anti_smash)
    rig.emu.set_loop(1, "arming", False)
    rig.emu.set_loop(1, "safety", False)
    rig.emu.set_anti_smash(1, False)
    await rec.wait(IoSnapshot, lambda s: s == DOWN, start=1)
    snaps = rec.of(IoSnapshot)
    assert all(a != b for a, b in zip(snaps, snaps[1:])), "a snapshot was emitted without a change"
    assert not rec.of(DeviceFault)


async def test_open_pulses_the_coil_and_the_arm_reaches_up_limit(rig):
    barrier = rig.barrier(pulse_ms=80)
    rec = rig.run(barrier)
    await rec.wait(IoSnapshot)
    t0 = time.monotonic()
    await barrier.open()
    # open() returns once ON is delivered; the OFF follows pulse_ms later without holding the caller.
    assert [(w.coil, w.value) for w in rig.emu.coil_writes] == [(0, True)]
    assert [c.name for c in rig.emu.commands] == ["open"] and rig.emu.commands[0].t >= t0
    up = await rec.wait(IoSnapshot, lambda s: s.up_limit)
    assert not up.down_limit
    await barrier.aclose()
    on, off = rig.emu.coil_writes
    assert (off.coil, off.value) == (0, False) and off.t - on.t >= 0.08


async def test_close_refused_while_a_car_is_under_the_arm(make_rig, kind):
    # An unprotected barrier (it obeys any CLOSE): only the daemon stands between the arm and the car.
    rig = await make_rig(kind, physics=Physics(rise_s=0.1, fall_s=0.1, safety_reverse=False))
    barrier = rig.barrier()
    rec = rig.run(barrier)
    await barrier.open()
    await rec.wait(IoSnapshot, lambda s: s.up_limit)

    rig.emu.set_loop(1, "safety", True)
    with pytest.raises(BarrierUnsafe, match="safety loop"):
        await barrier.close()
    rig.emu.set_loop(1, "safety", False)
    rig.emu.set_anti_smash(1, True)
    with pytest.raises(BarrierUnsafe, match="anti-smash"):
        await barrier.close()
    m = rig.emu.barrier(1)
    assert rig.emu.count("close") == 0 and m.close_refused == 0 and m.arm_hits == 0
    assert all(w.coil != 1 for w in rig.emu.coil_writes), "CLOSE coil was written"

    rig.emu.set_anti_smash(1, False)
    await barrier.close()
    await rec.wait(IoSnapshot, lambda s: s.down_limit, start=len(rec.events))
    assert rig.emu.count("close") == 1 and m.arm_hits == 0


# --- RTU specifics -------------------------------------------------------------------------------------------


async def test_two_barriers_share_one_serial_bus(make_rig):
    rig = await make_rig("rtu-9600", units=(1, 2))
    b1, b2 = rig.barrier(1), rig.barrier(2)
    assert b1.bus is b2.bus and b1.bus.gap_s == pytest.approx(3.5 * 10 / 9600)
    rec1, rec2 = rig.run(b1), rig.run(b2)
    assert await rec1.wait(IoSnapshot) == DOWN and await rec2.wait(IoSnapshot) == DOWN

    rig.emu.set_loop(2, "arming", True)
    await rec2.wait(IoSnapshot, lambda s: s.arming)
    await b1.open()
    await rec1.wait(IoSnapshot, lambda s: s.up_limit)
    assert [(c.unit, c.name) for c in rig.emu.commands] == [(1, "open")]
    assert not any(s.arming for s in rec1.of(IoSnapshot)) and not any(s.up_limit for s in rec2.of(IoSnapshot))

    # Commands for both lanes at once: both delivered, each to its own unit.
    await asyncio.gather(b1.close(), b2.open())
    await rec1.wait(IoSnapshot, lambda s: s.down_limit, start=len(rec1.events))
    await rec2.wait(IoSnapshot, lambda s: s.up_limit)
    assert sorted((c.unit, c.name) for c in rig.emu.commands) == [(1, "close"), (1, "open"), (2, "open")]
    assert not rec1.of(DeviceFault) and not rec2.of(DeviceFault)


@pytest.mark.parametrize("kind", ["rtu", "rtu-9600"])
async def test_unplug_faults_once_and_plug_recovers(make_rig, kind, caplog):
    caplog.set_level(logging.INFO)
    rig = await make_rig(kind)
    barrier = rig.barrier()
    rec = rig.run(barrier)
    await rec.wait(IoSnapshot)

    rig.cable.unplug()
    fault = await rec.wait(DeviceFault)
    assert fault.device == "barrier" and fault.reason
    with pytest.raises(BarrierError):
        await barrier.open()
    await asyncio.sleep(1.0)  # several retries with backoff
    assert len(rec.of(DeviceFault)) == 1

    rig.cable.plug()
    await rec.wait(DeviceRecovered)
    after = rec.events.index(rec.of(DeviceRecovered)[0])
    assert await rec.wait(IoSnapshot, start=after) == DOWN  # re-reported after the reconnect
    rig.emu.set_loop(1, "arming", True)
    await rec.wait(IoSnapshot, lambda s: s.arming)  # polling resumed
    await barrier.open()
    await rec.wait(IoSnapshot, lambda s: s.up_limit)
    assert len(rec.of(DeviceFault)) == 1 and len(rec.of(DeviceRecovered)) == 1

    ours = [r.getMessage() for r in caplog.records if r.name == ADAPTER_LOG]
    assert sum("faulted" in m for m in ours) == 1 and sum("recovered" in m for m in ours) == 1
    noisy = [r for r in caplog.records if r.name.startswith("pymodbus") and r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy]


async def test_a_silent_unit_faults_alone_on_a_shared_line(make_rig):
    rig = await make_rig("rtu", units=(1,))
    present, absent = rig.barrier(1), rig.barrier(3)
    rec1, rec3 = rig.run(present), rig.run(absent)
    fault = await rec3.wait(DeviceFault)
    assert "no answer" in fault.reason
    await rec1.wait(IoSnapshot)
    rig.emu.set_loop(1, "safety", True)
    await rec1.wait(IoSnapshot, lambda s: s.safety)
    # CLOSE needs a fresh read: an unreadable module is never closed blind.
    with pytest.raises(BarrierError):
        await absent.close()
    assert not rec1.of(DeviceFault) and len(rec3.of(DeviceFault)) == 1
    assert rig.emu.ignored_requests > 0 and not rig.emu.coil_writes


async def test_missing_port_faults_and_commands_fail_fast(make_rig, tmp_path):
    rig = await make_rig("rtu")
    rig.a_link = str(tmp_path / "no-such-tty")
    barrier = rig.barrier()
    rec = rig.run(barrier)
    assert "cannot open" in (await rec.wait(DeviceFault)).reason
    t0 = time.monotonic()
    with pytest.raises(BarrierError):
        await barrier.open()
    assert time.monotonic() - t0 < 0.5


# --- TCP specifics -------------------------------------------------------------------------------------------


async def test_tcp_server_outage_and_return(make_rig):
    rig = await make_rig("tcp")
    barrier = rig.barrier()
    rec = rig.run(barrier)
    await rec.wait(IoSnapshot)
    await rig.emu.stop()
    await rec.wait(DeviceFault)
    with pytest.raises(BarrierError):
        await barrier.open()
    await rig.emu.start_tcp(rig.tcp_port)
    await rec.wait(DeviceRecovered)
    await barrier.open()
    await rec.wait(IoSnapshot, lambda s: s.up_limit)
    assert len(rec.of(DeviceFault)) == 1 and len(rec.of(DeviceRecovered)) == 1


async def test_exception_answer_is_reported_as_a_fault(make_rig):
    rig = await make_rig("tcp")
    rec = rig.run(rig.barrier(points=PointMap(anti_smash=40)))  # the module has no input 40
    assert "illegal address" in (await rec.wait(DeviceFault)).reason


async def test_pulse_order_on_the_bus(make_rig):
    rig = await make_rig("tcp")
    barrier = rig.barrier(pulse_ms=100)
    await barrier.open()
    await barrier.close()  # waits for OPEN's pulse to end: both relays are never ON together
    await barrier.aclose()
    assert [(w.coil, w.value) for w in rig.emu.coil_writes] == [(0, True), (0, False), (1, True), (1, False)]


async def test_registry_close_lets_a_pending_pulse_end(make_rig):
    rig = await make_rig("tcp")
    barrier = rig.barrier(pulse_ms=100)
    await barrier.open()
    await rig.registry.close()  # shutdown right after a command: the relay must not stay ON
    assert [(w.coil, w.value) for w in rig.emu.coil_writes] == [(0, True), (0, False)]


async def test_a_lost_pulse_end_is_written_before_the_next_pulse(make_rig, caplog):
    rig = await make_rig("tcp")
    barrier = rig.barrier(pulse_ms=100)
    await barrier.open()
    await rig.emu.stop()  # the module goes away mid-pulse: the OFF cannot be delivered
    await barrier.aclose()
    assert "pulse end not delivered" in caplog.text
    await rig.emu.start_tcp(rig.tcp_port)
    await asyncio.sleep(0.25)  # past the bus' minimum reconnect interval
    await barrier.open()
    await barrier.aclose()
    # OFF first, so the module sees a rising edge again.
    assert [(w.coil, w.value) for w in rig.emu.coil_writes] == [(0, True), (0, False), (0, True), (0, False)]
    assert rig.emu.count("open") == 2


async def test_pulse_ms_zero_writes_on_only(make_rig):
    rig = await make_rig("tcp", physics=Physics(rise_s=0.1, fall_s=0.1, coil_auto_reset_s=0.05))
    barrier = rig.barrier(pulse_ms=0)
    await barrier.open()
    await asyncio.sleep(0.1)  # the module drops the coil itself
    await barrier.open()
    await barrier.aclose()
    assert [(w.coil, w.value) for w in rig.emu.coil_writes] == [(0, True), (0, True)]
    assert rig.emu.count("open") == 2


# --- coil state is part of the truth -------------------------------------------------------------------------


async def test_a_coil_left_on_by_a_crash_is_reset_before_inputs_are_reported(rig, caplog):
    # the daemon died inside a pulse: the module still holds the OPEN coil ON
    rig.emu.barrier(1).coils[0] = True
    barrier = rig.barrier(pulse_ms=50)
    rec = rig.run(barrier)
    await rec.wait(IoSnapshot)
    assert [(w.coil, w.value) for w in rig.emu.coil_writes] == [(0, False)]
    assert "OPEN coil 0 found ON" in caplog.text and barrier.coils_reset == 1
    await barrier.open()  # a rising edge again: the arm moves
    await rec.wait(IoSnapshot, lambda s: s.up_limit)
    assert rig.emu.count("open") == 1


async def test_a_command_onto_a_coil_of_unknown_level_resets_it_first(make_rig):
    rig = await make_rig("tcp")
    rig.emu.barrier(1).coils[1] = True  # CLOSE left ON; the command comes before the first poll
    barrier = rig.barrier(pulse_ms=50)
    await barrier.close()
    await barrier.aclose()
    assert [(w.coil, w.value) for w in rig.emu.coil_writes] == [(1, False), (1, True), (1, False)]
    assert rig.emu.count("close") == 1


async def test_a_coil_that_stays_on_after_off_is_a_fault(make_rig):
    rig = await make_rig("tcp")
    model = rig.emu.barrier(1)
    model.coils[1] = True
    plain = model.write_coil
    model.write_coil = lambda coil, value, now: [] if coil == 1 and not value else plain(coil, value, now)
    rec = rig.run(rig.barrier())
    fault = await rec.wait(DeviceFault)
    assert "CLOSE coil stays ON after OFF" in fault.reason
    assert not rec.of(IoSnapshot)  # nothing is reported while a command coil is out of our hands


async def test_without_coil_readback_every_coil_is_written_off_at_start(make_rig):
    rig = await make_rig("tcp")
    rec = rig.run(rig.barrier(coil_readback=False))
    await rec.wait(IoSnapshot)
    assert sorted((w.coil, w.value) for w in rig.emu.coil_writes) == [(0, False), (1, False), (2, False)]


# --- the bus owner in isolation ------------------------------------------------------------------------------


def test_frame_gap():
    assert bits_per_char(8, "N", 1) == 10 and bits_per_char(8, "E", 1) == 11
    assert frame_gap_s(9600) == pytest.approx(0.003646, abs=1e-6)
    assert frame_gap_s(19200, 11) == pytest.approx(0.002005, abs=1e-6)
    assert frame_gap_s(38400) == frame_gap_s(115200) == 0.00175


def test_registry_shares_buses_by_line():
    reg = ModbusBusRegistry()
    rtu = dict(kind="modbus_rtu", port="/dev/ttyUSB0", baudrate=9600)
    a = reg.bus_for(ModbusRtuBarrier(unit=1, timeout_s=0.2, **rtu))
    b = reg.bus_for(ModbusRtuBarrier(unit=2, timeout_s=0.4, **rtu))
    assert a is b and a.timeout_s == 0.4
    with pytest.raises(ValueError, match="disagree"):
        reg.bus_for(ModbusRtuBarrier(kind="modbus_rtu", port="/dev/ttyUSB0", baudrate=38400, unit=3))
    assert reg.bus_for(ModbusRtuBarrier(kind="modbus_rtu", port="/dev/ttyUSB1")) is not a
    tcp = dict(kind="modbus_tcp", host="10.0.0.5", tcp_port=502)
    assert reg.bus_for(ModbusTcpBarrier(unit=1, **tcp)) is reg.bus_for(ModbusTcpBarrier(unit=2, **tcp))
    assert reg.bus_for(ModbusTcpBarrier(unit=1, **tcp)).gap_s == 0


async def test_slot_serves_a_waiting_command_before_waiting_polls():
    slot, order = _Slot(), []

    async def user(name: str, priority: bool) -> None:
        await slot.acquire(priority)
        order.append(name)
        await asyncio.sleep(0.01)
        slot.release()

    await slot.acquire(False)  # a poll is on the wire
    tasks = [asyncio.create_task(user(n, p)) for n, p in [("poll1", False), ("poll2", False), ("cmd", True)]]
    cancelled = asyncio.create_task(user("gone", True))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    slot.release()
    await asyncio.gather(*tasks)
    await asyncio.gather(cancelled, return_exceptions=True)
    assert order == ["cmd", "poll1", "poll2"]
    await slot.acquire(False)  # free again
    slot.release()


async def test_slot_serves_an_open_before_another_lanes_close_or_pulse_end_and_those_before_polls():
    from lanectl.adapters.modbus_barrier import COMMAND, POLL, URGENT

    slot, order = _Slot(), []

    async def user(name: str, rank: int) -> None:
        await slot.acquire(rank)
        order.append(name)
        slot.release()

    await slot.acquire(POLL)  # a poll is on the wire
    tasks = [asyncio.create_task(user(n, r)) for n, r in
             [("poll", POLL), ("pulse end", COMMAND), ("close", COMMAND), ("open", URGENT)]]
    await asyncio.sleep(0)
    slot.release()
    await asyncio.gather(*tasks)
    assert order == ["open", "pulse end", "close", "poll"]


class _FakeClient:
    """Stands in for a pymodbus client: answers at once, remembers when each request went out."""

    connected = True

    def __init__(self) -> None:
        self.sent: list[float] = []

    async def read_discrete_inputs(self, address, *, count, device_id):
        self.sent.append(time.monotonic())
        return _Bits([False] * count)

    def close(self) -> None:
        pass


@dataclass
class _Bits:
    bits: list

    def isError(self) -> bool:
        return False


async def test_bus_keeps_the_inter_frame_gap():
    client = _FakeClient()
    bus = ModbusBus("fake", lambda _t: client, gap_s=0.01)
    bus.timeout_s = 0.3
    for _ in range(6):
        assert await bus.read_bits(1, 0, 5) == [False] * 5
    gaps = [b - a for a, b in zip(client.sent, client.sent[1:])]
    assert min(gaps) >= 0.0095, gaps
    await bus.close()


async def test_bus_reports_a_missing_answer_as_bus_error():
    class Silent(_FakeClient):
        async def read_discrete_inputs(self, address, *, count, device_id):
            await asyncio.sleep(10)

    bus = ModbusBus("silent", lambda _t: Silent(), gap_s=0.0)
    bus.timeout_s = 0.05  # the outer guard (timeout + 1 s) fires: pymodbus' own timeout is not in play here
    t0 = time.monotonic()
    with pytest.raises(BusError, match="no answer"):
        await bus.read_bits(1, 0, 5, retries=0)
    assert time.monotonic() - t0 < 1.5
    await bus.close()


# --- the plate reader's hint: keep polls off the bus while a decision is coming ---------------------------------


async def test_a_poll_queued_for_the_bus_when_the_hint_comes_lets_the_command_go_first(make_rig):
    """Two lanes on one line: lane 2's poll is already waiting for the slot (behind lane 1's) when lane 1's plate
    line begins. It must not take the line then: the OPEN would wait for it (~19 ms at 9600 baud)."""
    rig = await make_rig("tcp", units=(1, 2))
    one, two = rig.barrier(1, poll_ms=20), rig.barrier(2, poll_ms=20)
    rec = rig.run(two)
    await rec.wait(IoSnapshot)
    reads: list[float] = []
    read = two._read

    async def counted(bus):  # type: ignore[no-untyped-def]
        reads.append(time.monotonic())
        return await read(bus)

    two._read = counted  # type: ignore[method-assign]
    bus = one.bus
    assert bus is two.bus
    async with bus.exclusive():  # lane 1's poll on the wire ...
        async with asyncio.timeout(2):
            while not bus._slot._waiters:  # ... and lane 2's queued behind it
                await asyncio.sleep(0.005)
        one.expect_command(0.3)  # the plate line's first bytes
    await one.open()  # lane 2's poll was handed the slot first: it must pass it on, unread
    opened = rig.emu.commands[-1].t
    assert rig.emu.commands[-1].name == "open" and not [t for t in reads if t < opened]


async def test_on_a_line_too_slow_for_poll_ms_the_hint_still_keeps_every_units_poll_off_it(make_rig):
    """8 units on one 9600-baud line, each configured to be polled every 20 ms: one poll takes the line ~22 ms,
    so each unit is read only every ~175 ms and is always "overdue" by poll_ms. A plate line's hint must still
    keep their polls off the line, or the OPEN waits behind one nearly every time (8 lanes on one bus cost
    1.4x one lane's latency at p50): the guard against starving the loops counts from the round of polls the
    line can give, not from poll_ms alone."""
    from lanectl.adapters.modbus_barrier import MAX_POLL_HOLD_S

    units = tuple(range(1, 9))
    rig = await make_rig("rtu-9600", units=units)
    barriers = [rig.barrier(u, poll_ms=20) for u in units]
    for rec in [rig.run(b) for b in barriers]:
        await rec.wait(IoSnapshot, timeout=5.0)
    await asyncio.sleep(0.6)  # a few rounds: the bus has timed its polls
    assert barriers[0].bus.poll_round_s() > 0.12  # ~8 x 22 ms
    hint = time.monotonic()
    barriers[0].expect_command(0.4)
    await asyncio.sleep(0.4)
    # the poll on the wire when the hint came ends within ~25 ms; none may start until a unit's inputs went
    # unread a whole round + MAX_POLL_HOLD_S (before the fix: poll_ms + MAX_POLL_HOLD_S = 270 ms after its
    # last read, i.e. within ~100 ms of the hint for the units read longest ago)
    started = [round((t - hint) * 1000) for _, t in rig.emu.input_reads if hint + 0.04 < t < hint + 0.2]
    assert started == [], f"polls answered {started} ms after the hint"
    assert MAX_POLL_HOLD_S >= 0.2  # the window above assumes it


async def test_a_close_and_a_pulse_end_wait_while_a_plate_line_announces_an_open(make_rig):
    """Lane 2's CLOSE and the end of lane 1's OPEN pulse are not urgent: while a plate line announces a command
    they keep off the line (the OPEN would wait ~20 ms behind either at 9600 baud); the OPEN goes at once, and
    once it has gone they follow."""
    rig = await make_rig("tcp", units=(1, 2))
    one, two = rig.barrier(1, pulse_ms=30), rig.barrier(2, pulse_ms=30)
    for rec in (rig.run(one), rig.run(two)):
        await rec.wait(IoSnapshot)
    t0 = time.monotonic()
    one.expect_command(0.2)
    two.expect_command(0.2)  # a second plate line, at lane 2: still arriving when lane 1 opens
    close = asyncio.create_task(two.close())
    await asyncio.sleep(0.1)
    assert not [w for w in rig.emu.coil_writes if w.t >= t0], "the CLOSE went during the plate lines"
    await one.open()
    await close
    await one.aclose()
    writes = [(w.unit, w.coil, w.value, w.t - t0) for w in rig.emu.coil_writes if w.t >= t0]
    assert [(u, c, v) for u, c, v, _ in writes][0] == (1, 0, True), writes  # the OPEN first, at once
    later = {(u, c, v): t for u, c, v, t in writes[1:]}
    # lane 2's line still holds them: the CLOSE and the OPEN's OFF wait for it
    assert later[(2, 1, True)] >= 0.19 and later[(1, 0, False)] >= 0.19, writes


async def test_a_lanes_own_open_is_not_held_behind_its_deferred_close_and_pulse_end(make_rig):
    """The next car's plate line at the same lane announces its OPEN while the lane's CLOSE is held back: the
    OPEN waits for the pulse lock, so the CLOSE and its pulse end go at once instead of after the hint."""
    rig = await make_rig("tcp")
    one = rig.barrier(1, pulse_ms=30)
    await rig.run(one).wait(IoSnapshot)
    t0 = time.monotonic()
    one.expect_command(0.4)
    close = asyncio.create_task(one.close())  # held back by the hint
    await asyncio.sleep(0.02)
    await one.open()
    await close
    writes = [(w.coil, w.value, round(w.t - t0, 3)) for w in rig.emu.coil_writes if w.t >= t0]
    assert [(c, v) for c, v, _ in writes[:3]] == [(1, True), (1, False), (0, True)], writes  # CLOSE ON, OFF, OPEN
    assert writes[2][2] < 0.25, writes  # not after the 0.4 s hint


async def test_a_lanes_hint_ends_with_its_open_while_another_lanes_still_holds(make_rig):
    """Once the OPEN a plate line announced has gone, that line's hold ends (the polls it kept waiting go now, not
    COMMAND_HINT_S later); a plate line still arriving at another lane keeps holding."""
    rig = await make_rig("tcp", units=(1, 2))
    one, two = rig.barrier(1, poll_ms=20), rig.barrier(2, poll_ms=20)
    for rec in (rig.run(one), rig.run(two)):
        await rec.wait(IoSnapshot)
    one.expect_command(0.3)
    two.expect_command(0.1)
    await one.open()
    assert 0.05 < one.bus.polls_held_for() <= 0.1  # lane 2's line only
    t0 = time.monotonic()
    await asyncio.sleep(0.25)
    first = min(t for _, t in rig.emu.input_reads if t > t0)
    assert first - t0 < 0.15, "polls waited for lane 1's hint although its OPEN had gone"


async def test_a_command_hint_holds_polls_but_never_starves_them(make_rig):
    from lanectl.adapters.modbus_barrier import MAX_POLL_HOLD_S

    rig = await make_rig("tcp")
    barrier = rig.barrier(poll_ms=20)
    rec = rig.run(barrier)
    await rec.wait(IoSnapshot)
    held_since = time.monotonic()
    barrier.expect_command(0.15)
    rig.emu.set_loop(1, "arming", True)
    await rec.wait(IoSnapshot, lambda s: s.arming)
    seen_after = time.monotonic() - held_since
    assert seen_after >= 0.12, "polls went on during the hold"

    # a noisy camera line re-arms the hold every few ms: the loops are still read within the cap
    async def noise() -> None:
        while True:
            barrier.expect_command(0.08)
            await asyncio.sleep(0.005)
    task = asyncio.create_task(noise())
    try:
        await asyncio.sleep(0.1)  # the hold is in force and no poll is on the wire
        start, seen = time.monotonic(), len(rec.events)
        rig.emu.set_loop(1, "arming", False)
        await rec.wait(IoSnapshot, lambda s: not s.arming, start=seen, timeout=2.0)
        waited = time.monotonic() - start
        assert 0.05 < waited < 0.02 + MAX_POLL_HOLD_S + 0.1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- a saturated line: 8 units at 9600 baud leave no time to waste, and no frame may sit in front of an OPEN ----


async def test_polls_held_for_a_plate_line_resume_as_soon_as_its_open_has_gone(make_rig):
    """A poll due during a hold sleeps; once the OPEN the plate line announced has gone it is read at once, not
    when the hold would have run out (on a line polled at 200 ms with 8 units on it, those sleeping polls fell
    behind, until the starvation guard put them in front of another car's OPEN)."""
    rig = await make_rig("tcp")
    barrier = rig.barrier(poll_ms=600)
    await rig.run(barrier).wait(IoSnapshot)  # just read: the next poll is due in 0.6 s
    barrier.expect_command(2.0)  # the poll falls due inside this hold and waits
    await asyncio.sleep(0.8)
    await barrier.open()
    opened = rig.emu.commands[-1].t
    async with asyncio.timeout(2):
        while not [t for _, t in rig.emu.input_reads if t > opened]:
            await asyncio.sleep(0.01)
    first = min(t for _, t in rig.emu.input_reads if t > opened)
    # before: the poll slept out min(hold, poll_ms) = 0.6 s from when it fell due, i.e. 0.4 s after the OPEN
    assert first - opened < 0.2, f"inputs read {first - opened:.3f} s after the OPEN"


async def test_a_close_queued_for_the_line_when_a_plate_line_begins_lets_the_open_go_first(make_rig):
    """Lane 2's CLOSE already waits for the slot (behind a frame on the wire) when lane 1's plate line begins:
    with the slot in hand it must let the OPEN go first (its check and write would hold the line ~45 ms at
    9600 baud), then close."""
    rig = await make_rig("tcp", units=(1, 2))
    one, two = rig.barrier(1), rig.barrier(2)
    t0 = time.monotonic()
    bus = one.bus
    async with bus.exclusive():  # a frame on the wire ...
        close = asyncio.create_task(two.close())
        async with asyncio.timeout(2):
            while not bus._slot._waiters:  # ... and the CLOSE queued behind it
                await asyncio.sleep(0.005)
        one.expect_command(0.5)  # lane 1's plate line begins
    await one.open()
    await close
    writes = [(w.unit, w.coil, w.value) for w in rig.emu.coil_writes if w.t >= t0 and w.value]
    assert writes == [(1, 0, True), (2, 1, True)], writes  # the OPEN, then the CLOSE (not 0.5 s later)
    assert rig.emu.coil_writes[-1].t - rig.emu.commands[0].t < 0.3


async def _close_meets_a_plate_line_during_its_check(rig, one: ModbusBarrier, two: ModbusBarrier,
                                                     car_comes: bool) -> asyncio.Task:
    """Lane 2's CLOSE reads its loops; while that read is on the wire lane 1's plate line begins and its OPEN
    follows. With `car_comes`, a car rolls onto lane 2's safety loop right after the check."""
    read, checks = two._read, []

    async def check(bus):  # type: ignore[no-untyped-def]
        if not checks:
            one.expect_command(0.5)
            checks.append(asyncio.create_task(one.open()))
        snap = await read(bus)
        if car_comes:
            rig.emu.set_loop(2, "safety", True)
        return snap

    two._read = check  # type: ignore[method-assign]
    return asyncio.create_task(two.close())


async def test_a_plate_line_during_a_closes_check_lets_its_open_go_before_the_close_write(make_rig):
    """The CLOSE's safety check and its write were one slot: an OPEN announced during the check waited for the
    write too (~45 ms at 9600 baud in all). Now the OPEN goes between them, and the CLOSE checks the loops
    again before it writes (never a write after a check that another frame followed)."""
    rig = await make_rig("tcp", units=(1, 2))
    one, two = rig.barrier(1), rig.barrier(2)
    t0 = time.monotonic()
    await (await _close_meets_a_plate_line_during_its_check(rig, one, two, car_comes=False))
    writes = [(w.unit, w.coil, w.t) for w in rig.emu.coil_writes if w.t >= t0 and w.value]
    assert [(u, c) for u, c, _ in writes] == [(1, 0), (2, 1)], writes
    opened, closed = writes[0][2], writes[1][2]
    assert [t for u, t in rig.emu.input_reads if u == 2 and opened < t < closed], "no fresh check after the OPEN"


async def test_a_car_under_the_arm_while_another_lanes_open_goes_between_the_check_and_write_stops_the_close(
        make_rig):
    """The split must not weaken the CLOSE's guard: a car that reaches the safety loop while the other lane's OPEN
    is on the line is seen by the second check, and the CLOSE is refused (nothing written)."""
    rig = await make_rig("tcp", units=(1, 2))
    one, two = rig.barrier(1), rig.barrier(2)
    t0 = time.monotonic()
    close = await _close_meets_a_plate_line_during_its_check(rig, one, two, car_comes=True)
    with pytest.raises(BarrierUnsafe, match="safety loop"):
        await close
    assert [(w.unit, w.coil) for w in rig.emu.coil_writes if w.t >= t0 and w.value] == [(1, 0)]


async def test_a_pulse_end_queued_for_the_line_when_a_plate_line_begins_lets_the_open_go_first(make_rig):
    """Lane 2's OPEN pulse ends (its OFF queued behind a frame on the wire) as lane 1's plate line begins: the OFF
    lets lane 1's OPEN go first, then follows."""
    rig = await make_rig("tcp", units=(1, 2))
    one, two = rig.barrier(1), rig.barrier(2, pulse_ms=30)
    await two.open()
    t0 = time.monotonic()
    bus = one.bus
    async with bus.exclusive():  # a frame on the wire when the OFF falls due ...
        async with asyncio.timeout(2):
            while not bus._slot._waiters:  # ... and the OFF queued behind it
                await asyncio.sleep(0.005)
        one.expect_command(0.5)  # lane 1's plate line begins
    await one.open()
    await two.aclose()
    writes = [(w.unit, w.coil, w.value) for w in rig.emu.coil_writes if w.t >= t0]
    assert writes[:2] == [(1, 0, True), (2, 0, False)], writes
