"""Composition root: the one place that decides which real adapter stands behind each port, builds the daemon
(lanectl/app.py `App`) from a configuration, and runs it until SIGTERM / SIGINT.

    build_app(config)                          the daemon on the real adapters
    build_app(config, store=..., devices=...)  any of them replaced (tests: in-memory twins)
    run_daemon(config)                         `lanectl run`: signals, then App.run until stopped

What App talks to is in `Adapters`, so the whole daemon can be assembled from fakes (tests/unit/
test_bootstrap.py). The uploaders and platform clients App still builds from the configuration (webhook,
Bolink / XFT / tdzn, lanectl/providers/) reach the network only through the injected HTTP session.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import signal
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import aiohttp

from lanectl.adapters import fd_limit
from lanectl.adapters.callback_server import CallbackServer
from lanectl.adapters.camera_http import CameraRelayBarrier, VzenithCamera
from lanectl.adapters.clock import SystemClock
from lanectl.adapters.control_socket import ControlServer
from lanectl.adapters.led_board_display import LedBoardDisplay
from lanectl.adapters.modbus_barrier import ModbusBarrier, ModbusBusRegistry
from lanectl.adapters.serial_lines import BoothScanner, SerialPlateReader
from lanectl.adapters.store import SqliteStore
from lanectl.adapters.systemd_notify import SystemdNotifier
from lanectl.app import Adapters, App
from lanectl.config import Config, LaneConfig
from lanectl.config.devices import VzenithMqttCameraConfig
from lanectl.core import effects as fx
from lanectl.core.plates import DEFAULT_SPECIAL_PREFIXES
from lanectl.service.ports import Clock
from lanectl.service.site_bus import SiteBus
from lanectl.startup import EX_CONFIG, StartupError

if TYPE_CHECKING:  # imported where used: a booth without the site bus or housekeeping never loads paho / apscheduler
    from lanectl.adapters.camera_mqtt import VzenithMqttCamera
    from lanectl.adapters.housekeeping import Housekeeping
    from lanectl.adapters.mqtt_bus import MqttBus


class HardwareDevices:
    """The real lane devices: Modbus barriers (RTU lanes share one owner per bus), serial plate readers and booth
    scanners, and HTTP-pushing cameras (whose relay may be the barrier, and whose replies may carry the board)."""

    def __init__(self, special_prefixes: Sequence[str] = DEFAULT_SPECIAL_PREFIXES) -> None:
        self.buses = ModbusBusRegistry()
        self.special_prefixes = tuple(special_prefixes)  # the site's own non-province plates (vehicles)

    def camera(self, lane: LaneConfig, images_dir: Path, clock: Clock) -> VzenithCamera:
        assert lane.devices.camera is not None
        return VzenithCamera(lane.id, lane.devices.camera, images_dir, clock, special_prefixes=self.special_prefixes)

    def mqtt_camera(self, lane: LaneConfig, images_dir: Path, clock: Clock, bus: SiteBus) -> VzenithMqttCamera:
        from lanectl.adapters.camera_mqtt import VzenithMqttCamera

        assert isinstance(lane.devices.camera, VzenithMqttCameraConfig)
        return VzenithMqttCamera(lane.id, lane.devices.camera, images_dir, clock, bus,
                                 special_prefixes=self.special_prefixes)

    def barrier(self, lane: LaneConfig, camera: Optional[VzenithCamera]) -> Optional[Any]:
        cfg = lane.devices.barrier
        if camera is not None and lane.devices.camera is not None and lane.devices.camera.relay_barrier:
            return CameraRelayBarrier(camera)  # installs without an IO module: the camera's relay raises the arm
        return ModbusBarrier(cfg, self.buses, name=lane.id) if cfg is not None else None

    def display(self, lane: LaneConfig, via: Optional[VzenithCamera]) -> Optional[Any]:
        cfg = lane.devices.display
        return LedBoardDisplay(cfg, via, lane_id=lane.id) if cfg is not None else None

    def plate_reader(self, lane: LaneConfig, on_activity: Optional[Callable[[], None]]) -> Optional[Any]:
        cfg = lane.devices.plate_reader
        if cfg is None:
            return None
        return SerialPlateReader(cfg, name=f"{lane.id}-camera", special_prefixes=self.special_prefixes,
                                 on_activity=on_activity)

    def scanner(self, lane: LaneConfig) -> Optional[Any]:
        cfg = lane.devices.scanner
        return BoothScanner(cfg, name=f"{lane.id}-scanner") if cfg is not None else None

    async def aclose(self) -> None:
        await self.buses.close()


def outbox_destinations(config: Config) -> list[str]:
    """Where records are uploaded: the webhook and each configured payment platform."""
    site = config.site
    return (["webhook"] if site.uploads.webhook else []) + list(site.payments.configured())


def replica_booth(config: Config) -> Optional[str]:
    """With the site bus on, the store keeps a replica of the other booths' cars and numbers our messages."""
    return config.site.site_bus.booth_id if config.site.site_bus.enabled else None


def housekeeping_for(config: Config) -> Optional[Callable[[Any, Clock], Housekeeping]]:
    """The scheduled jobs over the SQLite store (an in-memory twin has no file to back up), unless disabled."""
    cfg = config.site.housekeeping
    if not cfg.enabled:
        return None
    backup_dir, report_dir = cfg.directories(config.directory, config.site.database)

    def build(store: Any, clock: Clock) -> Optional[Housekeeping]:
        from lanectl.adapters.housekeeping import Housekeeping

        if not isinstance(store, SqliteStore):
            return None
        return Housekeeping(store, cfg, backup_dir=backup_dir, report_dir=report_dir, clock=clock,
                            tz=config.site.tz)
    return build


def real_adapters(config: Config, **given: Any) -> Adapters:
    """The real adapter for each port not `given` (by its Adapters field name)."""
    unknown = set(given) - set(Adapters.__dataclass_fields__)
    if unknown:
        raise TypeError(f"no adapter called {', '.join(sorted(unknown))}")

    def pick(name: str, real: Callable[[], Any]) -> Any:
        return given[name] if name in given else real()

    return Adapters(
        store=pick("store", lambda: SqliteStore(config.site.database, destinations=outbox_destinations(config),
                                                 site_booth=replica_booth(config))),
        clock=pick("clock", lambda: SystemClock(config.site.tz)),
        devices=pick("devices", lambda: HardwareDevices(config.site.vehicles.special_prefixes)),
        listener=pick("listener", lambda: CallbackServer),
        control=pick("control", lambda: ControlServer),
        session=pick("session", lambda: aiohttp.ClientSession),
        notifier=pick("notifier", SystemdNotifier),
        raise_nofile=pick("raise_nofile", lambda: fd_limit.raise_nofile),
        site_bus=pick("site_bus", lambda: mqtt_site_bus(config)),
        housekeeping=pick("housekeeping", lambda: housekeeping_for(config)),
    )


SITE_BUS_RECONNECT_MAX_S = 5.0  # a 30 s cap made the catch-up after a 60 s broker outage take ~28 s


def mqtt_site_bus(config: Config) -> Optional[MqttBus]:
    """The MQTT site bus when `site_bus.enabled` (issue 17); None: this booth runs alone."""
    bus = config.site.site_bus
    if not bus.enabled:
        return None
    from lanectl.adapters.mqtt_bus import MqttBus

    password = config.secret(bus.password, "site_bus.password") if bus.password is not None else None
    try:
        # the lot's own broker: once it is back, the booth is on it within seconds (the queued records follow)
        return MqttBus(bus, config.site.park_id, password=password, retry_max_s=SITE_BUS_RECONNECT_MAX_S)
    except (OSError, ssl.SSLError) as exc:  # check-config saw the files; not that they are certificates and keys
        raise StartupError("site_bus.tls", f"cannot load the CA / client certificate / key: {exc}", EX_CONFIG) from None


def build_app(config: Config, *, on_effects: Optional[Callable[[str, list[fx.Effect]], None]] = None,
              **adapters: Any) -> App:
    """The daemon for `config`; keyword arguments named like the Adapters fields replace the real ones."""
    return App(config, real_adapters(config, **adapters), on_effects=on_effects)


async def run_daemon(config: Config, *, on_effects: Optional[Callable[[str, list[fx.Effect]], None]] = None,
                     stop: Optional[asyncio.Event] = None, app_ready: Optional[Callable[[App], None]] = None,
                     **adapters: Any) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        stop.set()
        # If the process is still here 10 s later, every thread's stack goes to the log: a stuck stop is
        # diagnosable from the journal (systemd kills it at TimeoutStopSec anyway).
        faulthandler.dump_traceback_later(10, exit=False)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping)
    app = build_app(config, on_effects=on_effects, **adapters)
    if app_ready is not None:
        app_ready(app)
    await app.run(stop)
