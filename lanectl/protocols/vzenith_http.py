"""Vzenith (臻识)-style plate camera HTTP push: the camera POSTs JSON, the lane answers with commands.

Push (one recognition):
    {"AlarmInfoPlate": {"channel": 0, "deviceName": "IVS", "ipaddr": "192.168.1.100", "serialno": "...",
      "result": {"PlateResult": {"license": "粤B12345", "colorType": 1, "type": 1, "confidence": 96,
        "triggerType": 8, "plateid": 17, "isoffline": 0, "timeStamp": {"Timeval": {"sec": ..., "usec": ...}},
        "imageFile": "<base64 jpeg>", "imageFragmentFile": "<base64 jpeg>"}}}}

Field rules: `license` is the one required field (plate-less cars send "无牌车", "_无_" or ""; a license of
separators only, like "-", is noise, not a plate-less car). Every other field may be missing (or null) and
takes a default (0, "", None); a field present with the wrong JSON type is an error — a camera that sends a
list for `confidence` is not trusted for the plate either. Numbers are JSON integers (booleans are not;
`isoffline` may be a boolean). colorType 0..6 maps to lanectl.core.plates.COLORS (0 unknown, 1 blue,
2 yellow, 3 white, 4 black, 5 green, 6 yellow-green); a code outside 0..6 (newer firmware) reads as
"unknown". confidence is clamped to 0..100. A license that is not a plate shape after normalisation is an
error. Images are base64 (whitespace ignored), decoded to bytes; the body itself is bounded by the adapter.
`isoffline` = 1 marks a recognition the camera cached while the lane was unreachable and is sending late:
it says when a car passed, never that one is at the barrier now.

Heartbeats (same URL; answer fast). Accepted shapes, checked in this order (AlarmInfoPlate first, so a plate
push is never taken for a heartbeat), all giving Heartbeat(serialno, device_name):
    {"AlarmInfoPlate": {... no "result", "heartbeat": <anything>}}
    {"heartbeat": {...}}                        serialno / deviceName from the inner object ({} if not one)
    {"AlarmGioIn": {...}}                       an IO-input report: proof of life, nothing more here
    {"type": "heartbeat", ...}                  (case-insensitive) serialno / deviceName at the top level
Any other JSON object is a 400.

Body text: UTF-8 (a BOM is tolerated); a body that is not UTF-8 is read as GBK, which older firmware sends.

Errors: VzenithError only (a ValueError) with the HTTP status to answer: 400 malformed JSON or fields,
413 an image over `max_image_bytes`. parse_push never raises anything else, whatever the bytes.

Reply: build_response() — `"info": "ok"` makes the camera pulse its relay (opens the barrier), so it is
written ONLY for open_gate=True; otherwise the key is left out (the one documented value is "ok", and an
absent command is the least a firmware can misread). `serialData` passes bytes to the camera's RS-485 port
(the LED board). parse_response() reads such a reply back, as the camera does (used by the HIL camera).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from lanectl.core.plates import PLATELESS_WORDS, is_valid_plate, normalize_color, normalize_plate


class VzenithError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PlateResult:
    plate: str  # normalized; "" for a plate-less car
    color: str  # one of lanectl.core.plates.COLORS
    confidence: int  # 0..100
    license: str  # as the camera sent it
    color_type: int = 0
    plate_type: int = 0  # the camera's `type` code
    trigger_type: int = 0
    plate_id: int = 0
    offline: bool = False  # a late, cached recognition (isoffline)
    channel: int = 0
    device_name: str = ""
    ipaddr: str = ""
    serialno: str = ""
    time_sec: Optional[int] = None  # camera clock, seconds since the epoch (timeStamp.Timeval.sec)
    time_usec: int = 0
    image: Optional[bytes] = None  # imageFile, decoded
    plate_image: Optional[bytes] = None  # imageFragmentFile, decoded


@dataclass(frozen=True, slots=True)
class Heartbeat:
    serialno: str = ""
    device_name: str = ""


@dataclass(frozen=True, slots=True)
class CameraCommands:
    """A lane's reply as the camera reads it."""

    open_gate: bool
    serial_data: tuple[tuple[int, bytes], ...] = ()


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, where: str) -> Any:
    """obj[key] checked against `kind`; missing or null -> default. int never takes a bool (JSON true)."""
    value = obj.get(key)
    if value is None:
        return default
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise VzenithError(f"{where}.{key}: expected {_kind_name(kind)}, got {type(value).__name__}")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape (\ud800) would break logs and the database
            raise VzenithError(f"{where}.{key}: not valid text") from None
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", str: "a string", int: "an integer", list: "a list"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def _load(body: bytes) -> Any:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise VzenithError(f"body must be bytes, got {type(body).__name__}")
    raw = bytes(body)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("gbk")
        except UnicodeDecodeError:
            raise VzenithError("body is neither UTF-8 nor GBK text") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise VzenithError("body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int() digit limits
        raise VzenithError(f"body is not JSON: {exc}") from None


def _image(obj: dict[str, Any], key: str, max_bytes: Optional[int]) -> Optional[bytes]:
    text = _get(obj, key, str, "", "PlateResult")
    text = "".join(text.split())  # MIME-style line breaks are harmless
    if not text:
        return None
    if not text.isascii():
        raise VzenithError(f"PlateResult.{key}: not base64 (non-ASCII characters)")
    if max_bytes is not None and len(text) // 4 * 3 - text[-2:].count("=") > max_bytes:
        raise VzenithError(f"PlateResult.{key}: image over {max_bytes} bytes", 413)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VzenithError(f"PlateResult.{key}: not base64 ({exc})") from None


def _heartbeat(obj: dict[str, Any], where: str) -> Heartbeat:
    return Heartbeat(_get(obj, "serialno", str, "", where), _get(obj, "deviceName", str, "", where))


def parse_push(body: bytes, *, max_image_bytes: Optional[int] = None,
               special_prefixes: Optional[Iterable[str]] = None) -> PlateResult | Heartbeat:
    """A camera's POST body -> PlateResult or Heartbeat; VzenithError (status 400 / 413) otherwise.
    `special_prefixes`: the site's plates that start with no province (rules `special_prefixes`)."""
    return parse_push_object(load_body(body), max_image_bytes=max_image_bytes, special_prefixes=special_prefixes)


def load_body(body: bytes) -> Any:
    """A push body's JSON (UTF-8, a BOM tolerated, else GBK); VzenithError (400) when it is not JSON text."""
    return _load(body)


def parse_push_object(doc: Any, *, max_image_bytes: Optional[int] = None,
                      special_prefixes: Optional[Iterable[str]] = None) -> PlateResult | Heartbeat:
    """parse_push on JSON already loaded (the MQTT codec, vzenith_mqtt.py, unwraps its envelope first)."""
    if not isinstance(doc, dict):
        raise VzenithError(f"body must be a JSON object, got {type(doc).__name__}")
    if "AlarmInfoPlate" in doc:  # first: a plate push must never be mistaken for a heartbeat
        alarm = _get(doc, "AlarmInfoPlate", dict, None, "body")
        if alarm is None:
            raise VzenithError("AlarmInfoPlate is null")
        if alarm.get("result") is None and "heartbeat" in alarm:
            return _heartbeat(alarm, "AlarmInfoPlate")
        return _plate(alarm, max_image_bytes, special_prefixes)
    if "heartbeat" in doc:
        inner = doc["heartbeat"]
        return _heartbeat(inner, "heartbeat") if isinstance(inner, dict) else Heartbeat()
    if "AlarmGioIn" in doc:
        return _heartbeat(_get(doc, "AlarmGioIn", dict, {}, "body"), "AlarmGioIn")
    kind = doc.get("type")
    if isinstance(kind, str) and kind.lower() == "heartbeat":
        return _heartbeat(doc, "body")
    raise VzenithError("neither an AlarmInfoPlate push nor a heartbeat")


def _plate(alarm: dict[str, Any], max_image_bytes: Optional[int],
           special_prefixes: Optional[Iterable[str]]) -> PlateResult:
    where = "AlarmInfoPlate"
    result = _get(alarm, "result", dict, None, where)
    pr = None if result is None else _get(result, "PlateResult", dict, None, f"{where}.result")
    if pr is None:
        raise VzenithError("AlarmInfoPlate.result.PlateResult is missing")
    if "license" not in pr or pr["license"] is None:
        raise VzenithError("PlateResult.license is missing")
    license_ = _get(pr, "license", str, "", "PlateResult")
    # "_无_" is checked as sent: normalize_plate strips the underscores before its own plate-less check
    plate = "" if license_.strip().upper() in PLATELESS_WORDS else normalize_plate(license_)
    # as in plate_serial: "" is plate-less for an empty license or a word (无牌车, NONE); "-" alone is noise
    noise = plate == "" and license_.strip() != "" and not any(c.isalpha() for c in license_)
    if noise or not is_valid_plate(plate, special_prefixes):
        raise VzenithError(f"PlateResult.license {license_!r} is not a plate")
    color_type = _get(pr, "colorType", int, 0, "PlateResult")
    color = normalize_color(str(color_type)) if 0 <= color_type <= 6 else "unknown"
    assert color is not None
    timeval = _get(_get(pr, "timeStamp", dict, {}, "PlateResult"), "Timeval", dict, {}, "PlateResult.timeStamp")
    return PlateResult(
        plate=plate,
        color=color,
        confidence=min(100, max(0, _get(pr, "confidence", int, 0, "PlateResult"))),
        license=license_,
        color_type=color_type,
        plate_type=_get(pr, "type", int, 0, "PlateResult"),
        trigger_type=_get(pr, "triggerType", int, 0, "PlateResult"),
        plate_id=_get(pr, "plateid", int, 0, "PlateResult"),
        offline=bool(_get(pr, "isoffline", (int, bool), 0, "PlateResult")),
        channel=_get(alarm, "channel", int, 0, where),
        device_name=_get(alarm, "deviceName", str, "", where),
        ipaddr=_get(alarm, "ipaddr", str, "", where),
        serialno=_get(alarm, "serialno", str, "", where),
        time_sec=_get(timeval, "sec", int, None, "Timeval"),
        time_usec=_get(timeval, "usec", int, 0, "Timeval"),
        image=_image(pr, "imageFile", max_image_bytes),
        plate_image=_image(pr, "imageFragmentFile", max_image_bytes),
    )


# -- reply ----------------------------------------------------------------------------------------------
def build_response(*, open_gate: bool = False, serial_data: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """The reply body: compact JSON bytes. `"info": "ok"` only when open_gate is True. serial_data entries are
    (camera serial channel, bytes for that port). Bad arguments: VzenithError with status 500 (a lane bug)."""
    reply: dict[str, Any] = {}
    if open_gate is True:
        reply["info"] = "ok"
    elif open_gate is not False:
        raise VzenithError(f"open_gate must be True or False, got {open_gate!r}", 500)
    if serial_data:
        entries = []
        for item in serial_data:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise VzenithError(f"serial_data entries are (channel, bytes), got {item!r}", 500)
            channel, data = item
            if not isinstance(channel, int) or isinstance(channel, bool) or channel < 0:
                raise VzenithError(f"serial channel must be an integer >= 0, got {channel!r}", 500)
            if not isinstance(data, (bytes, bytearray)) or not data:
                raise VzenithError(f"serial data must be non-empty bytes, got {data!r}", 500)
            entries.append({"serialChannel": channel, "data": base64.b64encode(bytes(data)).decode("ascii"),
                            "dataLen": len(data)})
        reply["serialData"] = entries
    return json.dumps({"Response_AlarmInfoPlate": reply}, separators=(",", ":")).encode("ascii")


def parse_response(body: bytes) -> CameraCommands:
    """A lane's reply as the camera reads it: the relay pulses only on `"info": "ok"`. VzenithError (400)
    for a body the camera could not act on."""
    doc = _load(body)
    if not isinstance(doc, dict):
        raise VzenithError("reply must be a JSON object")
    reply = _get(doc, "Response_AlarmInfoPlate", dict, None, "reply")
    if reply is None:
        raise VzenithError("reply has no Response_AlarmInfoPlate")
    serial: list[tuple[int, bytes]] = []
    for i, entry in enumerate(_get(reply, "serialData", list, [], "Response_AlarmInfoPlate")):
        where = f"serialData[{i}]"
        if not isinstance(entry, dict):
            raise VzenithError(f"{where}: expected an object")
        channel = _get(entry, "serialChannel", int, 0, where)
        text = _get(entry, "data", str, "", where)
        try:
            data = base64.b64decode(text.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise VzenithError(f"{where}.data: not base64") from None
        if _get(entry, "dataLen", int, len(data), where) != len(data):
            raise VzenithError(f"{where}: dataLen {entry['dataLen']} but data holds {len(data)} bytes")
        serial.append((channel, data))
    return CameraCommands(reply.get("info") == "ok", tuple(serial))
