"""Configuration: a site file plus one YAML file per lane, validated strictly.

    DIR/site.yaml        park id, timezone, database, listeners, uploads, credentials by reference
    DIR/lanes/*.yaml     one lane each: direction, devices, lane rules

Environment variables override the site file (`LANECTL_DATABASE=...`, `LANECTL_CONTROL__SOCKET=...`).
Every error names the file, the key and the reason; an unknown key is an error, not silently ignored.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lanectl.adapters.camera_auth import CredentialError, camera_auth
from lanectl.config.base import SecretRef, Strict
from lanectl.config.console import ConsoleConfig
from lanectl.config.housekeeping import HousekeepingConfig
from lanectl.config.bus_budget import bus_warnings
from lanectl.config.devices import (BoothScannerConfig, LaneDevices, LedBoardConfig, ModbusRtuBarrier,
                                     SerialPlateReader, VzenithCameraConfig, VzenithMqttCameraConfig)
from lanectl.config.operators import OperatorsConfig
from lanectl.config.site_bus import SiteBusConfig
from lanectl.config.base import Url
from lanectl.config.payments import NEEDS, PaymentsConfig, ProviderName
from lanectl.core.rules import VehicleRules
from lanectl.core.tariff import Tariffs
from lanectl.providers import REGISTRY

LANE_ID = re.compile(r"^[0-9A-Za-z_]{1,20}$")


class ConfigError(Exception):
    """One or more configuration problems, each `file: key: reason`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class HttpConfig(Strict):
    """The public listener: what the payment platforms reach (callbacks, /images, /healthz). The operator CLI
    never uses it, and cameras do not either: they push to the LAN listener (LanConfig)."""

    listen: str = "0.0.0.0:8780"
    max_body_kb: int = Field(4096, gt=0)
    # Floods (adapters/connection_gate.py): connections over the limit are closed at once; a connection without a
    # complete request for idle_timeout_s (idle keep-alive, or a client that sends nothing or dribbles) is closed.
    max_connections: int = Field(256, ge=1, le=65536)
    idle_timeout_s: float = Field(15.0, gt=0, le=3600)
    body_timeout_s: float = Field(30.0, gt=0, le=3600)  # a request body must arrive within this after its headers

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:8780")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class LanConfig(HttpConfig):
    """The LAN listener: cameras push here (POST /camera/<lane id>), never to the public one, and /metrics is
    served here. It opens when a lane has an HTTP camera or metrics are enabled (the default). The default is
    loopback, which no camera can reach: bind it to the booth LAN interface's address (e.g. 192.168.10.2:8781),
    never to the interface the internet reaches."""

    listen: str = "127.0.0.1:8781"
    max_connections: int = Field(64, ge=1, le=65536)


class MetricsConfig(Strict):
    """/metrics in the Prometheus text format (docs/operations.md "Metrics"), on the LAN listener only — never on
    the public one. While enabled, the LAN listener opens even without an HTTP camera (by default on loopback:
    a Prometheus on the lane PC scrapes it; bind `lan.listen` to the booth LAN for one elsewhere)."""

    enabled: bool = True
    path: str = "/metrics"

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/") or len(v) < 2 or any(c in v for c in "{}?# ") or v.rstrip("/") == "/healthz" \
                or v.startswith("/camera/"):
            raise ValueError(f"expected a path of its own such as /metrics, not {v!r}")
        return v


class ControlConfig(Strict):
    socket: Path = Path("/run/lanectl/control.sock")
    mode: int = Field(0o660, ge=0, le=0o777)  # file mode of the socket: "0660" / "0o660" in YAML
    group: Optional[str] = None
    max_connections: int = Field(32, ge=1, le=1024)  # its own room: operators get in while the HTTP port is flooded
    idle_timeout_s: float = Field(10.0, gt=0, le=3600)

    @field_validator("mode", mode="before")
    @classmethod
    def _octal(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return int(v.removeprefix("0o"), 8)
            except ValueError:
                raise ValueError(f"expected an octal file mode such as \"0660\", not {v!r}") from None
        return v


class WebhookUpload(Strict):
    """Generic upload of every record as JSON (the lot's own back office)."""

    url: str
    token: Optional[SecretRef] = None
    rate_per_s: float = Field(5.0, gt=0, le=100)
    timeout_s: float = Field(5.0, gt=0, le=60)


class UploadsConfig(Strict):
    webhook: Optional[WebhookUpload] = None


class ImagesConfig(Strict):
    """How the payment platforms fetch the cameras' pictures (Bolink inpark_img/outpark_img, tdzn enterPic/
    leavePic take a URL). `public_url` is the listener's /images as the platforms reach it from outside (the
    lot's public address, a port forward or a reverse proxy), e.g. https://lot.example.com/lanectl/images.
    Empty: pictures stay on the lane PC and uploads carry none."""

    public_url: Optional[Url] = None


ENV_PREFIX = "LANECTL_"  # LANECTL_DATABASE, LANECTL_CONTROL__SOCKET: override the site file (nested keys: __)


class SiteConfig(BaseModel):
    """site.yaml. The environment's overrides are applied by pydantic-settings (`site_config`), which is imported
    only when an override is set: its sources cost the daemon ~1.2 MiB of its 60 MiB budget otherwise."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    park_id: str = Field(min_length=1, max_length=64)
    timezone: str = "Asia/Shanghai"
    database: Path = Path("/var/lib/lanectl/lanectl.db")
    http: HttpConfig = HttpConfig()
    lan: LanConfig = LanConfig()  # cameras (the booth LAN); see LanConfig
    metrics: MetricsConfig = MetricsConfig()  # /metrics on the LAN listener
    control: ControlConfig = ControlConfig()
    # who may open / top up through the control socket (config/operators.py); None: any socket-group member
    operators: Optional[OperatorsConfig] = None
    secrets_file: Optional[Path] = None
    uploads: UploadsConfig = UploadsConfig()
    images: ImagesConfig = ImagesConfig()
    tariffs: Tariffs  # the lot's prices (docs/tariffs.md)
    vehicles: VehicleRules = VehicleRules()  # monthly cards, white/black lists, stored value
    payments: PaymentsConfig = PaymentsConfig()  # settlement timing and platform credentials
    site_bus: SiteBusConfig = SiteBusConfig()  # the lot's MQTT broker (config/site_bus.py, docs/site-bus.md)
    housekeeping: HousekeepingConfig = HousekeepingConfig()  # backups, retention, VACUUM, shift report
    console: ConsoleConfig = ConsoleConfig()  # the booth console on the LAN listener (docs/console.md)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Asia/Shanghai)") from None
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def env_overrides(environ: Mapping[str, str]) -> list[str]:
    """The variables in `environ` that name a site file key (LANECTL_<KEY>[__<SUBKEY>...], any case)."""
    return [k for k in environ if k.upper().startswith(ENV_PREFIX)
            and k[len(ENV_PREFIX):].split("__")[0].lower() in SiteConfig.model_fields]


def site_config(data: dict[str, Any], environ: Mapping[str, str] = os.environ) -> SiteConfig:
    """site.yaml's data validated, the environment's overrides winning over it."""
    if not env_overrides(environ):
        return SiteConfig(**data)
    return _with_environment()(**data)


@functools.cache
def _with_environment() -> type[SiteConfig]:
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

    class SiteSettings(SiteConfig, BaseSettings):  # type: ignore[misc]
        model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid",
                                          frozen=True)

        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                       init_settings: PydanticBaseSettingsSource,
                                       env_settings: PydanticBaseSettingsSource,
                                       dotenv_settings: PydanticBaseSettingsSource,
                                       file_secret_settings: PydanticBaseSettingsSource
                                       ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (env_settings, init_settings)  # the YAML comes in as init data: the environment wins

    return SiteSettings


class LaneRulesConfig(Strict):
    duplicate_window_s: float = Field(10.0, ge=0, le=600)
    min_confidence: int = Field(0, ge=0, le=100)
    open_confirm_s: float = Field(6.0, gt=0, le=60)
    close_confirm_s: float = Field(10.0, gt=0, le=120)
    pass_timeout_s: float = Field(120.0, gt=0, le=3600)
    auto_close: bool = False
    # a plate read before a restart, still waiting for its turn, is acted upon only if younger than this
    stale_plate_s: float = Field(30.0, gt=0, le=3600)


class LaneConfig(Strict):
    id: str
    name: str = ""
    direction: Literal["entry", "exit"]
    devices: LaneDevices = LaneDevices()
    rules: LaneRulesConfig = LaneRulesConfig()
    channel_id: str = ""  # the lane's channel id on the platforms (in/out_channel_id); default: the lane id
    payments: tuple[ProviderName, ...] = ()  # exit lanes: the providers that charge here, tried in this order
    etc_lane_no: str = ""  # the ETC antenna / box id of this lane (bolink_etc: lane_no of 3.7)

    @property
    def channel(self) -> str:
        return self.channel_id or self.id

    @field_validator("payments")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError("a provider is listed twice")
        return v

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not LANE_ID.match(v):
            raise ValueError("lane id must be 1-20 characters of [0-9A-Za-z_] (it is part of record ids)")
        return v


@dataclass(frozen=True)
class Config:
    directory: Path
    site: SiteConfig
    lanes: tuple[LaneConfig, ...]
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    warnings: tuple[str, ...] = ()

    def secret(self, ref: SecretRef, where: str) -> str:
        """The credential behind a reference; ConfigError names where it was asked for."""
        if ref.env is not None:
            value = os.environ.get(ref.env)
            if not value:
                raise ConfigError([f"{where}: environment variable {ref.env} is not set"])
            return value
        assert ref.secret is not None
        if ref.secret not in self.secrets:
            raise ConfigError([f"{where}: key {ref.secret!r} not found in secrets file {self.site.secrets_file}"])
        return self.secrets[ref.secret]

    def lane(self, lane_id: str) -> LaneConfig:
        for lane in self.lanes:
            if lane.id == lane_id:
                return lane
        raise KeyError(lane_id)


# --- loading -------------------------------------------------------------------------------------------------
def _read_yaml(path: Path, problems: list[str]) -> Optional[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{path}: file not found")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read: {exc}")
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problems.append(f"{path}:{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}")
        return None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{path}: top level must be a mapping of keys, not {type(data).__name__}")
        return None
    return data


def _explain(path: Path, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        msg = msg.removeprefix("Value error, ")
        out.append(f"{path}: {key}: {msg}")
    return out


def _resolve(base: Path, p: Optional[Path]) -> Optional[Path]:
    return None if p is None else (p if p.is_absolute() else (base / p))


def load_config(directory: str | Path, *, credentials: bool = True) -> Config:
    """Load and validate DIR/site.yaml and DIR/lanes/*.yaml; raise ConfigError with every problem found.

    credentials=False (`lanectl fee`, reading the socket path): the secrets file and the environment variables
    holding keys are not touched, and Config.secret() finds nothing."""
    d = Path(directory)
    problems: list[str] = []
    warnings: list[str] = []
    if not d.is_dir():
        raise ConfigError([f"{d}: not a directory (expected site.yaml and lanes/*.yaml in it)"])
    site_path = d / "site.yaml"
    site: Optional[SiteConfig] = None
    data = _read_yaml(site_path, problems)
    if data is not None:
        try:
            site = site_config(data)
        except ValidationError as exc:
            problems.extend(_explain(site_path, exc))
    lanes: list[LaneConfig] = []
    lane_files = sorted((d / "lanes").glob("*.yaml")) + sorted((d / "lanes").glob("*.yml"))
    if not lane_files:
        problems.append(f"{d / 'lanes'}: no lane files (*.yaml) found")
    seen: dict[str, Path] = {}
    for path in lane_files:
        data = _read_yaml(path, problems)
        if data is None:
            continue
        try:
            lane = LaneConfig.model_validate(data)
        except ValidationError as exc:
            problems.extend(_explain(path, exc))
            continue
        if lane.id in seen:
            problems.append(f"{path}: id: lane id {lane.id!r} already used in {seen[lane.id]}")
            continue
        seen[lane.id] = path
        lanes.append(lane)
    problems.extend(_check_ports(lanes, seen))
    if site is not None:
        problems.extend(_check_payments(site, lanes, seen))
    problems.extend(_check_relay(lanes, seen))
    problems.extend(_check_camera_auth(lanes, seen))
    secrets: dict[str, str] = {}
    refs: list[tuple[str, SecretRef]] = []
    if site is not None:
        site = site.model_copy(update={"database": _resolve(d, site.database),
                                       "secrets_file": _as_credential(_resolve(d, site.secrets_file)),
                                       "site_bus": _resolve_bus(d, site.site_bus),
                                       "console": site.console.model_copy(
                                           update={"users_file": _resolve(d, site.console.users_file)})})
        problems.extend(_check_site_bus(site_path, site.site_bus))
        problems.extend(_check_mqtt_cameras(site_path, site.site_bus, lanes, seen))
        refs = [(f"{site_path}: {key}", ref) for key, ref in secret_refs(site)
                if site.site_bus.enabled or not key.startswith("site_bus.")]  # a disabled bus needs no secrets
        refs += [(f"{seen[lane.id]}: {key}", ref) for lane in lanes for key, ref in secret_refs(lane)]
        if credentials:
            secrets = _read_secrets(site_path, site.secrets_file, refs, problems, warnings)
    if problems:
        raise ConfigError(problems)
    assert site is not None
    if site.operators is None:
        warnings.append(f"{site_path}: operators: not configured: every member of the control socket's group may "
                        "open barriers and top up under any name it types (its uid is recorded); map uids to "
                        "operators and roles to check who acts (docs/operators.md)")
    if site.console.enabled and not site.console.users_file.exists():
        warnings.append(f"{site_path}: console.users_file: {site.console.users_file} does not exist: nobody can log "
                        f"in to the console; add an account with `lanectl console-user --config {d} add NAME`")
    config = Config(d, site, tuple(lanes), secrets, tuple(warnings))
    if credentials:
        for where, ref in refs:
            try:
                config.secret(ref, where)
            except ConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
        _check_camera_secrets(config, seen)
    warnings.extend(_camera_warnings(config, site_path, seen))
    warnings.extend(bus_warnings({lane.id: lane.devices.barrier for lane in lanes
                                  if isinstance(lane.devices.barrier, ModbusRtuBarrier)}, seen))
    return Config(d, site, tuple(lanes), secrets, tuple(warnings))


def _resolve_bus(base: Path, bus: SiteBusConfig) -> SiteBusConfig:
    """TLS files relative to the configuration directory, like the database."""
    if bus.tls is None:
        return bus
    tls = bus.tls.model_copy(update={k: _resolve(base, getattr(bus.tls, k)) for k in ("ca", "cert", "key")})
    return bus.model_copy(update={"tls": tls})


def _check_site_bus(site_path: Path, bus: SiteBusConfig) -> list[str]:
    """An enabled bus's TLS files must be readable now, not at the first connection attempt."""
    if not bus.enabled or bus.tls is None:
        return []
    problems = []
    for name in ("ca", "cert", "key"):
        path = getattr(bus.tls, name)
        if path is not None and not os.access(path, os.R_OK):
            why = "file not found" if not path.exists() else "not readable by this user"
            problems.append(f"{site_path}: site_bus.tls.{name}: {path}: {why}")
    return problems


def _check_mqtt_cameras(site_path: Path, bus: SiteBusConfig, lanes: list[LaneConfig],
                        files: dict[str, Path]) -> list[str]:
    """A camera over MQTT publishes to the lot's broker: the site bus must be on, and each camera's topic is one
    lane's (two lanes on one camera would both take its plates)."""
    problems, topics = [], {}
    for lane in lanes:
        cam = lane.devices.camera
        if not isinstance(cam, VzenithMqttCameraConfig):
            continue
        if not bus.enabled:
            problems.append(f"{files[lane.id]}: devices.camera.kind: vzenith_mqtt needs the site bus: set "
                            f"site_bus.enabled: true in {site_path} (the camera publishes to the lot's broker)")
        first = topics.setdefault(cam.topic_name, lane.id)
        if first != lane.id:
            problems.append(f"{files[lane.id]}: devices.camera.topic: {cam.topic_name} is already lane {first}'s "
                            f"camera ({files[first]}): each camera publishes for one lane")
    return problems


def _check_camera_auth(lanes: list[LaneConfig], files: dict[str, Path]) -> list[str]:
    """A camera push can open the barrier: it must authenticate (basic auth or a token), or say insecure."""
    return [f"{files[lane.id]}: devices.camera: no authentication: give basic_auth {{username, password: {{secret: "
            "KEY}}}} or token: {secret: KEY} (the camera's push URL is then /camera/<lane>/<token>), or insecure: "
            "true to accept pushes from anyone who reaches the LAN listener (allow_from alone is not "
            "authentication: addresses are spoofable on a LAN)"
            for lane in lanes if lane.devices.camera is not None and not lane.devices.camera.authenticated
            and not lane.devices.camera.insecure]


def _check_camera_secrets(config: Config, files: dict[str, Path]) -> None:
    """The cameras' credentials exist and fit where the camera puts them."""
    problems = []
    for lane in config.lanes:
        if not isinstance(lane.devices.camera, VzenithCameraConfig):  # a camera over MQTT: the broker's credentials
            continue
        try:
            camera_auth(lane.devices.camera, config.secret, f"{files[lane.id]}: devices.camera")
        except ConfigError as exc:
            problems.extend(exc.problems)
        except CredentialError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(problems)


def _camera_warnings(config: Config, site_path: Path, files: dict[str, Path]) -> list[str]:
    cameras = [lane for lane in config.lanes if isinstance(lane.devices.camera, VzenithCameraConfig)]  # HTTP
    out = [f"{files[lane.id]}: devices.camera.insecure: pushes are accepted without credentials: anyone who "
           "reaches the LAN listener can open this lane's barrier" for lane in cameras
           if lane.devices.camera is not None and lane.devices.camera.insecure]
    host = config.site.lan.host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if cameras and loopback:
        out.append(f"{site_path}: lan.listen: {config.site.lan.listen} is loopback: cameras on the booth LAN cannot "
                   "reach it (set it to the booth LAN interface's address)")
    if (cameras or config.site.metrics.enabled) and host in ("0.0.0.0", "::", ""):
        out.append(f"{site_path}: lan.listen: {config.site.lan.listen} listens on every interface, the one the "
                   "internet reaches too: camera pushes and /metrics would be open there (set it to the booth LAN "
                   "interface's address)")
    return out


def secret_refs(model: BaseModel, prefix: str = "") -> list[tuple[str, SecretRef]]:
    """(key, reference) for every credential a loaded section refers to. A section left out of the YAML is
    None and refers to nothing, so this is exactly what the enabled configuration needs."""
    found: list[tuple[str, SecretRef]] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, SecretRef):
            found.append((key, value))
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{key}.{name}" if key else name)
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                walk(item, f"{key}.{i}")
        elif isinstance(value, dict):
            for k, item in value.items():
                walk(item, f"{key}.{k}")

    walk(model, prefix)
    return found


def _as_credential(path: Optional[Path]) -> Optional[Path]:
    """Under systemd the secrets file arrives as a credential named after it (the unit's
    LoadCredential=secrets.yaml:/etc/lanectl/secrets.yaml): systemd reads it as root, so the file itself can stay
    root-only (0600) and the service reads its copy in $CREDENTIALS_DIRECTORY. Elsewhere: the path as written."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if path is None or not directory:
        return path
    copy = Path(directory) / path.name
    return copy if copy.is_file() else path


def _read_secrets(site_path: Path, path: Optional[Path], refs: list[tuple[str, SecretRef]], problems: list[str],
                  warnings: list[str]) -> dict[str, str]:
    """The secrets file, read only when something enabled refers to a key of it; refused when users other
    than its owner and group may read it."""
    wanted = [(where, ref) for where, ref in refs if ref.secret is not None]
    if path is None:
        problems.extend(f"{where}: refers to secret {ref.secret!r} but {site_path} sets no secrets_file"
                        for where, ref in wanted)
        return {}
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if wanted:
            keys = ", ".join(sorted({str(ref.secret) for _, ref in wanted}))
            problems.append(f"{path}: file not found (secrets_file; needed for {keys})")
        else:
            warnings.append(f"{path}: secrets_file not found; nothing enabled refers to it yet")
        return {}
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc}")
        return {}
    if mode & 0o007:
        problems.append(f"{path}: mode {stat.S_IMODE(mode):04o} lets every user read the credentials; "
                        f"allow only its owner and group: chmod 640 {path}")
        return {}
    if not wanted:
        return {}
    data = _read_yaml(path, problems)
    return {} if data is None else {str(k): str(v) for k, v in data.items()}


def _check_relay(lanes: list[LaneConfig], files: dict[str, Path]) -> list[str]:
    """A camera relay only raises the arm; the barrier must lower itself (rules.auto_close)."""
    return [f"{files[lane.id]}: rules.auto_close: must be true with devices.camera.relay_barrier (the camera "
            "relay cannot lower the arm; the barrier closes by its own loop)"
            for lane in lanes if lane.devices.camera is not None and lane.devices.camera.relay_barrier
            and not lane.rules.auto_close]


def _check_payments(site: SiteConfig, lanes: list[LaneConfig], files: dict[str, Path]) -> list[str]:
    problems = []
    configured = site.payments.configured()
    for lane in lanes:
        if lane.payments and lane.direction != "exit":
            problems.append(f"{files[lane.id]}: payments: only exit lanes charge (this lane is an entry)")
        for name in lane.payments:
            if NEEDS[name] not in configured:
                problems.append(f"{files[lane.id]}: payments: {name} has no credentials: add "
                                f"payments.{NEEDS[name]} to site.yaml")
        for name in dict.fromkeys(NEEDS[charge] for charge in lane.payments):  # each platform once
            provider, section = REGISTRY[name], site.payments.section(name)
            if provider.check_lane is not None:
                problems += provider.check_lane(section, site, lane, str(files[lane.id]))
    return problems


def _check_ports(lanes: list[LaneConfig], files: dict[str, Path]) -> list[str]:
    """Several barrier modules may share one RS-485 bus (same line settings, different unit ids); a plate
    reader needs its port to itself."""
    problems: list[str] = []
    owners: dict[str, tuple[str, Any]] = {}
    for lane in lanes:
        for role, dev in (("barrier", lane.devices.barrier), ("plate_reader", lane.devices.plate_reader),
                          ("display", lane.devices.display), ("scanner", lane.devices.scanner)):
            port = getattr(dev, "port", None)
            if not isinstance(dev, (ModbusRtuBarrier, SerialPlateReader, LedBoardConfig, BoothScannerConfig)) or \
                    port is None:
                continue
            where = f"{files[lane.id]}: devices.{role}.port"
            if port not in owners:
                owners[port] = (lane.id, dev)
                continue
            other_lane, other = owners[port]
            if isinstance(dev, ModbusRtuBarrier) and isinstance(other, ModbusRtuBarrier):
                line = ("baudrate", "bytesize", "parity", "stopbits")
                if any(getattr(dev, k) != getattr(other, k) for k in line):
                    problems.append(f"{where}: shares bus {port} with lane {other_lane} but with other line settings")
                elif dev.unit == other.unit:
                    problems.append(f"{where}: unit {dev.unit} on bus {port} is already lane {other_lane}'s")
            else:
                problems.append(f"{where}: {port} is already used by lane {other_lane}")
    return problems
