"""The hardware-in-the-loop rig: the devices of a lane, emulated behind real tty paths.

    daemon ── tty ── VirtualCable (pty pairs, optional line speed) ── tty ── emulator
               RS-485 bus     : Modbus RTU barrier IO modules (one unit id per lane), barrier physics
               camera line(s) : one plate camera per lane printing `plate,colour,confidence` lines

`Rig` builds the devices and writes a configuration directory that points the daemon at the daemon-side
paths, so `lanectl run --config DIR` runs against it exactly as on a lane PC. `Car` drives one simulated car
through a lane (arming loop → plate read → waits for the arm → safety loop → gone). Scenarios (YAML, see
hil/scenarios/) are played by hil/scenario.py for the demo and the HIL tests alike.

On a bench, the same emulators open real tty paths instead (see hil/README.md).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from hil.emulators.barrier_io import BarrierEmulator, Physics
from hil.emulators.led_board import LedBoard
from hil.emulators.camera_http import HttpCamera
from hil.emulators.plate_camera import PlateCamera
from hil.platforms import free_port
from hil.wire import CableProcess, VirtualCable

Say = Callable[[str, str], None]  # (lane, text) — the demo prints it, tests ignore it


def board_text(out: Any) -> str:
    """What a driver sees and hears of one board frame: 「line | line」 🔊 speech."""
    shown = " | ".join(line.text for line in out.lines if line.text)
    return " ".join(p for p in (f"「{shown}」" if shown else "", f"🔊 {out.speech}" if out.speech else "",
                                f"QR {out.qr}" if out.qr else "") if p)


@dataclass(frozen=True)
class RigLane:
    id: str
    direction: str  # entry | exit
    unit: int
    camera: str = "serial"  # serial: a plate line on RS-485 | http: a Vzenith-style camera pushing over HTTP


@dataclass
class CarResult:
    plate: str
    lane: str
    opened: bool = False
    passed: bool = False
    t_plate: float = 0.0  # monotonic: the camera starts writing the plate line
    t_open: float = 0.0  # monotonic: the IO module saw the OPEN coil


@dataclass
class Rig:
    workdir: Path
    lanes: list[RigLane]
    baudrate: Optional[int] = 9600  # line-speed emulation on every cable; None: as fast as the ptys go
    physics: Physics = Physics(rise_s=1.0, fall_s=1.0)
    poll_ms: int = 50  # the daemon's input polling period on the barrier bus
    say: Say = lambda lane, text: None
    board_said: Say = lambda lane, text: None  # what a lane's LED/voice board shows and says, as it decodes it
    led_boards: bool = True  # an LED/voice board per lane on its own RS-485 line
    site_overrides: dict[str, Any] = field(default_factory=dict)
    lane_overrides: dict[str, Any] = field(default_factory=dict)  # merged into every lane's rules
    lane_extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # lane id -> top-level keys (payments ...)
    secrets: dict[str, str] = field(default_factory=dict)  # written to the config's secrets file (test keys only)
    bus: Optional[VirtualCable] = None
    io: Optional[BarrierEmulator] = None
    cables: dict[str, VirtualCable] = field(default_factory=dict)
    cameras: dict[str, PlateCamera] = field(default_factory=dict)
    boards: dict[str, LedBoard] = field(default_factory=dict)
    scanners: dict[str, PlateCamera] = field(default_factory=dict)  # exit lanes' booth scanners (line writers)
    http_cameras: dict[str, HttpCamera] = field(default_factory=dict)  # lanes with camera="http"
    lan_port: int = 0  # the daemon's LAN listener, fixed in advance when a camera pushes to it
    camera_passwords: dict[str, str] = field(default_factory=dict)  # lane id -> its camera's basic-auth password
    barrier_tcp: bool = False  # the IO modules on Modbus TCP (one endpoint, a unit id per lane) instead of RS-485
    tcp_port: int = 0  # the Modbus TCP endpoint's port once started
    # benches: the cables' relays run in a process of their own (hil.wire.CableProcess), not as threads of this
    # one; rig.cables stays empty (no unplug/replug)
    cables_in_process: bool = False
    cable_nice: int = 0  # that process's niceness (the devices it stands for have CPUs of their own)
    cable_process: Optional[CableProcess] = None

    @property
    def bus_path(self) -> Path:
        return self.workdir / "dev" / "rs485-bus"

    def camera_path(self, lane_id: str) -> Path:
        return self.workdir / "dev" / f"camera-{lane_id}"

    def board_path(self, lane_id: str) -> Path:
        return self.workdir / "dev" / f"board-{lane_id}"

    def scanner_path(self, lane_id: str) -> Path:
        return self.workdir / "dev" / f"scanner-{lane_id}"

    def _cable(self, name: str, a_link: Path, b_link: Path) -> None:
        if not self.cables_in_process:
            self.cables[name] = VirtualCable(str(a_link), str(b_link), self.baudrate)

    async def _start_cable_process(self, dev: Path) -> None:
        pairs = [] if self.barrier_tcp else [(str(self.bus_path), str(dev / "rs485-io-side"))]
        for lane in self.lanes:
            if lane.camera != "http":
                pairs.append((str(self.camera_path(lane.id)), str(dev / f"camera-{lane.id}-device")))
            if self.led_boards:
                pairs.append((str(self.board_path(lane.id)), str(dev / f"board-{lane.id}-device")))
            if lane.direction == "exit":
                pairs.append((str(self.scanner_path(lane.id)), str(dev / f"scanner-{lane.id}-device")))
        self.cable_process = CableProcess(pairs, self.baudrate, self.cable_nice)
        await self.cable_process.start()

    async def start(self) -> None:
        dev = self.workdir / "dev"
        dev.mkdir(parents=True, exist_ok=True)
        if self.cables_in_process:
            await self._start_cable_process(dev)
        self.io = BarrierEmulator([lane.unit for lane in self.lanes], physics=self.physics)
        if self.barrier_tcp:
            self.tcp_port = await self.io.start_tcp(0)
        else:
            if not self.cables_in_process:
                self.bus = VirtualCable(str(self.bus_path), str(dev / "rs485-io-side"), self.baudrate)
            await self.io.start_serial(str(dev / "rs485-io-side"), baudrate=self.baudrate or 9600)
        if any(lane.camera == "http" for lane in self.lanes) and not self.lan_port:
            self.lan_port = free_port()
        for lane in self.lanes:
            if lane.camera == "http":  # it pushes to the LAN face with basic auth, as a real camera is set up
                password = self.camera_passwords.setdefault(lane.id, secrets.token_urlsafe(18))
                self.http_cameras[lane.id] = HttpCamera(f"http://127.0.0.1:{self.lan_port}/camera/{lane.id}",
                                                        username=f"cam-{lane.id}", password=password)
                await self.http_cameras[lane.id].start()
            else:
                self._cable(lane.id, self.camera_path(lane.id), dev / f"camera-{lane.id}-device")
                camera = PlateCamera(str(dev / f"camera-{lane.id}-device"))
                await camera.open()
                self.cameras[lane.id] = camera
            if self.led_boards:
                self._cable(f"board-{lane.id}", self.board_path(lane.id), dev / f"board-{lane.id}-device")
                board = LedBoard(str(dev / f"board-{lane.id}-device"), baudrate=self.baudrate or 9600)
                board.on_output = lambda out, lane_id=lane.id: self.board_said(lane_id, board_text(out))
                await board.open()
                self.boards[lane.id] = board
            if lane.direction == "exit":
                self._cable(f"scanner-{lane.id}", self.scanner_path(lane.id), dev / f"scanner-{lane.id}-device")
                scanner = PlateCamera(str(dev / f"scanner-{lane.id}-device"))
                await scanner.open()
                self.scanners[lane.id] = scanner

    async def stop(self) -> None:
        for camera in self.cameras.values():
            await camera.close()
        for http_camera in self.http_cameras.values():
            await http_camera.close()
        for board in self.boards.values():
            await board.close()
        for scanner in self.scanners.values():
            await scanner.close()
        if self.io is not None:
            await self.io.stop()
        for cable in [*self.cables.values(), self.bus]:
            if cable is not None:
                cable.close()
        if self.cable_process is not None:
            await self.cable_process.stop()

    async def replug(self, name: str) -> None:
        """Plug a cable back after `rig.cables[name].unplug()`. The cable is made anew, so the emulator on its
        device end reopens it (a real camera, board or scanner never notices: only the PC end was pulled)."""
        self.cables[name].plug()
        devices: dict[str, Any] = {**self.cameras, **{f"board-{k}": v for k, v in self.boards.items()},
                                   **{f"scanner-{k}": v for k, v in self.scanners.items()}}
        device = devices.get(name)
        if device is not None:
            await device.close()
            await device.open()

    def lane(self, lane_id: str) -> RigLane:
        return next(lane for lane in self.lanes if lane.id == lane_id)

    # --- configuration for the daemon ---------------------------------------------------------------------
    def write_config(self, directory: Path, socket: Path) -> Path:
        (directory / "lanes").mkdir(parents=True, exist_ok=True)
        site = {"park_id": "demo", "timezone": "Asia/Shanghai", "database": str(self.workdir / "lanectl.db"),
                "http": {"listen": "127.0.0.1:0"}, "control": {"socket": str(socket)},
                # no free minutes: a car that stays a few seconds still owes the first hour (5 元)
                "tariffs": {"default": {"free_minutes": 0, "first_minutes": 60, "first_fen": 500,
                                        "increment_minutes": 60, "increment_fen": 100,
                                        "no_entry": "fixed", "no_entry_fen": 1000}},
                "vehicles": {"whitelist": {"粤B00001": {"kind": "vip"}}, "blacklist": {"粤B66666": "逃费"},
                             "stored_value": {"粤B77777": 2000}}}
        # fixed when a camera pushes to it; otherwise any free port (the LAN face still opens: it serves /metrics)
        site["lan"] = {"listen": f"127.0.0.1:{self.lan_port}"}
        site.update(self.site_overrides)
        secrets_doc = {**self.secrets, **{f"camera_{lid}_password": pw for lid, pw in self.camera_passwords.items()}}
        if secrets_doc:
            (directory / "secrets.yaml").write_text(yaml.safe_dump(secrets_doc))
            (directory / "secrets.yaml").chmod(0o600)  # as on a lane PC: readable by the daemon's user only
            site["secrets_file"] = "secrets.yaml"
        (directory / "site.yaml").write_text(yaml.safe_dump(site, allow_unicode=True, sort_keys=False))
        for lane in self.lanes:
            baud = self.baudrate or 9600
            barrier = ({"kind": "modbus_tcp", "host": "127.0.0.1", "tcp_port": self.tcp_port} if self.barrier_tcp
                       else {"kind": "modbus_rtu", "port": str(self.bus_path), "baudrate": baud})
            doc = {"id": lane.id, "direction": lane.direction,
                   "devices": {"barrier": {**barrier, "unit": lane.unit, "poll_ms": self.poll_ms, "timeout_s": 0.5},
                               **({"camera": self._camera_section(lane.id)} if lane.camera == "http" else
                                  {"plate_reader": {"kind": "serial_line", "port": str(self.camera_path(lane.id)),
                                                    "baudrate": baud}}),
                               **({"display": {"kind": "led_board", "port": str(self.board_path(lane.id)),
                                               "baudrate": baud}} if self.led_boards else {}),
                               **({"scanner": {"kind": "serial_line", "port": str(self.scanner_path(lane.id)),
                                               "baudrate": baud}} if lane.direction == "exit" else {})},
                   "rules": {"duplicate_window_s": 5, "open_confirm_s": 5, "close_confirm_s": 8,
                             **self.lane_overrides}, **self.lane_extra.get(lane.id, {})}
            (directory / "lanes" / f"{lane.id}.yaml").write_text(
                yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        return directory

    def _camera_section(self, lane_id: str) -> dict[str, Any]:
        return {"kind": "vzenith_http", "allow_from": ["127.0.0.1"],
                "basic_auth": {"username": f"cam-{lane_id}", "password": {"secret": f"camera_{lane_id}_password"}}}

    async def seed_inside(self, database: Path, cars: list[dict[str, Any]]) -> None:
        """Cars that entered before the scenario starts (e.g. this morning), recorded by their entry lane as
        the daemon would have — so an exit can owe a real fee. Call before the daemon starts."""
        from datetime import datetime, timedelta
        from zoneinfo import ZoneInfo

        from lanectl.adapters.store import SqliteStore
        from lanectl.core import effects as fx
        from lanectl.core.lane import LaneState, make_id

        store = SqliteStore(database)
        await store.open()
        try:
            now = datetime.now(ZoneInfo("Asia/Shanghai"))
            for lane in {str(c["lane"]) for c in cars}:
                mine = [c for c in cars if str(c["lane"]) == lane]
                effects: list[fx.Effect] = []
                for seq, car in enumerate(mine, 1):
                    at = now - timedelta(minutes=float(car.get("minutes_ago", 180)))
                    effects.append(fx.NewRecord(make_id(lane, at, seq), lane, "entry", str(car["plate"]),
                                                str(car.get("color", "blue")), at.isoformat(), "inside",
                                                "temporary", "temporary"))
                await store.commit_lane(lane, LaneState(seq=len(mine)).to_dict(), effects, now)
        finally:
            await store.close()

    # --- cars ----------------------------------------------------------------------------------------------
    async def car(self, lane_id: str, plate: str, *, color: str = "blue", wait_open_s: float = 8.0,
                  back_away: bool = True, drive_s: float = 0.2, on_safety_s: float = 0.6) -> CarResult:
        """One car at a lane: arrives, is read, waits for the arm, drives through (or backs away)."""
        assert self.io is not None
        lane = self.lane(lane_id)
        model = self.io.barrier(lane.unit)
        result = CarResult(plate, lane_id)
        self.say(lane_id, f"car {plate or '(no plate)'} arrives at the arming loop")
        self.io.set_loop(lane.unit, "arming", True)
        await asyncio.sleep(0.05)
        after = result.t_plate = time.monotonic()
        if lane.camera == "http":  # the push (with its pictures); the OPEN still comes over the IO module
            reply = await self.http_cameras[lane_id].car(plate, color)
            if reply.status != 200:
                self.say(lane_id, f"camera push answered {reply.status}: {reply.error}")
        else:
            await self.cameras[lane_id].send(plate, color)
        try:
            event = await self.io.wait_event(lane.unit, "open", timeout=wait_open_s, after=after)
            result.t_open, result.opened = event.t, True
            await self.io.wait_until(lambda: model.up_limit, timeout=wait_open_s)
        except TimeoutError:
            if back_away:
                self.say(lane_id, f"barrier stays down; {plate} backs away")
                self.io.set_loop(lane.unit, "arming", False)
            return result
        self.say(lane_id, "barrier up; car drives through")
        await asyncio.sleep(drive_s)
        self.io.set_loop(lane.unit, "safety", True)
        self.io.set_loop(lane.unit, "arming", False)
        await asyncio.sleep(on_safety_s)
        self.io.set_loop(lane.unit, "safety", False)
        result.passed = True
        self.say(lane_id, f"car {plate or '(no plate)'} has passed")
        return result

    async def scan(self, lane_id: str, code: str) -> None:
        """The driver shows a payment code to the booth scanner of an exit lane."""
        self.say(lane_id, f"booth scanner reads a payment code {code[:4]}…")
        await self.scanners[lane_id].send_raw(f"{code}\r\n".encode("ascii"))

    async def wait_open(self, lane_id: str, after: float, timeout: float = 24 * 3600.0) -> None:
        """Until the lane's IO module sees an OPEN coil at or after monotonic time `after`."""
        assert self.io is not None
        await self.io.wait_event(self.lane(lane_id).unit, "open", timeout=timeout, after=after)

    async def wait_down(self, lane_id: str, timeout: float = 10.0) -> bool:
        assert self.io is not None
        model = self.io.barrier(self.lane(lane_id).unit)
        try:
            await self.io.wait_until(lambda: model.down_limit and model.motion == 0, timeout=timeout)
            return True
        except TimeoutError:
            return False
