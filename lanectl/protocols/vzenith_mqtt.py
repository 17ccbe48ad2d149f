"""Vzenith (臻识) cameras publishing their recognitions to an MQTT broker: the `ivs_result` message.

Topic (the camera's default, configurable on the camera): ``device/<sn>/message/up/ivs_result``.
Payload, as the vendor's MQTT protocol documents it (open.vzicloud.com "订阅识别结果"): an envelope around the
same AlarmInfoPlate object as the HTTP push (lanectl/protocols/vzenith_http.py)::

    {"id": "...", "sn": "<camera serial>", "name": "ivs_result", "version": "1.0", "timestamp": 1621926595,
     "payload": {"AlarmInfoPlate": {"serialno": ..., "result": {"PlateResult": {"license": "6LWjR1o3UzEz", ...}}}}}

Differences from the HTTP push, handled here before the shared HTTP codec reads the AlarmInfoPlate:
- `license` is base64 of its UTF-8 text ("6LWjR1o3UzEz" is 赣GZ7S13). A license that is not base64, or whose
  decoding is neither a plate nor a plate-less word, is read as plain text (firmware that sends it as the HTTP
  push does); the plate check then decides, exactly as for HTTP.
- pictures may come as `full_image_content` / `small_image_content` (base64), taken when `imageFile` /
  `imageFragmentFile` are absent (a camera that uploads to object storage sends paths only: no picture here).
- the envelope's `sn` is the camera's serial (the one in its topic); it is the PlateResult's `serialno` when
  present (the inner AlarmInfoPlate.serialno otherwise). The envelope's `timestamp` (seconds) stands in for the
  recognition time (`time_sec`) when the PlateResult has no timeStamp.
A bare AlarmInfoPlate document (no envelope) is accepted as well, as are the HTTP codec's heartbeat shapes.
Errors: VzenithError only, whatever the bytes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any, Iterable, Optional

from lanectl.core.plates import PLATELESS_WORDS, is_valid_plate, normalize_plate
from lanectl.protocols.vzenith_http import (Heartbeat, PlateResult, VzenithError, load_body,
                                            parse_push_object)

TOPIC_TEMPLATE = "device/{sn}/message/up/ivs_result"
_PICTURES = (("imageFile", "full_image_content"), ("imageFragmentFile", "small_image_content"))


def camera_topic(serialno: str) -> str:
    """The topic a camera with this serial publishes its recognitions to by default."""
    return TOPIC_TEMPLATE.format(sn=serialno)


def parse_ivs_result(body: bytes, *, max_image_bytes: Optional[int] = None,
                     special_prefixes: Optional[Iterable[str]] = None) -> PlateResult | Heartbeat:
    """One MQTT message's payload -> PlateResult (or Heartbeat); VzenithError otherwise."""
    doc = load_body(body)
    if not isinstance(doc, dict):
        raise VzenithError(f"message must be a JSON object, got {type(doc).__name__}")
    sn, stamp = "", None
    if "payload" in doc:
        name = doc.get("name")
        if name is not None and name != "ivs_result":
            raise VzenithError(f"message {name!r} is not an ivs_result")
        sn = doc.get("sn")
        if sn is None:
            sn = ""
        elif not isinstance(sn, str):
            raise VzenithError(f"message.sn: expected a string, got {type(sn).__name__}")
        stamp = doc.get("timestamp")
        if stamp is not None and (not isinstance(stamp, int) or isinstance(stamp, bool)):
            raise VzenithError(f"message.timestamp: expected an integer, got {type(stamp).__name__}")
        doc = doc["payload"]
        if not isinstance(doc, dict):
            raise VzenithError(f"message.payload must be a JSON object, got {type(doc).__name__}")
    alarm = doc.get("AlarmInfoPlate")
    if isinstance(alarm, dict):
        doc = {**doc, "AlarmInfoPlate": _as_http_push(alarm, special_prefixes)}
    msg = parse_push_object(doc, max_image_bytes=max_image_bytes, special_prefixes=special_prefixes)
    if sn and isinstance(msg, PlateResult):
        msg = dataclasses.replace(msg, serialno=sn)
    if isinstance(msg, PlateResult) and msg.time_sec is None and stamp is not None:
        msg = dataclasses.replace(msg, time_sec=stamp)  # when the camera sent it: the best time there is
    elif sn and isinstance(msg, Heartbeat):
        msg = Heartbeat(sn, msg.device_name)
    return msg


def _as_http_push(alarm: dict[str, Any], special_prefixes: Optional[Iterable[str]]) -> dict[str, Any]:
    """The AlarmInfoPlate with its license as text and its pictures where the HTTP push puts them (copies)."""
    result = alarm.get("result")
    pr = result.get("PlateResult") if isinstance(result, dict) else None
    if not isinstance(pr, dict):
        return alarm  # the HTTP codec says what is missing
    pr = dict(pr)
    if isinstance(pr.get("license"), str):
        pr["license"] = decode_license(pr["license"], special_prefixes)
    for http_key, mqtt_key in _PICTURES:
        if not pr.get(http_key) and pr.get(mqtt_key):
            pr[http_key] = pr[mqtt_key]
    return {**alarm, "result": {**result, "PlateResult": pr}}


def decode_license(text: str, special_prefixes: Optional[Iterable[str]] = None) -> str:
    """The license as text: base64-decoded when it is base64 of a UTF-8 plate (or plate-less word), else as sent."""
    compact = text.strip()
    if not compact or not compact.isascii():
        return text
    try:
        decoded = base64.b64decode(compact, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return text
    if not decoded.isprintable():
        return text
    if decoded.strip().upper() in PLATELESS_WORDS and decoded.strip():
        return decoded
    return decoded if is_valid_plate(normalize_plate(decoded), special_prefixes) else text
