"""Per-lane device sections of the lane YAML (barrier IO, plate reader, HTTP camera, LED board). Typos are
errors (extra="forbid")."""

from __future__ import annotations

import ipaddress
import string
from typing import Annotated, ClassVar, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from lanectl.config.base import SecretRef, Strict


class SerialLine(Strict):
    port: str  # a tty path: /dev/ttyUSB0, /dev/serial/by-id/..., a pty from the HIL rig
    baudrate: int = Field(9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1


class PointMap(Strict):
    """Modbus addresses (0-based) of the barrier IO module; the default is the map in lane-hardware.md."""

    open: int = Field(0, ge=0)  # coil, pulse
    close: int = Field(1, ge=0)  # coil, pulse
    stop: int = Field(2, ge=0)  # coil, pulse
    arming: int = Field(0, ge=0)  # discrete input, level
    safety: int = Field(1, ge=0)
    up_limit: int = Field(2, ge=0)
    down_limit: int = Field(3, ge=0)
    anti_smash: Optional[int] = Field(4, ge=0)  # null when the lane has no anti-smash sensor

    @model_validator(mode="after")
    def _distinct(self) -> "PointMap":
        coils = [self.open, self.close, self.stop]
        inputs = [self.arming, self.safety, self.up_limit, self.down_limit]
        if self.anti_smash is not None:
            inputs.append(self.anti_smash)
        if len(set(coils)) != len(coils):
            raise ValueError("open, close and stop must be different coils")
        if len(set(inputs)) != len(inputs):
            raise ValueError("arming, safety, up_limit, down_limit and anti_smash must be different inputs")
        return self


class _ModbusCommon(Strict):
    unit: int = Field(1, ge=0, le=247)
    points: PointMap = PointMap()
    poll_ms: int = Field(50, ge=10, le=5000)
    timeout_s: float = Field(0.5, gt=0, le=10)
    retries: int = Field(1, ge=0, le=5)
    pulse_ms: int = Field(300, ge=0, le=5000)  # 0: write ON only, the module resets the coil itself
    # read the command coils back (FC 1) after resetting them at start / reconnect; false for a module that
    # cannot (the reset OFF is then trusted)
    coil_readback: bool = True


class ModbusRtuBarrier(_ModbusCommon, SerialLine):
    kind: Literal["modbus_rtu"]


class ModbusTcpBarrier(_ModbusCommon):
    kind: Literal["modbus_tcp"]
    host: str
    tcp_port: int = Field(502, gt=0, lt=65536)


BarrierConfig = Annotated[Union[ModbusRtuBarrier, ModbusTcpBarrier], Field(discriminator="kind")]


class SerialPlateReader(SerialLine):
    kind: Literal["serial_line"]
    encoding: Literal["gbk", "utf-8"] = "gbk"
    delimiter: str = Field(",", min_length=1, max_length=3)


PlateReaderConfig = Annotated[Union[SerialPlateReader], Field(discriminator="kind")]


IpNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class CameraBasicAuth(Strict):
    """HTTP basic auth as the camera sends it (its push settings: user name and password)."""

    username: str = Field(min_length=1, max_length=64)
    password: SecretRef  # never inline: {secret: KEY} of the secrets file or {env: VAR}

    @field_validator("username")
    @classmethod
    def _no_colon(cls, v: str) -> str:
        if ":" in v or not v.isprintable():
            raise ValueError("a basic-auth user name cannot contain ':' or control characters")
        return v


class VzenithCameraConfig(Strict):
    """A Vzenith-style camera pushing to POST /camera/<lane id> on the LAN listener (site `lan.listen`).

    Authentication (docs: README "HTTP cameras"): `basic_auth` (the camera's push user name + password) and/or
    `token` (a per-camera secret the camera puts in its push URL: /camera/<lane id>/<token>); with both, both
    must match. `allow_from` limits the source addresses; it is a second fence, not authentication (an address
    is easily spoofed on a LAN), so a camera with only an allow-list still needs `insecure: true`.
    """

    kind: Literal["vzenith_http"]
    allow_from: tuple[IpNetwork, ...] = ()  # e.g. [192.168.10.21, 192.168.10.0/28]; empty: any source
    basic_auth: Optional[CameraBasicAuth] = None
    token: Optional[SecretRef] = None  # at least 16 URL-safe characters (A-Z a-z 0-9 - _ . ~)
    insecure: bool = False  # accept pushes without credentials: anyone who reaches the LAN listener can open
    # The camera's relay raises the barrier (`info: ok` in a reply): installs without a Modbus IO module. The
    # barrier must close by itself (lane rules auto_close), as the relay cannot lower it.
    relay_barrier: bool = False
    relay_cycle_s: float = Field(8.0, gt=0, le=300)  # after the pulse, when the arm is taken to be down again
    relay_deliver_s: float = Field(5.0, gt=0, le=60)  # an OPEN not carried by a reply within this fails
    reply_wait_s: float = Field(1.5, ge=0, le=5)  # a push's reply waits this long for the lane's OPEN
    min_confidence: int = Field(0, ge=0, le=100)  # lower reads are dropped at the camera
    serialno: Optional[str] = None  # accept pushes only from this camera (two cameras on one URL is a mistake)
    save_images: bool = True
    image_retention: int = Field(2000, ge=1, le=1_000_000)  # picture files kept for this lane (newest)
    max_image_kb: int = Field(1024, ge=16, le=16384)  # per picture; a bigger one is answered 413

    @field_validator("allow_from", mode="before")
    @classmethod
    def _networks(cls, v: object) -> object:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, (list, tuple)):
            return v
        out = []
        for item in v:
            try:
                out.append(ipaddress.ip_network(str(item), strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 192.168.10.21 or "
                                 "192.168.10.0/24)") from None
        return tuple(out)

    @model_validator(mode="after")
    def _authenticated(self) -> "VzenithCameraConfig":
        if self.insecure and (self.basic_auth is not None or self.token is not None):
            raise ValueError("insecure: true with basic_auth or token: drop insecure (the credentials are checked)")
        return self

    @property
    def authenticated(self) -> bool:
        return self.basic_auth is not None or self.token is not None


class VzenithMqttCameraConfig(Strict):
    """A Vzenith camera publishing its recognitions (`ivs_result`) to the lot's MQTT broker (the site bus).

    The lane subscribes to exactly this camera's topic: `topic`, or by default the camera's own
    device/<serialno>/message/up/ivs_result. Authentication is the broker's: the camera has its own user and may
    publish only to its topic (docs/site-bus.md "Cameras over MQTT"), and `serialno` is checked in every message.
    There is no reply to a message, so the camera's relay cannot be the barrier: the lane needs a Modbus barrier.
    """

    kind: Literal["vzenith_mqtt"]
    serialno: Optional[str] = Field(None, pattern=r"^[0-9A-Za-z_.-]{1,64}$")  # the camera's sn (on its label)
    topic: Optional[str] = Field(None, min_length=1, max_length=256)  # default device/<serialno>/message/up/ivs_result
    relay_barrier: bool = False  # refused when true: nothing can carry an OPEN back to this camera
    min_confidence: int = Field(0, ge=0, le=100)  # lower reads are dropped at the camera
    # A recognition older than this by the camera's clock is counted, not sent to the lane: the broker hands a
    # booth that was away its queued backlog, and a retained message at every subscribe; neither is a car at the
    # barrier now. null: no check (a camera whose clock cannot be kept right).
    max_age_s: Optional[float] = Field(60.0, gt=0, le=86400)
    save_images: bool = True
    image_retention: int = Field(2000, ge=1, le=1_000_000)  # picture files kept for this lane (newest)
    max_image_kb: int = Field(1024, ge=16, le=16384)  # per picture; a message with a bigger one is skipped

    @field_validator("topic")
    @classmethod
    def _one_topic(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        if "+" in v or "#" in v:
            raise ValueError(f"{v!r}: no wildcards (+, #): the topic names exactly one camera")
        if v.startswith("$") or "\x00" in v or not v.isprintable() or "" in v.split("/") or " " in v:
            raise ValueError(f"{v!r}: not a topic name (no empty levels, spaces, control characters or leading $)")
        return v

    @model_validator(mode="after")
    def _mqtt_camera(self) -> "VzenithMqttCameraConfig":
        if self.relay_barrier:
            raise ValueError("relay_barrier: a camera over MQTT gets no reply, so its relay cannot raise the barrier: "
                             "configure a Modbus barrier (devices.barrier) or an HTTP camera (kind: vzenith_http)")
        if self.serialno is None and self.topic is None:
            raise ValueError("give serialno (the camera's sn; its topic is then device/<serialno>/message/up/"
                             "ivs_result) or topic (the one topic this camera publishes to)")
        return self

    @property
    def topic_name(self) -> str:
        return self.topic if self.topic is not None else f"device/{self.serialno}/message/up/ivs_result"

    # the HTTP camera's authentication checks pass: the broker authenticates this camera (its own user and topic)
    insecure: ClassVar[bool] = False
    authenticated: ClassVar[bool] = True


CameraConfig = Annotated[Union[VzenithCameraConfig, VzenithMqttCameraConfig], Field(discriminator="kind")]

# The lane's messages (lanectl.core.effects.Display.key) and the fields each one carries.
MESSAGE_FIELDS: dict[str, frozenset[str]] = {
    "welcome": frozenset({"plate", "message", "vehicle_class"}),
    "refused": frozenset({"plate", "message"}),
    "goodbye": frozenset({"plate"}),
    "pay": frozenset({"plate", "amount", "stay"}),
    "booth": frozenset({"plate", "amount", "stay"}),
    "balance_short": frozenset({"plate", "amount", "stay"}),
    "paid": frozenset({"plate", "amount"}),
    "stored_value_paid": frozenset({"plate", "amount", "balance"}),
    "pay_fallback": frozenset({"plate", "amount"}),
    "paying": frozenset({"plate"}),
    "fault": frozenset(),
}
QR_FIELDS = frozenset({"plate", "amount", "lane"})

# Default board wording (lane-hardware.md). "|" splits display lines; the voice reads it as a space.
DEFAULT_TEMPLATES: dict[str, str] = {
    "welcome": "{message}|{plate}",
    "refused": "{plate}|{message}",
    "goodbye": "一路顺风",
    "pay": "{plate}|停车{stay} 请缴费{amount}",
    "booth": "{plate}|请到岗亭处理",
    "balance_short": "{plate}|余额不足 请缴费{amount}",
    "paid": "{plate}|支付成功 一路顺风",
    "stored_value_paid": "{plate}|扣费{amount} 余额{balance}",
    "pay_fallback": "{plate}|请扫码缴费{amount}",
    "paying": "{plate}|正在支付 请稍候",
    "fault": "道闸故障|请联系管理员",
}


def template_fields(template: str) -> set[str]:
    """The placeholders of a template; ValueError for broken braces, {a.b}, {a[0]} or {}."""
    names = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"placeholder {{{name}}} is not a field name")
        names.add(name)
    return names


def check_template(template: str, allowed: frozenset[str]) -> None:
    try:
        names = template_fields(template)
    except ValueError as exc:  # Formatter.parse: "Single '}' encountered", "expected '}'"...
        raise ValueError(f"{template!r}: {exc}") from None
    unknown = sorted(names - allowed)
    if unknown:
        raise ValueError(f"{template!r}: unknown placeholder {{{unknown[0]}}} (this message has: "
                         f"{', '.join(sorted(allowed)) or 'no fields'})")
    try:
        template.encode("gbk")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{template!r}: the board's GBK text cannot carry {template[exc.start]!r}") from None


class LedBoardConfig(SerialLine):
    """An LED text + voice board: on its own RS-485 line (port ...) or behind the camera (via_camera)."""

    kind: Literal["led_board"]
    port: Optional[str] = None  # type: ignore[assignment]  # optional here: via_camera needs none
    via_camera: bool = False  # frames ride in the camera's replies (serialData)
    camera_channel: int = Field(0, ge=0, le=255)
    address: int = Field(0, ge=0, le=255)
    lines: int = Field(2, ge=1, le=4)  # text lines on the board
    voice: bool = True
    templates: dict[str, str] = {}  # message key -> template, over DEFAULT_TEMPLATES
    qr_url: Optional[str] = None  # shown as a QR code with pay_fallback, e.g. "https://pay.example/{plate}"
    write_timeout_s: float = Field(1.0, gt=0, le=10)

    @field_validator("templates")
    @classmethod
    def _templates(cls, v: dict[str, str]) -> dict[str, str]:
        for key, template in v.items():
            if key not in MESSAGE_FIELDS:
                raise ValueError(f"{key}: unknown message (one of: {', '.join(MESSAGE_FIELDS)})")
            try:
                check_template(template, MESSAGE_FIELDS[key])
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return v

    @field_validator("qr_url")
    @classmethod
    def _qr(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            if not v.strip():
                raise ValueError("empty URL (leave qr_url out for no QR code)")
            check_template(v, QR_FIELDS)
        return v

    @model_validator(mode="after")
    def _one_link(self) -> "LedBoardConfig":
        if (self.port is None) == (not self.via_camera):
            raise ValueError("give exactly one of port: /dev/... (the board's own RS-485 line) or via_camera: true")
        return self


DisplayConfig = Annotated[Union[LedBoardConfig], Field(discriminator="kind")]


class BoothScannerConfig(SerialLine):
    """The booth's payment-code scanner (扫码枪) on a serial line: a scanned code pays the waiting car."""

    kind: Literal["serial_line"]


class LaneDevices(Strict):
    barrier: Optional[BarrierConfig] = None
    plate_reader: Optional[PlateReaderConfig] = None
    camera: Optional[CameraConfig] = None
    display: Optional[DisplayConfig] = None
    scanner: Optional[BoothScannerConfig] = None

    @model_validator(mode="after")
    def _consistent(self) -> "LaneDevices":
        if self.display is not None and self.display.via_camera and self.camera is None:
            raise ValueError("display.via_camera needs a camera section (the board hangs on the camera's RS-485)")
        if self.display is not None and self.display.via_camera and isinstance(self.camera, VzenithMqttCameraConfig):
            raise ValueError("display.via_camera needs an HTTP camera (kind: vzenith_http): a camera over MQTT gets "
                             "no reply to carry the board's frames")
        if self.barrier is not None and self.camera is not None and self.camera.relay_barrier:
            raise ValueError("barrier and camera.relay_barrier both raise the barrier: configure one of them")
        return self
