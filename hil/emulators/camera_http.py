"""A Vzenith (臻识)-style plate camera that pushes over HTTP.

`await cam.car("粤B12345", color="blue")` POSTs an AlarmInfoPlate JSON (with a small base64 JPEG-like picture and
plate crop) to the lane's URL and acts on the reply the way the camera does: `"info": "ok"` pulses its relay
(counted in `relay_opens`), `serialData` entries go out of its RS-485 port — recorded in `serial_out`, and
those for `led_channel` are fed to an attached LED board emulator (hil.emulators.led_board.LedBoard.feed).
Commands are honoured in heartbeat replies too, so a lane that answers "ok" to a heartbeat is caught.

Credentials as the camera's push settings take them: `username` + `password` (HTTP basic auth, sent with every
post) and `token` (a per-camera secret appended to the push URL as its last path segment).

Like the real camera, a push that gets no answer (or a 5xx) is kept (`offline_queue`) and `resend_offline()` sends it
again later with `isoffline: 1`. `post_raw()` sends any body, for malformed-push tests.

The JSON is built, and the lane's reply read, here from lane-hardware.md's field list, independently of
lanectl.protocols.vzenith_http.

Standalone:
    python -m hil.emulators.camera_http URL 粤B12345 [京A88888 ...] [--color blue] [--interval 1]
        [--user NAME] (password from $CAMERA_PASSWORD) [--token-env VAR] (token from that variable)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence

import aiohttp


# colorType (lane-hardware.md): 0 unknown, 1 blue, 2 yellow, 3 white, 4 black, 5 green (new energy), 6 yellow-green
COLOR_TYPES = {"unknown": 0, "blue": 1, "yellow": 2, "white": 3, "black": 4, "green": 5, "yellow-green": 6}
_COLOR_WORDS = {"蓝": "blue", "黄": "yellow", "白": "white", "黑": "black", "绿": "green", "渐变绿": "green",
                "黄绿": "yellow-green", "未知": "unknown", "yellowgreen": "yellow-green"}


class ReplyError(ValueError):
    """A lane reply the camera cannot act on (it then does nothing)."""


@dataclass(frozen=True)
class CameraCommands:
    """What the camera does with a lane's reply: pulse its relay, pass bytes to its RS-485 channels."""

    open_gate: bool
    serial_data: tuple[tuple[int, bytes], ...] = ()


def read_reply(body: bytes) -> CameraCommands:
    """The lane's reply per lane-hardware.md: `{"Response_AlarmInfoPlate": {"info": "ok", "serialData":
    [{"serialChannel": 0, "data": "<base64>", "dataLen": n}]}}`. Only info == "ok" opens; a serialData entry
    whose base64 is broken or whose dataLen disagrees with the bytes makes the whole reply unusable."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ReplyError("reply is not JSON") from None
    reply = doc.get("Response_AlarmInfoPlate") if isinstance(doc, dict) else None
    if not isinstance(reply, dict):
        raise ReplyError("reply has no Response_AlarmInfoPlate object")
    entries = reply.get("serialData") or []
    if not isinstance(entries, list):
        raise ReplyError("serialData is not a list")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ReplyError(f"serialData[{i}] is not an object")
        channel, text, length = entry.get("serialChannel", 0), entry.get("data", ""), entry.get("dataLen")
        if not _is_int(channel) or not isinstance(text, str) or (length is not None and not _is_int(length)):
            raise ReplyError(f"serialData[{i}]: serialChannel / data / dataLen of the wrong type")
        try:
            data = base64.b64decode(text.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise ReplyError(f"serialData[{i}].data is not base64") from None
        if length is not None and length != len(data):
            raise ReplyError(f"serialData[{i}]: dataLen {length} but {len(data)} bytes")
        out.append((channel, data))
    return CameraCommands(reply.get("info") == "ok", tuple(out))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class SerialSink(Protocol):
    def feed(self, data: bytes) -> object: ...


@dataclass
class PushReply:
    kind: str  # "plate" | "heartbeat" | "raw"
    status: int  # HTTP status; 0 when no answer came (refused, timeout)
    commands: Optional[CameraCommands] = None  # None when the reply could not be acted on
    error: Optional[str] = None

    @property
    def opened(self) -> bool:
        return self.commands is not None and self.commands.open_gate


def fake_jpeg(label: str, size: int = 2048) -> bytes:
    """SOI, a JFIF APP0 segment, a comment naming the picture, filler, EOI: JPEG-shaped, not a real image."""
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    text = label.encode("utf-8")[:200]
    comment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    filler = max(0, size - len(head) - len(comment) - 2)
    return head + comment + bytes(i % 251 for i in range(filler)) + b"\xff\xd9"


def color_type(color: str | int) -> int:
    if isinstance(color, int):
        return color
    word = color.strip().lower()
    word = _COLOR_WORDS.get(word.removesuffix("色").removesuffix("牌"), word)
    if word.isdigit() and int(word) in COLOR_TYPES.values():
        return int(word)
    if word not in COLOR_TYPES:
        raise ValueError(f"unknown plate colour {color!r}")
    return COLOR_TYPES[word]


def plate_push(plate: str, color_type: int, *, plate_id: int, when: float, confidence: int = 95,
               plate_type: int = 1, trigger_type: int = 8, channel: int = 0, device_name: str = "IVS",
               ipaddr: str = "192.168.1.100", serialno: str = "e6a5c8d9-00000001", isoffline: int = 0,
               image: Optional[bytes] = None, fragment: Optional[bytes] = None) -> dict[str, Any]:
    """One plate result as lane-hardware.md lists the Vzenith push: {"AlarmInfoPlate": {channel, deviceName,
    ipaddr, serialno, result: {PlateResult: {license, colorType, type, confidence, triggerType, plateid,
    isoffline, timeStamp: {Timeval: {sec, usec}}, imageFile?, imageFragmentFile?}}}}, pictures base64."""
    result: dict[str, Any] = {
        "license": plate, "colorType": color_type, "type": plate_type, "confidence": confidence,
        "triggerType": trigger_type, "plateid": plate_id, "isoffline": isoffline,
        "timeStamp": {"Timeval": {"sec": int(when), "usec": int(when % 1 * 1_000_000)}},
    }
    if image is not None:
        result["imageFile"] = base64.b64encode(image).decode("ascii")
    if fragment is not None:
        result["imageFragmentFile"] = base64.b64encode(fragment).decode("ascii")
    return {"AlarmInfoPlate": {"channel": channel, "deviceName": device_name, "ipaddr": ipaddr,
                               "serialno": serialno, "result": {"PlateResult": result}}}


@dataclass
class HttpCamera:
    url: str
    serialno: str = "e6a5c8d9-00000001"
    device_name: str = "IVS"
    ipaddr: str = "192.168.1.100"
    channel: int = 0
    led_board: Optional[SerialSink] = None
    led_channel: int = 0
    timeout_s: float = 2.0
    image_size: int = 2048  # bytes of the full picture; the plate crop is a tenth of it
    username: Optional[str] = None  # HTTP basic auth, with password
    password: str = ""
    token: Optional[str] = None  # appended to the URL: <url>/<token>
    relay_opens: int = 0
    pushes: int = 0  # plate pushes sent (first tries and resends)
    heartbeats: int = 0
    failures: int = 0  # posts without a 200 answer
    replies: list[PushReply] = field(default_factory=list)
    serial_out: list[tuple[int, bytes]] = field(default_factory=list)
    offline_queue: list[dict[str, Any]] = field(default_factory=list)
    sent_images: dict[int, bytes] = field(default_factory=dict)  # plateid -> picture sent
    _plate_id: int = field(default=0, init=False, repr=False)
    _session: Optional[aiohttp.ClientSession] = field(default=None, init=False, repr=False)
    _heartbeat_task: Optional[asyncio.Task[None]] = field(default=None, init=False, repr=False)

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        await self.stop_heartbeats()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> "HttpCamera":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what the camera sends --------------------------------------------------------------------------
    async def car(self, plate: str, color: str | int = "blue", *, confidence: int = 95, plate_type: int = 1,
                  trigger_type: int = 8, images: bool = True, when: Optional[float] = None) -> PushReply:
        """A car was recognised: push it and act on the reply."""
        self._plate_id += 1
        when = time.time() if when is None else when
        picture = fragment = None
        if images:
            picture = fake_jpeg(f"{plate} #{self._plate_id}", self.image_size)
            self.sent_images[self._plate_id] = picture
            fragment = fake_jpeg(plate, self.image_size // 10)
        doc = plate_push(plate, color_type(color), plate_id=self._plate_id, when=when, confidence=confidence,
                         plate_type=plate_type, trigger_type=trigger_type, channel=self.channel,
                         device_name=self.device_name, ipaddr=self.ipaddr, serialno=self.serialno,
                         image=picture, fragment=fragment)
        return await self._push(doc)

    async def heartbeat(self) -> PushReply:
        self.heartbeats += 1
        body = {"heartbeat": {"serialno": self.serialno, "deviceName": self.device_name}}
        return await self._post("heartbeat", _encode(body))

    async def post_raw(self, body: bytes) -> PushReply:
        """Any body at all (malformed JSON, oversized pictures...)."""
        return await self._post("raw", body)

    async def resend_offline(self) -> list[PushReply]:
        """Send the cached pushes again, marked isoffline = 1; those that fail again stay cached."""
        queued, self.offline_queue = self.offline_queue, []
        replies = []
        for doc in queued:
            doc["AlarmInfoPlate"]["result"]["PlateResult"]["isoffline"] = 1
            replies.append(await self._push(doc))
        return replies

    def start_heartbeats(self, interval_s: float = 20.0) -> None:
        if self._heartbeat_task is None:
            self._heartbeat_task = asyncio.create_task(self._heartbeats(interval_s),
                                                       name=f"camera-heartbeat-{self.serialno}")

    async def stop_heartbeats(self) -> None:
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _heartbeats(self, interval_s: float) -> None:
        while True:
            await self.heartbeat()
            await asyncio.sleep(interval_s)

    # -- HTTP and the reply -----------------------------------------------------------------------------
    @property
    def push_url(self) -> str:
        return self.url if self.token is None else f"{self.url.rstrip('/')}/{self.token}"

    async def _push(self, doc: dict[str, Any]) -> PushReply:
        self.pushes += 1
        reply = await self._post("plate", _encode(doc))
        if reply.status == 0 or reply.status >= 500:  # no answer / lane down: keep it; a 4xx is final
            self.offline_queue.append(doc)
        return reply

    async def _post(self, kind: str, body: bytes) -> PushReply:
        await self.start()
        assert self._session is not None
        try:
            # bytes, not a stream: aiohttp sends Content-Length, no chunking (what the lane must cope with)
            async with self._session.post(self.push_url, data=body, headers=self._headers()) as resp:
                status, answer = resp.status, await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.failures += 1
            return self._record(PushReply(kind, 0, error=f"{type(exc).__name__}: {exc}"))
        if status != 200:
            self.failures += 1
            return self._record(PushReply(kind, status, error=answer[:200].decode("utf-8", "replace")))
        try:
            commands = read_reply(answer)
        except ReplyError as exc:
            return self._record(PushReply(kind, status, error=str(exc)))
        if commands.open_gate:
            self.relay_opens += 1
        for channel, data in commands.serial_data:
            self.serial_out.append((channel, data))
            if channel == self.led_channel and self.led_board is not None:
                self.led_board.feed(data)
        return self._record(PushReply(kind, status, commands))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.username is not None:  # RFC 7617, UTF-8 as the camera's web page takes it
            pair = f"{self.username}:{self.password}".encode("utf-8")
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return headers

    def _record(self, reply: PushReply) -> PushReply:
        self.replies.append(reply)
        return reply


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.emulators.camera_http", description=__doc__.split("\n")[0])
    ap.add_argument("url", help="the lane's push URL, e.g. http://127.0.0.1:8080/camera/in1")
    ap.add_argument("plates", nargs="+")
    ap.add_argument("--color", default="blue")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between plates")
    ap.add_argument("--user", help="HTTP basic auth user name (the password comes from $CAMERA_PASSWORD)")
    ap.add_argument("--token-env", metavar="VAR", help="environment variable holding the URL token")
    args = ap.parse_args(argv)
    token = os.environ.get(args.token_env) if args.token_env else None
    if args.token_env and not token:
        ap.error(f"--token-env: {args.token_env} is not set")
    async with HttpCamera(args.url, username=args.user, password=os.environ.get("CAMERA_PASSWORD", ""),
                          token=token) as cam:
        for i, plate in enumerate(args.plates):
            if i:
                await asyncio.sleep(args.interval)
            reply = await cam.car(plate, args.color)
            print(f"{plate}: HTTP {reply.status} open={reply.opened} serial={len(cam.serial_out)} "
                  f"{reply.error or ''}".rstrip(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_main()))
