"""The daemon: one task per lane, the outbox relay, the payment platforms, the listeners, the control socket,
sd_notify and a clean stop on SIGTERM (the in-flight write finishes; the barrier is left as it is).

App is handed every adapter it talks to (`Adapters`: store, clock, devices, listeners, control server, HTTP
session, notifier); lanectl/bootstrap.py builds the real ones, and a test can hand it fakes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

import aiohttp

from lanectl.adapters import fd_limit
from lanectl.adapters.callback_server import CallbackServer
from lanectl.adapters.log_tally import install_loop_handler, uninstall_loop_handler
from lanectl.adapters.camera_auth import CameraAuth, camera_auth
from lanectl.adapters.camera_http import VzenithCamera, add_camera_routes
from lanectl.adapters.image_links import ROUTE as IMAGE_ROUTE, ImageLinks, no_links
from lanectl.adapters.control_socket import ControlError, ControlServer
from lanectl.adapters.operator_identity import site_gatekeeper
from lanectl.adapters.systemd_notify import SystemdNotifier, status_loop, watchdog_loop
from lanectl.adapters.webhook_publisher import WebhookPublisher
from lanectl.config import Config, ConfigError, LaneConfig
from lanectl.core import effects as fx
from lanectl.core.events import OperatorOpen, PlatformEntry, QuoteRequest
from lanectl.core.lane import LaneRules
from lanectl.core.plates import DEFAULT_SPECIAL_PREFIXES
from lanectl.core.quotes import StayPrice, price_inside
from lanectl.core.rules import CardRenewal, RenewalError, RulesPolicy, VehicleRules, renew_card
from lanectl.providers.wiring import PlatformWiring
from lanectl.providers.ports import PriceQuote
from lanectl.service.booth import ACTIONS as BOOTH_ACTIONS, BoothError, ask_lane
from lanectl.service.lane_runner import LaneDidNotAnswer, LaneRunner, LaneStatus
from lanectl.service.outbox import Backoff, OutboxRelay, Publisher
from lanectl.service.ports import NO_METRICS, Clock, Metrics, StorageUnavailable
from lanectl.service.settlement import SettlementService, SettlementTiming
from lanectl.service.site_bus import SiteBus

if TYPE_CHECKING:  # imported where used: a booth without the console, /metrics or a site bus does not load them
    from lanectl.service.remote_commands import RemoteCommands
    from lanectl.service.site_replication import SiteReplicator
    from lanectl.adapters.console.live import LiveFeed
    from lanectl.adapters.console.payments import PaymentStates
    from lanectl.adapters.console.server import ConsoleServer
    from lanectl.adapters.metrics import Figures, PrometheusMetrics

log = logging.getLogger("lanectl")
# the lot's own broker: once it is back, the queued records go out within seconds, not after a 5-minute backoff
SITE_BUS_BACKOFF = Backoff(base_s=0.5, cap_s=5.0)
OPERATOR_ACK_S = 4.0  # an operator's OPEN: how long `lanectl open` waits for the module's answer
QUOTE_WAIT_S = 2.0  # a platform's price query: how long one exit lane may take to answer it


def lane_rules(lane: LaneConfig, special_prefixes: tuple[str, ...] = DEFAULT_SPECIAL_PREFIXES) -> LaneRules:
    r = lane.rules
    camera = lane.devices.camera
    relay = camera is not None and camera.relay_barrier  # its inputs are made up: no real arming loop
    return LaneRules(duplicate_window_s=r.duplicate_window_s, min_confidence=r.min_confidence,
                     open_confirm_s=r.open_confirm_s, close_confirm_s=r.close_confirm_s,
                     pass_timeout_s=r.pass_timeout_s, auto_close=r.auto_close, stale_plate_s=r.stale_plate_s,
                     loops=not relay, special_prefixes=special_prefixes)


def build_policy(config: Config, vehicles: Optional[VehicleRules] = None) -> RulesPolicy:
    """The configured rules, or the configured tariffs with `vehicles` as they are now (platform renewals)."""
    return RulesPolicy(config.site.tariffs, vehicles or config.site.vehicles, tz=config.site.tz)


class DeviceFactory(Protocol):
    """Builds each lane's devices from its configuration (bootstrap.HardwareDevices: serial, Modbus, HTTP camera).
    A device has `run(emit)`; a barrier also `open()` / `close()`. `aclose()` releases what the devices share
    (the RS-485 buses) once every device task has ended."""

    def camera(self, lane: LaneConfig, images_dir: Path, clock: Clock) -> VzenithCamera: ...
    def mqtt_camera(self, lane: LaneConfig, images_dir: Path, clock: Clock, bus: SiteBus) -> VzenithCamera: ...
    def barrier(self, lane: LaneConfig, camera: Optional[VzenithCamera]) -> Optional[Any]: ...
    def display(self, lane: LaneConfig, via: Optional[VzenithCamera]) -> Optional[Any]: ...
    def plate_reader(self, lane: LaneConfig, on_activity: Optional[Callable[[], None]]) -> Optional[Any]: ...
    def scanner(self, lane: LaneConfig) -> Optional[Any]: ...
    async def aclose(self) -> None: ...


@dataclass
class Adapters:
    """Everything outside the process the daemon uses. lanectl/bootstrap.py builds the real ones; the factories
    take the real classes' arguments (CallbackServer, ControlServer, aiohttp.ClientSession)."""

    store: Any  # the local store: SqliteStore, or a twin with its methods and `health`
    clock: Clock
    devices: DeviceFactory
    listener: Callable[..., CallbackServer]  # the public face and, with HTTP cameras, the LAN face
    control: Callable[..., ControlServer]  # the local control socket
    session: Callable[[], aiohttp.ClientSession]  # outgoing HTTP (platforms, webhook); opened on the loop
    notifier: SystemdNotifier
    raise_nofile: Callable[[], tuple[int, int]]  # (soft, hard) open-file limits after raising the soft one
    site_bus: Optional[SiteBus] = None  # the lot's MQTT broker (adapters/mqtt_bus.py) when site_bus.enabled
    # backups, retention, VACUUM, shift report (adapters/housekeeping/): built from (store, clock); None: off
    housekeeping: Optional[Callable[[Any, Clock], Any]] = None


class App:
    def __init__(self, config: Config, adapters: Adapters, *,
                 on_effects: Optional[Callable[[str, list[fx.Effect]], None]] = None) -> None:
        self.config = config
        self.adapters = adapters
        self.clock = adapters.clock
        self.on_effects = on_effects
        self.publishers: dict[str, Publisher] = {}
        self.store = adapters.store
        self.vehicles = config.site.vehicles  # the YAML's, plus monthly cards renewed on a platform
        self.policy = build_policy(config)
        self.devices = adapters.devices
        self.runners: dict[str, LaneRunner] = {}
        self.readers: dict[str, Any] = {}  # serial plate readers: their line counts go to `status`
        self.cameras: dict[str, VzenithCamera] = {}  # lanes whose camera pushes over HTTP or publishes over MQTT
        self.camera_auth: dict[str, CameraAuth] = {}  # who may push to each (checked before the body is read)
        self.lan: Optional[CallbackServer] = None  # the LAN face: opened for HTTP cameras and for /metrics
        # /metrics (adapters/metrics.py): this daemon's own registry, fed by the lanes, settlement and listeners
        self.prometheus: Optional[PrometheusMetrics] = None
        if config.site.metrics.enabled:
            from lanectl.adapters.metrics import PrometheusMetrics
            self.prometheus = PrometheusMetrics()
        self.metrics: Metrics = self.prometheus or NO_METRICS
        self.images_dir = config.site.database.parent / "images"  # their pictures, a folder per lane
        self.image_links: Optional[ImageLinks] = None  # served to the platforms when images.public_url is set
        self._status_changed = asyncio.Event()  # a lane published a change: sd_notify's STATUS= looks again
        self.console_feed: Optional[LiveFeed] = None  # the booth console's live lane views (console.enabled)
        self.console_payments: Optional[PaymentStates] = None  # the providers' states of the car at each exit
        self.displays: dict[str, Any] = {}  # LED boards, closed at stop
        self.relay: Optional[OutboxRelay] = None
        self.notifier = adapters.notifier
        self.ready = asyncio.Event()
        self.site_bus = adapters.site_bus  # services register their subscriptions before run() starts it
        self.replicator: Optional[SiteReplicator] = None  # in-park replication (service/site_replication.py)
        self._session: Optional[aiohttp.ClientSession] = None
        self.settlement: Optional[SettlementService] = None
        self.platforms: Optional[PlatformWiring] = None
        self.remote: Optional[RemoteCommands] = None  # commands over the site bus (service/remote_commands.py)
        self.housekeeping: Any = None  # the scheduled jobs; their last results in status()
        self.channels = {lane.id: lane.channel for lane in config.lanes}  # lane id -> platform channel id
        # The store's writer thread reports storage faults; sd_notify STATUS follows each change, on the loop.
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.store.health.listeners.append(self._storage_changed)

    # --- run -----------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        site = self.config.site
        # Built first: a bad socket path fails before anything is open. Every resource that cannot open raises
        # a StartupError naming it (lanectl/startup.py); the CLI turns it into one line and an exit code.
        cameras = any(lane.devices.camera is not None and lane.devices.camera.kind == "vzenith_http"
                      for lane in self.config.lanes)  # cameras over MQTT need no listener
        lan_face = cameras or self.prometheus is not None or site.console.enabled
        counted = {"on_request": self.prometheus.http_request} if self.prometheus is not None else {}
        budget = fd_limit.plan(*self.adapters.raise_nofile(), site.http.max_connections,
                               site.control.max_connections, lan_max=site.lan.max_connections if lan_face else 0)
        control = self.adapters.control(
            str(site.control.socket), self, mode=site.control.mode, group=site.control.group,
            max_connections=budget.control_max_connections, idle_timeout_s=site.control.idle_timeout_s,
            operators=site_gatekeeper(site.operators, str(self.config.directory / "site.yaml")))
        listener = self.adapters.listener
        self.http = listener(site.http.host, site.http.port, max_body_kb=site.http.max_body_kb,
                             health=self.health, max_connections=budget.http_max_connections,
                             idle_timeout_s=site.http.idle_timeout_s, body_timeout_s=site.http.body_timeout_s,
                             **counted)
        if lan_face:  # cameras and /metrics (later boards, the console) never share the face the internet reaches
            self.lan = listener(site.lan.host, site.lan.port, max_body_kb=site.lan.max_body_kb,
                                health=self.health, max_connections=budget.lan_max_connections,
                                idle_timeout_s=site.lan.idle_timeout_s, body_timeout_s=site.lan.body_timeout_s,
                                face="LAN", key="lan.listen", **counted)
        # failed accepts (EMFILE...) are counted per listener, not a traceback each (adapters/log_tally.py)
        self._loop = asyncio.get_running_loop()
        loop_handler = install_loop_handler(self._loop, log)
        try:
            await self.store.open()
        except BaseException:
            uninstall_loop_handler(asyncio.get_running_loop(), loop_handler)
            raise
        tasks: list[asyncio.Task[Any]] = []
        watchdog: Optional[asyncio.Task[Any]] = None
        try:
            await self._apply_stored_renewals()
            try:
                seeded = await self.store.seed_balances(dict(site.vehicles.stored_value), self.clock.now())
            except StorageUnavailable:  # started on a full disk: the lanes run safely; seeded at a start that can write
                seeded = []
            if seeded:
                log.info("stored value: opening balances recorded for %d plate(s) from the configuration",
                         len(seeded))
            self._session = self.adapters.session()
            self._build_publishers()
            self._build_payments()
            self._build_replication()
            self.remote = self._remote_commands()  # subscribed before the bus runs; runs commands once ready
            self.relay = OutboxRelay(self.store, self.publishers, self.clock, rate_per_s=self._rates(),
                                     backoffs={"site_bus": SITE_BUS_BACKOFF})
            for name, loop in (self.platforms.loops if self.platforms else []):
                tasks.append(asyncio.create_task(loop(), name=name))
            for lane in self.config.lanes:
                runner = self._build_lane(lane)
                self.runners[lane.id] = runner
                tasks.append(asyncio.create_task(runner.run(), name=f"lane-{lane.id}"))
                for device in self._devices(lane):
                    tasks.append(asyncio.create_task(device.run(runner.emit), name=f"{lane.id}-{type(device).__name__}"))
            if self.publishers:
                tasks.append(asyncio.create_task(self.relay.run(), name="outbox"))
            if self.replicator is not None:
                tasks.append(asyncio.create_task(self.replicator.run(), name="site-replication"))
            if self.site_bus is not None:  # a broker that is down never stops a lane: the bus retries on its own
                tasks += self._site_bus_tasks(self.site_bus)
            tasks.append(asyncio.create_task(self.store.watch(), name="storage-probe"))
            if self.adapters.housekeeping is not None:
                self.housekeeping = self.adapters.housekeeping(self.store, self.clock)
            if self.housekeeping is not None:
                tasks.append(asyncio.create_task(self.housekeeping.run(), name="housekeeping"))
            await asyncio.gather(*(r.started.wait() for r in self.runners.values()))
            if self.settlement is not None:
                await self.settlement.start()  # resumes what a restart interrupted
            await control.start()
            self._register_callbacks()
            await self.http.start()
            if self.lan is not None:
                await self.lan.start()
            # The watchdog is not one of the tasks whose end stops us: without systemd it returns at once.
            watchdog = asyncio.create_task(watchdog_loop(self.notifier, lambda: self._healthy(tasks),
                                                         status=self.status_line), name="watchdog")
            self.notifier.ready()
            status = asyncio.create_task(status_loop(self.notifier, self.status_line, changed=self._status_changed),
                                         name="sd-status")
            log.info("lanectl running: park=%s lanes=%s db=%s control=%s", site.park_id,
                     ",".join(self.runners), site.database, site.control.socket)
            self.ready.set()
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for t in done:
                if t is not stopper and t.exception() is not None:
                    log.error("task %s died: %r", t.get_name(), t.exception())
                    raise t.exception()  # type: ignore[misc]
        finally:
            if watchdog is not None:
                watchdog.cancel()
                status.cancel()
            self.notifier.stopping()
            log.info("lanectl stopping: finishing in-flight writes; barriers are left as they are")
            for t in tasks:
                t.cancel()
            # Each step is bounded and named: a stuck one is logged and the rest still runs; the store closes last
            # so in-flight lane commits finish.
            await _step("control socket", control.stop())
            if self.remote is not None:
                await _step("remote commands", self.remote.aclose())
            await _step("public listener", self.http.stop())
            if self.console_feed is not None:
                self.console_feed.close()  # the console's live streams end, or the LAN listener waits for them
            if self.console_payments is not None:
                self.console_payments.close()
            if self.lan is not None:
                await _step("LAN listener", self.lan.stop())
            if self.settlement is not None:
                await _step("settlement", self.settlement.stop())
            await _stop_tasks("lanes and devices", tasks)
            await _step("barrier buses", self.devices.aclose())
            for closing in (*self.cameras.values(), *self.displays.values()):
                await _step(f"{type(closing).__name__}", closing.aclose())
            if self._session is not None:
                await _step("http client", self._session.close())
            await _step("store", self.store.close(), timeout_s=15.0)
            uninstall_loop_handler(asyncio.get_running_loop(), loop_handler)

    def _remote_commands(self) -> Optional[RemoteCommands]:
        """Remote open / release / topup over the site bus (docs/site-bus.md): only with a bus and a site key."""
        cfg = self.config.site.site_bus
        if self.site_bus is None or not cfg.enabled or cfg.site_key is None:
            return None
        from lanectl.service.remote_commands import RemoteCommands, remote_operators
        key = self.config.secret(cfg.site_key, "site_bus.site_key").encode("utf-8")
        remote = RemoteCommands(self.site_bus, self.config.site.park_id, cfg.booth_id, {cfg.site_key_id: key},
                                self, self.store.inbox_put, self.clock, reply_key_id=cfg.site_key_id,
                                skew_s=cfg.command_skew_s, operators=remote_operators(self.config.site.operators),
                                ready=self.ready)
        remote.attach()
        return remote
    def _site_bus_tasks(self, bus: SiteBus) -> list[asyncio.Task[Any]]:
        from lanectl.service.telemetry import TelemetryPublisher
        cfg, park_id = self.config.site.site_bus, self.config.site.park_id
        telemetry = TelemetryPublisher(bus, park_id, cfg.booth_id, self.telemetry_snapshot, self.clock,
                                       cfg.telemetry_interval_s)
        return [asyncio.create_task(bus.run(), name="site-bus"),
                asyncio.create_task(telemetry.run(), name="telemetry")]

    async def telemetry_snapshot(self) -> dict[str, Any]:
        """The figures a central screen shows (service/telemetry.py): each lane and this booth."""
        lanes = {}
        for lid, runner in self.runners.items():
            st = runner.status
            faults = {name: why for name, why in (("barrier", st.barrier_fault),
                                                  ("plate_reader", st.plate_reader_fault),
                                                  ("scanner", st.scanner_fault)) if why}
            lanes[lid] = {"direction": st.direction, "phase": st.phase, "faults": faults,
                          "last_plate": st.last_plate, "waiting": st.waiting}
        counts = (await self.store.outbox_summary(0))["counts"]
        booth = {"outbox_pending": sum(n for key, n in counts.items() if key.endswith("/pending")),
                 "storage_ok": self.store.health.ok,
                 "settlement": self.settlement.status() if self.settlement is not None else None}
        return {"lanes": lanes, "booth": booth}

    def status_line(self) -> str:
        """sd_notify STATUS: the lanes, which are faulted and why, and the storage while it cannot be written."""
        faulted = {lid: faults for lid, r in self.runners.items() if (faults := lane_faults(r.status))}
        line = f"{len(self.runners)} lane(s) running"
        if faulted:
            line = (f"{len(self.runners)} lane(s), {len(faulted)} FAULTED: "
                    + "; ".join(f"{lid} {', '.join(faults)}" for lid, faults in faulted.items()))
        return line if self.store.health.ok else f"{line}; {self.store.health.summary()}"

    def _notify_status(self) -> None:
        self.notifier.status(self.status_line())

    def _storage_changed(self, _health: Any) -> None:
        if self._loop is not None and self.ready.is_set():
            self._loop.call_soon_threadsafe(self._notify_status)

    def _healthy(self, tasks: list[asyncio.Task[Any]]) -> bool:
        return all(not t.done() for t in tasks)

    def _build_lane(self, lane: LaneConfig) -> LaneRunner:
        settle = self.settlement.on_effects if self.settlement is not None and lane.payments else None
        camera_cfg, display_cfg = lane.devices.camera, lane.devices.display
        if camera_cfg is not None and camera_cfg.kind == "vzenith_mqtt":  # plates from the broker, no reply
            if self.site_bus is None:
                raise ConfigError([f"lane {lane.id}: devices.camera: kind vzenith_mqtt needs site_bus.enabled: true"])
            self.cameras[lane.id] = self.devices.mqtt_camera(lane, self.images_dir, self.clock, self.site_bus)
        elif camera_cfg is not None:  # HTTP push: its reply may carry the relay and board frames
            self.cameras[lane.id] = self.devices.camera(lane, self.images_dir, self.clock)
            self.camera_auth[lane.id] = camera_auth(camera_cfg, self.config.secret, f"lane {lane.id}: devices.camera")
            if camera_cfg.insecure:
                log.warning("lane %s: the camera's pushes are accepted without credentials (insecure: true): anyone "
                            "who reaches the LAN listener can open this barrier", lane.id)
        barrier = self.devices.barrier(lane, self.cameras.get(lane.id))
        display = None
        if display_cfg is not None:
            via = self.cameras.get(lane.id) if display_cfg.via_camera else None
            display = self.displays[lane.id] = self.devices.display(lane, via)
        return LaneRunner(lane.id, lane.direction, self.policy, self.store, self.clock, barrier=barrier,
                          display=display, rules=lane_rules(lane, self.config.site.vehicles.special_prefixes),
                          on_effects=self.on_effects,
                          after_commit=lambda: self.relay.wake() if self.relay else None, settlement=settle,
                          metrics=self.metrics, on_status=self._lane_changed)

    def _lane_changed(self, lane_id: str) -> None:
        self._status_changed.set()  # STATUS= says a fault at once, not at the next 5 s look
        if self.console_feed is not None:
            self.console_feed.changed(lane_id)

    def _attempt_changed(self, lane_id: str, record_id: str) -> None:
        if self.console_payments is not None:
            self.console_payments.attempt_changed(lane_id, record_id)

    def console_view(self, lane_id: str) -> dict[str, Any]:
        """One lane as the console shows it, from what its runner published (never its state)."""
        st = self.runners[lane_id].status
        lane = next(lane for lane in self.config.lanes if lane.id == lane_id)
        settling = set(self.settlement.status()["settling"]) if self.settlement is not None else set()
        car = dict(st.car) if st.car is not None else None
        if car is not None:
            car["settling"] = car["record_id"] in settling  # a platform is still charging it
            # pictures by record id (never the path on this PC); the entry's is looked up when asked
            car["picture"] = f"/console/images/{car['record_id']}" if car.pop("image", "") else None
            entry_id = car.get("entry_record_id") or ""
            car["entry_picture"] = f"/console/images/{entry_id}" if entry_id else None
            from lanectl.adapters.console.words import describe as fee_words  # the console is on: loaded already
            car["breakdown"] = fee_words(car)
            car["providers"] = (self.console_payments.states(lane_id, car["record_id"], lane.payments)
                                if self.console_payments is not None and lane.payments and st.direction == "exit"
                                else [])
            try:  # the stay by the daemon's clock (the page counts on from it)
                entered = datetime.fromisoformat(car["entered_at"]) if car["entered_at"] else None
            except ValueError:
                entered = None
            car["stay_min"] = int((self.clock.now() - entered).total_seconds() // 60) if entered else None
        faults = {name: why for name, why in (("barrier", st.barrier_fault), ("plate_reader", st.plate_reader_fault),
                                              ("scanner", st.scanner_fault)) if why}
        return {"lane": lane_id, "name": lane.name or lane_id, "direction": st.direction, "phase": st.phase,
                "car": car, "payments": list(lane.payments), "faults": faults, "board": st.last_display,
                "last_release": st.last_release,
                "held": st.held}  # (booth actions) an entry car held for the booth: admit or refuse it

    def _console(self) -> ConsoleServer:
        from lanectl.adapters.console.accounts import AccountError, Accounts
        from lanectl.adapters.console.live import LiveFeed
        from lanectl.adapters.console.payments import PaymentStates
        from lanectl.adapters.console.server import ConsoleServer
        from lanectl.adapters.console.sessions import LoginLimiter, Sessions

        cfg = self.config.site.console
        self.console_payments = PaymentStates(lambda record_id: self.store.attempts(record_id=record_id),
                                              self._lane_changed)
        self.console_feed = LiveFeed(list(self.runners), self.console_view)
        accounts = Accounts(cfg.users_file)
        try:  # a broken file is not fatal: the lanes run, the console refuses logins (503) until it is fixed
            log.info("console: served on the LAN face at /console/ (%d account(s) in %s)", len(accounts.users()),
                     cfg.users_file)
        except AccountError as exc:
            log.error("console: %s: nobody can log in until it is fixed (lanectl console-user)", exc)
        return ConsoleServer(accounts, Sessions(cfg.idle_logout_min * 60, self.clock.monotonic),
                             LoginLimiter(cfg.max_failures, cfg.lockout_s, self.clock.monotonic),
                             self.console_feed, self, images=self.images_dir)

    def _devices(self, lane: LaneConfig) -> list[Any]:
        devices: list[Any] = []
        runner = self.runners[lane.id]
        if runner.barrier is not None:
            devices.append(runner.barrier)
        if lane.id in self.cameras:
            devices.append(self.cameras[lane.id])
        if lane.devices.plate_reader is not None:
            barrier = runner.barrier
            reader = self.devices.plate_reader(lane, barrier.expect_command if barrier is not None else None)
            self.readers[lane.id] = reader
            devices.append(reader)
        if lane.devices.scanner is not None:
            devices.append(self.devices.scanner(lane))
        return devices

    def _build_publishers(self) -> None:
        hook = self.config.site.uploads.webhook
        if hook is not None:
            token = self.config.secret(hook.token, "uploads.webhook.token") if hook.token else None
            assert self._session is not None
            self.publishers["webhook"] = WebhookPublisher(hook.url, self._session, hook.timeout_s, token)

    def _build_replication(self) -> None:
        """In-park replication (issue 17 item 2) when the store keeps a replica and a site bus is given: our records
        go out through the outbox, the other booths' come into the replica."""
        booth = getattr(getattr(self.store, "replica", None), "booth", None)
        if self.site_bus is None or booth is None:
            return
        from lanectl.service.site_replication import SiteBusPublisher, SiteReplicator
        park_id = self.config.site.park_id
        self.publishers["site_bus"] = SiteBusPublisher(self.site_bus, park_id, booth)
        self.replicator = SiteReplicator(self.site_bus, self.store, self.clock, park_id, booth,
                                          catchup_s=self.config.site.site_bus.catchup_s,
                                          on_queued=lambda: self.relay.wake("site_bus") if self.relay else None,
                                          on_back=lambda: self.relay.retry_now("site_bus") if self.relay else None)

    def _rates(self) -> dict[str, float]:
        site = self.config.site
        rates = {"webhook": site.uploads.webhook.rate_per_s} if site.uploads.webhook else {}
        if "site_bus" in self.publishers:  # the lot's own broker: no rate to respect, the replication lag counts
            rates["site_bus"] = 1000.0
        return rates | (self.platforms.rates if self.platforms else {})

    def _console_records(self, server: ConsoleServer) -> ConsoleServer:
        """The console's records and shift tab, reading on the store's own reader connection (a store without
        one, a test's twin, has no such tab)."""
        reads = getattr(self.store, "reads", None)
        if reads is not None:
            from lanectl.adapters.console.records import RecordsRoutes
            server.records = RecordsRoutes(reads, tz=self.config.site.tz, images_dir=self.images_dir,
                                           lanes={lane.id: lane.name or lane.id for lane in self.config.lanes},
                                           now=self.clock.now,
                                           relay_status=lambda: self.relay.status() if self.relay else {})
        return server

    def _build_payments(self) -> None:
        """Platform clients and exit providers, the settlement service, then the platforms' callbacks."""
        assert self._session is not None
        public_url = self.config.site.images.public_url
        if public_url:
            self.image_links = ImageLinks.open(self.images_dir, public_url, self.config.site.database.parent)
        links = self.image_links.url if self.image_links is not None else no_links
        self.platforms = wiring = PlatformWiring.build(self.config, self.store, self._session, self.clock,
                                                       links=links)
        self.publishers.update(wiring.publishers)
        lane_providers = {lane.id: lane.payments for lane in self.config.lanes if lane.payments}
        missing = sorted({p for names in lane_providers.values() for p in names} - set(wiring.providers))
        if missing:
            raise ConfigError([f"payments: no provider implementation for {', '.join(missing)}"])
        if lane_providers:
            t = self.config.site.payments.settlement
            self.settlement = SettlementService(
                self.store, wiring.providers, lane_providers, lambda lane_id, ev: self.runners[lane_id].emit(ev),
                self.clock, SettlementTiming(t.charge_timeout_s, t.poll_interval_s, t.window_s,
                                             t.reconcile_interval_s, t.reconcile_for_s,
                                             absent_checks=t.absent_checks, absent_span_s=t.absent_span_s,
                                             absent_late_check_s=t.absent_late_check_s),
                metrics=self.metrics, on_attempt=self._attempt_changed, expect_open=self._expect_open,
                confirm_in_lane=True)  # the lane runners commit a paid result's compare-and-set (claims.py)
            if hasattr(self.store, "write_first_attempts"):  # with the exit's own step (a test's store may not)
                self.store.write_first_attempts(self.settlement.first_attempt)
        wiring.attach(self.settlement, self)

    def _expect_open(self, lane_id: str) -> None:
        """A payment for the lane's car is being confirmed: its barrier keeps the bus free for the OPEN."""
        runner = self.runners.get(lane_id)
        if runner is not None and runner.barrier is not None and hasattr(runner.barrier, "expect_command"):
            runner.barrier.expect_command()

    def _register_callbacks(self) -> None:
        for path, handler in (self.platforms.routes if self.platforms else []):
            self.http.add_post(path, handler)
        for lane_id, auth in self.camera_auth.items():  # HTTP cameras (those over MQTT have no route)
            # on the LAN face only; its own aiohttp handler: it answers 401/403 (who pushes), 400/403/413 itself
            assert self.lan is not None
            add_camera_routes(self.lan.app.router, self.cameras[lane_id], auth)
        if self.image_links is not None:
            self.http.app.router.add_get(IMAGE_ROUTE, self.image_links.route())
        if self.config.site.console.enabled:  # the LAN face only: the public one answers 404 for it
            assert self.lan is not None
            self._console_records(self._console()).add_routes(self.lan.app.router)
        if self.prometheus is not None:  # the LAN face only: the public one answers 404 for it
            assert self.lan is not None
            self.lan.add_get(self.config.site.metrics.path, self.prometheus.handler(self.metric_figures))

    async def metric_figures(self) -> Figures:
        """The scrape-time gauges: outbox per destination, device faults open now, the database's size."""
        now = self.clock.now()
        outbox: dict[str, tuple[int, int, float]] = dict.fromkeys(self.publishers, (0, 0, 0.0))
        try:
            for destination, (pending, dead, oldest) in (await self.store.outbox_depths(list(outbox))).items():
                outbox[destination] = (pending, dead, max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        except StorageUnavailable:  # the store cannot be read now: no outbox series rather than false zeros
            outbox = {}  # (lanectl_storage_ok says why)
        faults = {}
        for lane_id, runner in self.runners.items():
            st = runner.status
            devices = {"barrier": st.barrier_fault, "plate_reader": st.plate_reader_fault, "scanner": st.scanner_fault}
            faults.update({(lane_id, device): bool(reason) for device, reason in devices.items()})
        jobs = {name: (st.get("ok"), datetime.fromisoformat(st["last_run"]).timestamp() if st.get("last_run") else None,
                       st.get("failures", 0))
                for name, st in (self.housekeeping.status() if self.housekeeping is not None else {}).items()}
        from lanectl.adapters.metrics import Figures

        return Figures(outbox=outbox, faults=faults, database_bytes=_database_bytes(self.config.site.database),
                       storage_ok=self.store.health.ok, jobs=jobs)

    async def renew_card(self, renewal: CardRenewal, trade_no: str, amount_fen: int, *, provider: str) -> None:
        """A card renewed on `provider`: kept in the store first, then the lanes decide with the new period."""
        vehicles, card = renew_card(self.vehicles, renewal)  # RenewalError: nothing kept, nothing changed
        await self.store.add_renewal(provider, trade_no, renewal.card_id, renewal.plate,
                                     renewal.start.isoformat() if renewal.start else "", renewal.end.isoformat(),
                                     amount_fen, self.clock.now())
        self._use_vehicles(vehicles)
        log.info("monthly card %s (%s) renewed on the platform: valid %s - %s (trade %s)", card.card_id,
                 ",".join(card.plates), card.start, card.end, trade_no)

    async def _apply_stored_renewals(self) -> None:
        vehicles = self.vehicles
        for r in await self.store.renewals():
            renewal = CardRenewal(r["card_id"], r["plate"], date.fromisoformat(r["start"]) if r["start"] else None,
                                  date.fromisoformat(r["end"]))
            try:
                vehicles, _ = renew_card(vehicles, renewal)
            except RenewalError as exc:  # e.g. the plate was since whitelisted in the YAML
                log.error("stored card renewal %s no longer applies: %s", r["trade_no"], exc)
        self._use_vehicles(vehicles)

    def _use_vehicles(self, vehicles: VehicleRules) -> None:
        # The policy is an immutable value; each lane picks the new one up with its next event.
        self.vehicles = vehicles
        self.policy = build_policy(self.config, vehicles)
        for runner in self.runners.values():
            runner.policy = self.policy

    async def quote(self, plate: str, order_id: str, channel: str, *, provider: str) -> Optional[PriceQuote]:
        """What a car owes now (platform price queries). Each exit lane answers for the car waiting there, from
        its own state (a lane request); a car waiting at no lane (inside, paying ahead) is priced by the policy
        over its stay as the store keeps it."""
        for lane_id, runner in self.runners.items():
            if runner.direction != "exit":
                continue  # only an exit lane has a car waiting to pay
            ask = QuoteRequest(plate, order_id, bool(channel) and self.channels[lane_id] == channel, provider,
                               uuid.uuid4().hex)
            try:
                answer = await runner.request(ask, timeout=QUOTE_WAIT_S)
            except asyncio.TimeoutError:  # RequestExpired too: the lane never took it
                log.warning("lane %s did not answer a price query within %g s: not asked about its car",
                            lane_id, QUOTE_WAIT_S)
                continue
            assert isinstance(answer, fx.QuoteResult)
            if answer.outcome == "quoted" and answer.price is not None:
                return _price_quote(answer.price)
            if answer.outcome != "not_here":
                return None  # let out (the stay was free after all), or not handled now
        price = price_inside(self.policy, self.store.inside(), plate, order_id, self.clock.now())
        return _price_quote(price) if price is not None else None

    async def health(self) -> dict[str, Any]:
        """For monitoring on the public listener: no records, no plates — only whether each lane works."""
        lanes = {lid: {"phase": r.status.phase, "barrier_fault": bool(r.status.barrier_fault),
                       "plate_reader_fault": bool(r.status.plate_reader_fault),
                       "scanner_fault": bool(r.status.scanner_fault)} for lid, r in self.runners.items()}
        # a lane without its booth scanner still lets cars in and out: shown, but not "down"
        ok = all(not (x["barrier_fault"] or x["plate_reader_fault"]) for x in lanes.values())
        # both faces, without their addresses (this is answered on the public one too); null: no LAN face needed
        http: Optional[CallbackServer] = getattr(self, "http", None)  # built by run()
        listeners = {"public": http is not None and http.listening,
                     "lan": self.lan.listening if self.lan is not None else None}
        answer: dict[str, Any] = {"ok": ok and self.store.health.ok, "lanes": lanes, "listeners": listeners}
        if not self.store.health.ok:
            answer["storage"] = self.store.health.reason
        return answer

    # --- ControlHandlers (the local control socket) ------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        lanes = {}
        for lid, runner in self.runners.items():
            lanes[lid] = vars(runner.status).copy()
            reader = self.readers.get(lid)
            if reader is not None:  # garbage on the camera line is skipped and counted, never fatal
                st = reader.stats
                lanes[lid]["plate_lines"] = {"read": st.lines, "skipped": st.skipped,
                                             "bad_bytes": st.skipped_bad_bytes, "bad_fields": st.skipped_bad_fields,
                                             "bad_plate": st.skipped_bad_plate, "overlong": st.skipped_overlong,
                                             "resynced": st.resynced, "unreadable": st.unreadable,
                                             "bytes_in": st.bytes_in, "garbage_bytes": st.skipped_bytes}
        for lid, camera in self.cameras.items():
            lanes[lid]["camera"] = camera.status()
        answer: dict[str, Any] = {"park_id": self.config.site.park_id, "http_port": self.http.port,
                                  "lan_port": self.lan.port if self.lan is not None else None, "lanes": lanes,
                                  "storage": self.store.health.as_dict(), "listeners": self._listeners()}
        if self.settlement is not None:
            answer["settlement"] = self.settlement.status()
        if self.platforms is not None:
            answer["platforms"] = self.platforms.status()
        if self.image_links is not None:
            answer["image_links"] = {"public_url": self.image_links.base, **self.image_links.counts}
        if self.remote is not None:
            answer["remote_commands"] = dict(self.remote.counts)
        if self.replicator is not None:
            answer["site_replication"] = self.replication_status()
        if self.site_bus is not None:  # the MQTT adapter also says which broker and why it is down
            last_error = getattr(self.site_bus, "last_error", None)
            answer["site_bus"] = {"booth_id": self.config.site.site_bus.booth_id,
                                  "connected": self.site_bus.connected,
                                  "broker": getattr(self.site_bus, "broker", None),
                                  "last_error": str(last_error) if last_error is not None else None}
        if self.housekeeping is not None:  # each job's last run, result and next run (metrics read it too)
            answer["housekeeping"] = self.housekeeping.status()
        return answer

    def replication_status(self) -> dict[str, Any]:
        """In-park replication: messages taken in (applied, duplicate, bad ...), the seq held of each booth, and
        how many of the other booths' cars are inside by our replica."""
        assert self.replicator is not None
        return {**self.replicator.counts, "peers": self.store.site_gaps(),
                "remote_inside": len(self.store.site_inside())}

    def _listeners(self) -> list[dict[str, Any]]:
        """Every HTTP listener the app holds, whatever its attribute (a listener added later is listed too)."""
        return [server.describe() for server in vars(self).values() if isinstance(server, CallbackServer)]

    async def records(self, *, plate: Optional[str], lane: Optional[str], since: Optional[datetime],
                      until: Optional[datetime], limit: int) -> list[dict[str, Any]]:
        from lanectl.core.plates import normalize_plate
        return await self.store.records(plate=normalize_plate(plate) if plate else None, lane=lane,
                                        since=since, until=until, limit=limit)

    async def outbox(self, *, limit: int) -> dict[str, Any]:
        summary = await self.store.outbox_summary(limit, self.config.site.tz)  # lot time, like the records
        summary["destinations"] = self.relay.status() if self.relay else {}
        return summary

    async def balances(self, *, plate: Optional[str], limit: int) -> dict[str, Any]:
        current = self.store.balances()
        if plate is not None:
            current = {plate: current[plate]} if plate in current else {}
        return {"balances": current, "moves": await self.store.balance_moves(plate, limit)}

    async def topup(self, *, plate: str, amount_fen: int, operator: str, reason: str,
                    operator_uid: Optional[int] = None) -> dict[str, Any]:
        if plate not in self.config.site.vehicles.stored_value:
            raise ControlError("not_stored_value", f"{plate} is not a stored-value car: add it under "
                               "vehicles.stored_value in the site YAML first", 404)
        try:
            balance = await self.store.topup(plate, amount_fen, f"{operator}: {reason}", self.clock.now(),
                                             operator_uid=operator_uid)
        except StorageUnavailable as exc:
            raise ControlError("storage_unavailable", f"top-up not recorded, nothing changed: the database cannot "
                               f"be written now ({exc.reason}); try again when `lanectl status` shows storage ok",
                               503) from None
        log.info("stored value top-up: plate=%s amount_fen=%d operator=%s operator_uid=%s reason=%s balance_fen=%d",
                 plate, amount_fen, operator, operator_uid, reason, balance)
        return {"plate": plate, "amount_fen": amount_fen, "balance_fen": balance, "operator": operator,
                "operator_uid": operator_uid}

    async def record_image(self, record_id: str) -> Optional[str]:
        """The saved camera picture's path of a record ("" or None when it has none)."""
        record = await self.store.record(record_id)
        return record.get("image") if record is not None else None

    async def admit_plateless(self, channel: str, car_id: str, *, provider: str) -> tuple[bool, str]:
        """`provider` admits a plate-less car at the entry lane of `channel` (Bolink 5.7)."""
        lane = next((lid for lid, ch in self.channels.items() if ch == channel), None)
        runner = self.runners.get(lane) if lane else None
        if runner is None or runner.direction != "entry":
            return False, f"no entry lane with channel {channel!r}"
        try:
            answer = await runner.request(PlatformEntry(car_id, provider, uuid.uuid4().hex))
        except asyncio.TimeoutError:
            return False, "lane did not answer in time"
        assert isinstance(answer, fx.PlatformEntryResult)
        return answer.admitted, "" if answer.admitted else answer.message or "refused"

    async def release(self, lane_id: str, operator: str, reason: str) -> dict[str, Any]:
        """A platform asks for a release (tdzn remoteDev): the same audited path as `lanectl open`."""
        try:
            answer = await self.open_barrier(lane=lane_id, operator=operator, reason=reason, amount_fen=None)
        except ControlError as exc:
            return {"opened": False, "message": exc.message}
        return {"opened": answer["opened"], "message": answer["message"]}

    async def booth_action(self, action: str, *, lane: str, operator: str, reason: str = "", plate: str = "",
                           record_id: str = "", deadline: Optional[float] = None,
                           operator_uid: Optional[int] = None) -> dict[str, Any]:
        """The booth's refuse / correct / admit for the car at `lane` (service/booth.py); `record_id`: the car
        the operator saw, so a second operator on a car gone since is told why nothing happened."""
        runner = self.runners.get(lane)
        if runner is None:
            raise ControlError("unknown_lane", f"no lane {lane!r}; lanes: {', '.join(self.runners)}", 404)
        if action not in BOOTH_ACTIONS:
            raise ControlError("bad_action", f"no booth action {action!r}; one of {', '.join(BOOTH_ACTIONS)}", 400)
        try:
            return await ask_lane(runner, action,  # type: ignore[arg-type]
                                  operator=operator, reason=reason, plate=plate, record_id=record_id,
                                  operator_uid=operator_uid, deadline=deadline,
                                  ack_s=OPERATOR_ACK_S)
        except BoothError as exc:
            raise ControlError(exc.code, exc.message, exc.status) from None

    async def open_barrier(self, *, lane: str, operator: str, reason: str, amount_fen: Optional[int],
                           deadline: Optional[float] = None, operator_uid: Optional[int] = None,
                           record_id: str = "") -> dict[str, Any]:
        """An operator's release. ``deadline`` (loop time, from the control request): past it the release is
        not handed to the lane, and a lane that has not taken it by then drops it — never opened late.
        ``operator_uid``: the caller's uid from the kernel (None for a platform's remote release)."""
        runner = self.runners.get(lane)
        if runner is None:
            raise ControlError("unknown_lane", f"no lane {lane!r}; lanes: {', '.join(self.runners)}", 404)
        request_id = uuid.uuid4().hex
        try:
            answer = await runner.ask(OperatorOpen(operator, reason, amount_fen, request_id, operator_uid,
                                                   record_id), deadline=deadline)
        except LaneDidNotAnswer as exc:
            raise ControlError(exc.code, exc.message, exc.status) from None
        assert isinstance(answer, fx.OperatorResult)
        released = answer.outcome == "released"
        note, delivered, error = answer.message, False, ""
        if released:
            # The operator learns whether the barrier module took the command, not just that it was decided.
            delivered, error = await runner.delivered(answer.action_id, OPERATOR_ACK_S)
            if not delivered:
                note = f"OPEN not delivered: {error}"
        # the lane as its runner last published it (status), never its state read from outside its task;
        # the money as the release's record has it, for a car that was waiting to pay
        return {"lane": lane, "opened": delivered, "outcome": answer.outcome, "record_id": answer.record_id,
                "action_id": answer.action_id,
                "message": note, "phase": runner.status.phase, "barrier_fault": runner.status.barrier_fault,
                "operator": answer.operator if released else operator, "operator_uid": operator_uid,
                **(dict(answer.money) if answer.car_waited else {})}


def _price_quote(price: StayPrice) -> PriceQuote:
    return PriceQuote(price.order_id, price.due_fen, price.total_fen, price.entered_at, price.minutes)


def _database_bytes(path: Path) -> int:
    """The database with its write-ahead log (what the disk holds of it); 0 for a file not there."""
    size = 0
    for part in (path, path.with_name(path.name + "-wal")):
        try:
            size += part.stat().st_size
        except OSError:
            pass
    return size


async def _step(name: str, awaitable: Any, timeout_s: float = 5.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await awaitable
    except TimeoutError:
        log.error("stopping: %s did not finish within %g s; going on", name, timeout_s)


async def _stop_tasks(name: str, tasks: list[asyncio.Task[Any]], timeout_s: float = 5.0) -> None:
    """Wait for cancelled tasks (bounded); a task still running then is named with where it waits, so a stop
    that hangs says which device or lane held it."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=timeout_s)
    if late:
        where = []
        for task in late:
            frames = task.get_stack()  # oldest first: the last one is where it waits
            at = f"{frames[-1].f_code.co_filename}:{frames[-1].f_lineno}" if frames else "?"
            where.append(f"{task.get_name()} at {at}")
        log.error("stopping: %s did not finish within %g s (%s); going on", name, timeout_s, "; ".join(where))


def lane_faults(status: LaneStatus) -> list[str]:
    """A lane's device faults with their reasons, e.g. ["barrier: no answer from unit 1"]."""
    kinds = (("barrier", status.barrier_fault), ("plate reader", status.plate_reader_fault),
             ("scanner", status.scanner_fault))
    return [f"{kind}: {why}" for kind, why in kinds if why]
