"""A Modbus IO module with barrier physics behind it, on a real pymodbus server (RTU on a tty or TCP).

One server hosts one or more barriers by unit id (two lanes' modules on one RS-485 line is common). Each
barrier follows the lane point map (PointMap below, lane-hardware.md's default): coils are pulse inputs of the barrier
controller (OPEN / CLOSE / STOP act on the rising edge), discrete inputs are the loops, the limits and the
anti-smash sensor. A simulated car drives the loops through `set_loop` / `set_anti_smash`.

What the rig needs to measure is recorded on a monotonic clock: every coil write (`coil_writes`), every
command edge (`commands`, `on_command`), and the physics events (`events`: up_limit, down_limit, reversed,
close_refused, auto_close, arm_hit). `close_refused` and `arm_hits` are how daemon tests prove the safety
invariant: a correct daemon never sends CLOSE while a car is under the arm, so both stay 0.

On a serial line the server's receiver, like a real RS-485 device, treats a silence as the end of a frame,
so a partial frame (a port opened mid-frame) cannot keep pymodbus' RTU framer out of step.

Coil writes are observed with the SimDevice action callback: the server copies its context into its own
core, so overriding a data block's setValues would never be called (see shared/notes/pymodbus-3.16.md).

Standalone:  python -m hil.emulators.barrier_io --tcp 0 | --serial PATH [--baud 9600] [--units 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Optional

from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice


log = logging.getLogger("hil.barrier_io")

LoopName = Literal["arming", "safety"]
CommandHook = Callable[[int, str, float], None]

_WRITE_COIL_FCS = (5, 15)
_READ_COIL_FC = 1
_READ_INPUTS_FC = 2


@dataclass(frozen=True)
class Physics:
    rise_s: float = 1.0  # fully down -> fully up
    fall_s: float = 1.0
    auto_close_s: Optional[float] = None  # lower by itself after this long fully up with all loops clear
    # The controller's own loop protection: refuse / reverse a CLOSE while the safety loop or anti-smash is
    # occupied. Set False to model a barrier that trusts the PC blindly: then a wrong CLOSE becomes an arm_hit.
    safety_reverse: bool = True
    coil_auto_reset_s: Optional[float] = None  # module "pulse mode": a coil drops by itself after this


@dataclass(frozen=True)
class BarrierEvent:
    unit: int
    # open / close / stop (coil edges), up_limit, down_limit, reversed, close_refused, auto_close, arm_hit, jammed
    name: str
    t: float  # time.monotonic()


@dataclass(frozen=True)
class CoilWrite:
    unit: int
    coil: int
    value: bool
    t: float


@dataclass(frozen=True)
class PointMap:
    """Modbus addresses (0-based) of the IO module, with the default map of lane-hardware.md: coils 0/1/2
    pulse OPEN/CLOSE/STOP; discrete inputs 0 arming loop, 1 safety loop, 2 up limit, 3 down limit, 4 anti-smash
    (None: no anti-smash sensor). Anything with these attribute names (e.g. the daemon's own point map from a
    lane YAML) works in its place."""

    open: int = 0
    close: int = 1
    stop: int = 2
    arming: int = 0
    safety: int = 1
    up_limit: int = 2
    down_limit: int = 3
    anti_smash: Optional[int] = 4


@dataclass
class BarrierModel:
    """One barrier and the IO module in front of it. Position 0.0 = down, 1.0 = up."""

    unit: int
    points: PointMap
    physics: Physics
    position: float = 0.0
    motion: int = 0  # +1 rising, -1 falling, 0 still
    arming: bool = False
    safety: bool = False
    anti_smash: bool = False
    coils: dict[int, bool] = field(default_factory=dict)
    close_refused: int = 0
    arm_hits: int = 0
    auto_closes: int = 0
    jam_at: Optional[float] = None  # the arm sticks here on its way up (ice, a broken spring): no up limit
    _clear_since: Optional[float] = None
    _hitting: bool = False
    _coil_off_at: dict[int, float] = field(default_factory=dict)

    @property
    def up_limit(self) -> bool:
        return self.position >= 1.0

    @property
    def down_limit(self) -> bool:
        return self.position <= 0.0

    @property
    def occupied(self) -> bool:
        """Something is under the arm: the barrier must not come down."""
        return self.safety or self.anti_smash

    def write_coil(self, coil: int, value: bool, now: float) -> list[str]:
        """Apply a coil write; return the events it caused (a command on a rising edge)."""
        was = self.coils.get(coil, False)
        self.coils[coil] = value
        self._coil_off_at.pop(coil, None)
        if value and self.physics.coil_auto_reset_s is not None:
            self._coil_off_at[coil] = now + self.physics.coil_auto_reset_s
        if not value or was:
            return []
        name = {self.points.open: "open", self.points.close: "close", self.points.stop: "stop"}.get(coil)
        return [name, *self.command(name)] if name else []

    def command(self, name: str) -> list[str]:
        if name == "open":
            self.motion = 1 if self.position < 1.0 else 0
            self._clear_since = None
        elif name == "stop":
            self.motion = 0
        elif name == "close":
            if self.occupied:
                self.close_refused += 1
                if self.physics.safety_reverse:
                    if self.motion < 0:
                        self.motion = 1
                    return ["close_refused"]
                # An unprotected barrier obeys: the tick will record the arm hit.
            self.motion = -1 if self.position > 0.0 else 0
        return []

    def tick(self, now: float, dt: float) -> list[str]:
        events: list[str] = []
        for coil, t_off in list(self._coil_off_at.items()):
            if now >= t_off:
                self.coils[coil] = False
                del self._coil_off_at[coil]
        if self.motion < 0 and self.occupied:
            if self.physics.safety_reverse:
                self.motion = 1
                events.append("reversed")
            elif not self._hitting:
                self._hitting = True
                self.arm_hits += 1
                events.append("arm_hit")
        if not (self.motion < 0 and self.occupied):
            self._hitting = False
        if self.motion > 0:
            self.position = min(1.0, self.position + dt / self.physics.rise_s)
            if self.jam_at is not None and self.position >= self.jam_at:
                self.position, self.motion = self.jam_at, 0
                events.append("jammed")
            elif self.position >= 1.0:
                self.motion = 0
                events.append("up_limit")
        elif self.motion < 0:
            self.position = max(0.0, self.position - dt / self.physics.fall_s)
            if self.position <= 0.0:
                self.motion = 0
                events.append("down_limit")
        events += self._auto_close(now)
        return events

    def _auto_close(self, now: float) -> list[str]:
        if self.physics.auto_close_s is None:
            return []
        if not (self.up_limit and self.motion == 0) or self.arming or self.occupied:
            self._clear_since = None  # restarts when the car has cleared the loops
            return []
        if self._clear_since is None:
            self._clear_since = now
            return []
        if now - self._clear_since < self.physics.auto_close_s:
            return []
        self._clear_since = None
        self.auto_closes += 1
        self.motion = -1
        return ["auto_close"]

    def input_levels(self) -> dict[int, bool]:
        p = self.points
        levels = {
            p.arming: self.arming,
            p.safety: self.safety,
            p.up_limit: self.up_limit,
            p.down_limit: self.down_limit,
        }
        if p.anti_smash is not None:
            levels[p.anti_smash] = self.anti_smash
        return levels


def _bit_count(addresses: Iterable[int]) -> int:
    """Bits in a block covering the addresses, a multiple of 16 (the simulator packs bits in registers)."""
    top = max(addresses) + 1
    return max(16, (top + 15) // 16 * 16)


def _pack_into(registers: list[int], levels: dict[int, bool]) -> None:
    """Overwrite a bit block's packed words (the last element is the simulator's end marker)."""
    for i in range(len(registers) - 1):
        registers[i] = sum(1 << b for b in range(16) if levels.get(i * 16 + b, False))


class _SilenceResyncHandler(ServerRequestHandler):
    """A request handler that, like a real RS-485 receiver, ends a frame at a silence on the line.

    pymodbus' RTU framer ignores timing: a partial frame left in its buffer (a port opened mid-frame, a
    cut cable) is glued to the next request, the CRC fails, the whole buffer is dropped mid-frame, and the
    tail of that request becomes the garbage in front of the next one -- it can stay out of step for good.
    """

    def __init__(self, owner: "_RtuDeviceServer") -> None:
        super().__init__(owner, owner.trace_packet, owner.trace_pdu, owner.trace_connect)
        self._silence_s = owner.silence_s
        self._last_rx = 0.0

    def datagram_received(self, data: bytes, addr: tuple | None) -> None:
        now = time.monotonic()
        if self.recv_buffer and now - self._last_rx > self._silence_s:
            log.debug("dropped %d bytes of an incomplete frame after %.1f ms of silence",
                     len(self.recv_buffer), (now - self._last_rx) * 1000)
            self.recv_buffer = b""  # the line went quiet mid-frame: that frame is over, incomplete
        self._last_rx = now
        super().datagram_received(data, addr)


class _RtuDeviceServer(ModbusSerialServer):
    def __init__(self, *args, silence_s: float, **kwargs) -> None:
        self.silence_s = silence_s
        super().__init__(*args, **kwargs)

    def callback_new_connection(self) -> ServerRequestHandler:
        return _SilenceResyncHandler(self)


class BarrierEmulator:
    """Barrier IO modules by unit id on one pymodbus server; physics run as an asyncio task."""

    def __init__(
        self,
        units: Iterable[int] = (1,),
        *,
        points: PointMap = PointMap(),
        physics: Physics = Physics(),
        tick_s: float = 0.01,
        on_command: Optional[CommandHook] = None,
    ) -> None:
        self.points, self.physics, self.tick_s = points, physics, tick_s
        self.barriers = {u: BarrierModel(u, points, physics) for u in units}
        self.on_command = on_command
        self.events: list[BarrierEvent] = []
        self.coil_writes: list[CoilWrite] = []
        self.input_reads: list[tuple[int, float]] = []  # (unit, monotonic time) of every input read (FC 2)
        self.ignored_requests = 0  # requests for unit ids this line does not host (answered by silence)
        self.port: Optional[int] = None  # TCP port once started
        self._server: Optional[ModbusTcpServer | ModbusSerialServer] = None
        self._tasks: list[asyncio.Task] = []
        self._serial: Optional[dict] = None
        self._link_up = False

    # --- what a simulated car and the tests use -------------------------------------------------------

    def barrier(self, unit: int = 1) -> BarrierModel:
        return self.barriers[unit]

    def set_loop(self, unit: int, loop: LoopName, occupied: bool) -> None:
        if loop not in ("arming", "safety"):
            raise ValueError(f"unknown loop {loop!r}")
        setattr(self.barriers[unit], loop, occupied)

    def set_anti_smash(self, unit: int, tripped: bool) -> None:
        self.barriers[unit].anti_smash = tripped

    @property
    def commands(self) -> list[BarrierEvent]:
        """Coil command edges (open / close / stop) in the order the module saw them."""
        return [e for e in self.events if e.name in ("open", "close", "stop")]

    def count(self, name: str, unit: Optional[int] = None) -> int:
        return sum(1 for e in self.events if e.name == name and (unit is None or e.unit == unit))

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait (at tick rate) until predicate() is true; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(self.tick_s)

    async def wait_event(self, unit: int, name: str, timeout: float = 5.0, after: float = 0.0) -> BarrierEvent:
        """The first event `name` of `unit` recorded at or after monotonic time `after`."""
        found: list[BarrierEvent] = []

        def seen() -> bool:
            found[:] = [e for e in self.events if e.unit == unit and e.name == name and e.t >= after][:1]
            return bool(found)

        await self.wait_until(seen, timeout)
        return found[0]

    # --- server lifecycle ---------------------------------------------------------------------------

    async def start_tcp(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Serve Modbus TCP; port 0 picks a free port. Returns the port."""
        self._ensure_physics()
        server = ModbusTcpServer(self._devices(), address=(host, port), trace_pdu=self._trace_pdu)
        await server.serve_forever(background=True)
        self._server = server
        self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        log.info("barrier IO units %s on tcp %s:%s", sorted(self.barriers), host, self.port)
        return self.port

    async def start_serial(
        self, path: str, *, baudrate: int = 9600, bytesize: int = 8, parity: str = "N", stopbits: int = 1
    ) -> None:
        """Serve Modbus RTU on a tty path; reopens the port by itself after it vanishes and comes back."""
        self._ensure_physics()
        self._serial = dict(port=path, baudrate=baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits)
        await self._open_serial()
        self._spawn(self._keep_serial_open(), "barrier-io serial keeper")
        log.info("barrier IO units %s on %s @%d", sorted(self.barriers), path, baudrate)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._shutdown_server()

    async def __aenter__(self) -> "BarrierEmulator":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- internals -----------------------------------------------------------------------------------

    def _devices(self) -> list[SimDevice]:
        p = self.points
        n_coils = _bit_count([p.open, p.close, p.stop])
        n_inputs = _bit_count(BarrierModel(0, p, self.physics).input_levels())
        devices = []
        for unit in self.barriers:
            blocks = (
                [SimData(0, values=[False] * n_coils, datatype=DataType.BITS)],
                [SimData(0, values=[False] * n_inputs, datatype=DataType.BITS)],
                [SimData(0, datatype=DataType.INVALID)],  # no registers on this module
                [SimData(0, datatype=DataType.INVALID)],
            )
            devices.append(SimDevice(id=unit, simdata=blocks, action=self._action_for(unit)))
        return devices

    def _action_for(self, unit: int):
        async def action(fc, _start, address, _count, registers, set_values):
            # The model is the truth; the simulator's registers are refreshed from it on every access, so a
            # re-created server (after a serial reconnect) loses nothing.
            model = self.barriers[unit]
            now = time.monotonic()
            if fc in _WRITE_COIL_FCS and set_values is not None:
                for i, value in enumerate(set_values):
                    self.coil_writes.append(CoilWrite(unit, address + i, bool(value), now))
                    self._record(unit, model.write_coil(address + i, bool(value), now), now)
                return None  # pymodbus then stores the written bits itself
            if fc == _READ_INPUTS_FC:
                self.input_reads.append((unit, now))
                _pack_into(registers, model.input_levels())
            elif fc in (_READ_COIL_FC, *_WRITE_COIL_FCS):
                _pack_into(registers, model.coils)
            return None

        return action

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> Optional[ModbusPDU]:
        # A request for a unit this line does not host would raise KeyError deep in the server core (logged
        # traceback per poll). On RS-485 an absent unit is simply silent: drop the request here.
        if sending or pdu.dev_id in self.barriers:
            return pdu
        self.ignored_requests += 1
        return None  # type: ignore[return-value]

    def _record(self, unit: int, names: list[str], now: float) -> None:
        for name in names:
            self.events.append(BarrierEvent(unit, name, now))
            log.info("unit %d: %s", unit, name)
            if name in ("open", "close", "stop") and self.on_command is not None:
                self.on_command(unit, name, now)

    def _ensure_physics(self) -> None:
        if not any(t.get_name() == "barrier-io physics" for t in self._tasks):
            self._spawn(self._physics(), "barrier-io physics")

    def _spawn(self, coro, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _physics(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            dt, last = now - last, now
            for unit, model in self.barriers.items():
                self._record(unit, model.tick(now, dt), now)

    def _trace_connect(self, up: bool) -> None:
        self._link_up = up

    async def _open_serial(self) -> bool:
        assert self._serial is not None
        if not os.path.exists(self._serial["port"]):
            return False
        # t3.5 of the line, but never below 100 ms: a pty relay on a busy host stalls for tens of ms now and
        # then, which must not cut a frame in two. Longer only delays the resync after garbage; it stays well
        # below a master's answer timeout, so the line is in step again by the master's next try.
        line = self._serial
        chars_35 = 3.5 * (1 + line["bytesize"] + (line["parity"] != "N") + line["stopbits"])
        server = _RtuDeviceServer(
            self._devices(),
            silence_s=max(0.1, chars_35 / self._serial["baudrate"]),
            framer=FramerType.RTU,
            trace_pdu=self._trace_pdu,
            trace_connect=self._trace_connect,
            **self._serial,
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError:  # could not open the port (raced with an unplug)
            await server.shutdown()
            return False
        self._server = server
        self._link_up = True
        return True

    async def _keep_serial_open(self) -> None:
        # pymodbus' serial server does not reopen a port that vanished (its relisten only covers sockets).
        while True:
            await asyncio.sleep(0.05)
            if self._link_up:
                continue
            await self._shutdown_server()
            if await self._open_serial():
                log.info("serial port %s reopened", self._serial["port"] if self._serial else "?")

    async def _shutdown_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()


# --- standalone -------------------------------------------------------------------------------------------

_HELP = "commands: '<unit> arming|safety|anti on|off', '<unit> open|close|stop', 'status', 'quit'"


def _handle_line(emu: BarrierEmulator, line: str) -> bool:
    words = line.split()
    if not words:
        return True
    if words[0] == "quit":
        return False
    if words[0] == "status":
        for m in emu.barriers.values():
            print(
                f"unit {m.unit}: position={m.position:.2f} motion={m.motion:+d} arming={m.arming} "
                f"safety={m.safety} anti_smash={m.anti_smash} close_refused={m.close_refused} "
                f"arm_hits={m.arm_hits}"
            )
        return True
    try:
        unit, what = int(words[0]), words[1]
        if what in ("open", "close", "stop"):
            emu._record(unit, [what, *emu.barrier(unit).command(what)], time.monotonic())
        elif what in ("arming", "safety"):
            emu.set_loop(unit, what, words[2] == "on")  # type: ignore[arg-type]
        elif what == "anti":
            emu.set_anti_smash(unit, words[2] == "on")
        else:
            raise ValueError(what)
    except (ValueError, IndexError, KeyError):
        print(_HELP)
    return True


async def _main(args: argparse.Namespace) -> None:
    units = [int(u) for u in args.units.split(",")]
    physics = Physics(rise_s=args.rise, fall_s=args.fall, auto_close_s=args.auto_close)
    emu = BarrierEmulator(units, physics=physics)
    if args.serial:
        await emu.start_serial(args.serial, baudrate=args.baud)
    else:
        port = await emu.start_tcp(args.tcp, host=args.host)
        print(f"listening on {args.host}:{port}", flush=True)
    print(_HELP, flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    stdin = sys.stdin.fileno()

    def on_stdin() -> None:
        line = sys.stdin.readline()
        if not line:  # EOF (e.g. started in the background): keep serving, stop reading
            loop.remove_reader(stdin)
        elif not _handle_line(emu, line):
            done.set()

    try:
        loop.add_reader(stdin, on_stdin)
    except (OSError, ValueError):  # stdin is a regular file or closed: no console commands
        pass
    try:
        await done.wait()
    finally:
        loop.remove_reader(stdin)
        await emu.stop()


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hil.emulators.barrier_io", description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT", help="Modbus TCP port (0 = any free port)")
    where.add_argument("--serial", metavar="PATH", help="tty path for Modbus RTU")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--units", default="1", help="comma separated unit ids, e.g. 1,2")
    ap.add_argument("--rise", type=float, default=1.0)
    ap.add_argument("--fall", type=float, default=1.0)
    ap.add_argument("--auto-close", type=float, default=None, metavar="S")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
