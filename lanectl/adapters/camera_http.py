"""A Vzenith (臻识)-style plate camera pushing over HTTP to POST /camera/<lane id>; its relay as a barrier.

VzenithCamera is the lane's PlateSource. `handle(body, content_type)` takes one POST body:
- a plate push: the picture is saved (bounded, newest `image_retention` files kept), the plate goes to the lane
  as a PlateRead, then the reply waits a moment (`reply_wait_s`) for what the lane decides for this car — an
  OPEN through the relay, frames for the LED board — so that the reply carries it. Offline resends
  (`isoffline`) and reads under `min_confidence` are answered and counted, never emitted: a resend says a car
  passed earlier, not that one is at the barrier now.
- a heartbeat: answered at once with whatever is pending (an OPEN, board frames).
- anything else: VzenithError, whose `.status` (400 / 403 / 413) is the HTTP answer. `camera_route()` is the
  aiohttp handler that bounds the body, maps the error and answers with Content-Length (never chunked).

Before any of that, the route checks who is pushing (adapters/camera_auth.py: source allow-list, basic auth,
the token in the URL): a push that fails gets 401 / 403 without its body being read, reaches neither the
lane nor the pictures, cannot carry a pending OPEN, and is counted (`refused_*`) and logged at most once per
interval per source address. The routes live on the LAN listener only (app.py); the public one has none.

CameraRelayBarrier is the Barrier port over the camera's relay (`"info": "ok"` in a reply). The relay has
one owner: only its open() — called by the lane runner for an OpenBarrier effect — can put an OPEN on the
camera, and one command is carried by exactly one reply. An OPEN that no reply carries within
`relay_deliver_s` is withdrawn (so it can never fire late) and fails with BarrierError. The relay cannot lower
the arm: the barrier closes by its own loop, and the lane must run with auto_close. There are no limit
switches on this path, so the adapter reports the arm up once the OPEN was handed to the camera and down
again `relay_cycle_s` later.

Threading: everything runs on the event loop except picture writes (asyncio.to_thread) and the JSON parse of
large bodies; a push waits at most SAVE_WAIT_S for its picture before the plate goes to the lane anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Awaitable, Callable, Optional, Sequence

from aiohttp import web

from lanectl.adapters.camera_auth import CameraAuth, Refusal
from lanectl.adapters.log_tally import DEFAULT_INTERVAL_S, Tally
from lanectl.config.devices import VzenithCameraConfig, VzenithMqttCameraConfig
from lanectl.core.events import IoSnapshot, PlateRead
from lanectl.protocols.vzenith_http import Heartbeat, PlateResult, VzenithError, build_response, parse_push
from lanectl.service.ports import BarrierError, Clock, Emit

log = logging.getLogger(__name__)

JSON = "application/json"
# With a relay: once the lane's message for this car is queued, how long the reply still waits for an OPEN.
# The runner starts the display and the OPEN from the same decision, so the OPEN follows within milliseconds.
SETTLE_S = 0.2
SAVE_WAIT_S = 0.5  # a slow disk (SD card) must not hold a car at the barrier
SERIAL_TTL_S = 30.0  # board frames no reply carried within this are stale: that car has gone
MAX_SERIAL_MESSAGES = 8
LAST_IMAGES = 256  # plates whose latest picture path is remembered for their records
THREAD_PARSE_BYTES = 64 * 1024  # bodies with pictures are parsed off the loop
MAX_REFUSAL_SOURCES = 32  # source addresses with a log tally of their own; the rest share one


@dataclass
class CameraCounters:
    pushes: int = 0  # plate pushes received (valid JSON with a plate), offline resends included
    heartbeats: int = 0
    offline_skipped: int = 0
    low_confidence: int = 0
    bad: int = 0  # bodies answered 4xx
    dropped: int = 0  # plates received while no lane was listening (run() not started)
    images_saved: int = 0
    image_errors: int = 0
    images_pruned: int = 0
    opens_sent: int = 0  # replies that carried "info": "ok"
    serial_frames_sent: int = 0
    serial_expired: int = 0  # board frames dropped as stale or over the queue bound
    refused_credentials: int = 0  # pushes answered 401: no or wrong credentials (nothing else done)
    refused_source: int = 0  # pushes answered 403: source address not on allow_from (nothing else done)


class _OpenOrder:
    """One OPEN the lane commanded, waiting for a reply to carry it."""

    def __init__(self) -> None:
        self.delivered: asyncio.Future[str] = asyncio.get_running_loop().create_future()


class VzenithCamera:
    def __init__(self, lane_id: str, cfg: VzenithCameraConfig | VzenithMqttCameraConfig, images_dir: Path,
                 clock: Clock, *,
                 name: str = "", report_interval_s: float = DEFAULT_INTERVAL_S,
                 special_prefixes: Optional[Sequence[str]] = None) -> None:
        self.lane_id = lane_id
        self.special_prefixes = special_prefixes  # the site's own non-province plates pass the push parser
        self.cfg = cfg
        self.name = name or f"{lane_id}-camera"
        self.images_dir = Path(images_dir) / lane_id  # one folder per lane: retention counts per lane
        self.max_image_bytes = cfg.max_image_kb * 1024
        # two base64 pictures (4/3, plus MIME line breaks) and the JSON around them
        self.max_body_bytes = 2 * (self.max_image_bytes * 4 // 3 + self.max_image_bytes // 38) + 64 * 1024
        self.counters = CameraCounters()
        self._clock = clock
        self._emit: Optional[Emit] = None
        self._changed = asyncio.Event()
        self._open_order: Optional[_OpenOrder] = None
        self._relay_claimed = False
        self._displays = 0
        self._serial: deque[tuple[float, int, tuple[bytes, ...]]] = deque()  # (queued at, channel, frames)
        self._serial_seq = 0  # messages queued so far: a push waits only for messages queued after its plate
        self._last_contact: Optional[float] = None
        self._bad_streak = 0
        self._image_fault = False
        self._images: OrderedDict[str, Path] = OrderedDict()
        self._files: Optional[deque[str]] = None  # picture files on disk, oldest first (loaded on first save)
        self._files_lock = threading.Lock()  # writer threads of concurrent pushes
        self._saves: set[asyncio.Task[tuple[Path, int]]] = set()
        self._report_interval_s = report_interval_s
        self._refusals: dict[str, Tally] = {}  # source address -> its log tally (bounded)

    # -- PlateSource ---------------------------------------------------------------------------------------
    async def run(self, emit: Emit) -> None:
        """Plates arrive through handle(); this only connects them to the lane until cancelled."""
        self._emit = emit
        try:
            await asyncio.Event().wait()
        finally:
            self._emit = None

    async def aclose(self) -> None:
        """Let picture writes still running finish (shutdown)."""
        for tally in self._refusals.values():
            tally.close()
        if self._saves:
            await asyncio.wait(set(self._saves), timeout=5.0)

    # -- what the lane's other adapters use ----------------------------------------------------------------
    def last_image(self, plate: str) -> Optional[Path]:
        """The picture saved with the latest push of `plate` (normalized), for its record."""
        return self._images.get(plate)

    def attach_display(self) -> None:
        """A board behind the camera: pushes wait briefly so their reply carries the lane's message."""
        self._displays += 1

    def queue_serial(self, channel: int, frames: Sequence[bytes]) -> None:
        """Frames for the camera's RS-485 port, carried by the next reply (push or heartbeat)."""
        if not frames:
            return
        self._serial.append((self._clock.monotonic(), channel, tuple(frames)))
        while len(self._serial) > MAX_SERIAL_MESSAGES:
            self._serial.popleft()
            self.counters.serial_expired += 1
        self._serial_seq += 1
        self._notify()

    def status(self) -> dict[str, object]:
        out: dict[str, object] = dict(asdict(self.counters))
        out["seconds_since_contact"] = (None if self._last_contact is None
                                        else round(self._clock.monotonic() - self._last_contact, 1))
        out["open_pending"] = self._open_order is not None
        out["serial_pending"] = sum(len(m[2]) for m in self._serial)
        return out

    # -- the relay (CameraRelayBarrier only) ---------------------------------------------------------------
    def _claim_relay(self) -> None:
        if not self.cfg.relay_barrier:
            raise ValueError(f"{self.name}: relay_barrier is off, the camera's relay does not drive the barrier")
        if self._relay_claimed:
            raise ValueError(f"{self.name}: the camera's relay already has an owner")
        self._relay_claimed = True

    def _order_open(self) -> _OpenOrder:
        if self._open_order is not None:  # the barrier serializes its commands; this is a bug, not a retry
            raise BarrierError(f"{self.name}: an OPEN is already waiting for a reply")
        order = self._open_order = _OpenOrder()
        self._notify()
        return order

    def _withdraw(self, order: _OpenOrder) -> None:
        if self._open_order is order:
            self._open_order = None

    # -- HTTP ----------------------------------------------------------------------------------------------
    def refused(self, source: str, refusal: Refusal) -> None:
        """A push that failed authentication: counted, and logged at most once per interval per source."""
        if refusal.status == 403:
            self.counters.refused_source += 1
        else:
            self.counters.refused_credentials += 1
        reason = f"{refusal.reason} ({refusal.status})"
        tally = self._refusals.get(source)
        if tally is None:
            if len(self._refusals) >= MAX_REFUSAL_SOURCES:  # spoofed sources must not grow memory: one shared tally
                reason = f"{reason} from {source}"
                source = "other sources"
                tally = self._refusals.get(source)
            if tally is None:
                tally = self._refusals[source] = Tally(log, f"{self.name} ({source})", "pushes refused",
                                                       interval_s=self._report_interval_s)
        tally.note(reason)

    async def handle(self, body: bytes, content_type: str = "", *,
                     connected: Optional[Callable[[], bool]] = None) -> tuple[bytes, str]:
        """One POST body -> (reply body, content type). VzenithError (.status 400/403/413) for a bad body.
        `connected()` False: the camera has hung up, so an OPEN is not put into a reply it would never read.
        The content type is not checked: firmwares label the same JSON json, form or text."""
        self._last_contact = arrived = self._clock.monotonic()
        try:
            msg = await self._parse(body)
        except VzenithError as exc:
            self._bad(exc)
            raise
        if self._bad_streak:
            log.info("%s: camera pushes are readable again after %d bad ones", self.name, self._bad_streak)
            self._bad_streak = 0
        if isinstance(msg, Heartbeat):
            self.counters.heartbeats += 1
            return self._reply("heartbeat", connected)
        return await self._push(msg, connected, arrived + self.cfg.reply_wait_s)

    async def _parse(self, body: bytes) -> PlateResult | Heartbeat:
        if len(body) > self.max_body_bytes:
            raise VzenithError(f"body of {len(body)} bytes is over {self.max_body_bytes}", 413)
        if len(body) > THREAD_PARSE_BYTES:
            msg = await asyncio.to_thread(parse_push, body, max_image_bytes=self.max_image_bytes,
                                          special_prefixes=self.special_prefixes)
        else:
            msg = parse_push(body, max_image_bytes=self.max_image_bytes, special_prefixes=self.special_prefixes)
        if self.cfg.serialno is not None and msg.serialno != self.cfg.serialno:
            raise VzenithError(f"camera {msg.serialno!r} is not this lane's ({self.cfg.serialno})", 403)
        return msg

    def _bad(self, exc: VzenithError) -> None:
        self.counters.bad += 1
        self._bad_streak += 1
        if self._bad_streak == 1:  # once when it starts; the recovery is logged too
            log.warning("%s: camera push answered %d: %s", self.name, exc.status, exc)

    async def _push(self, msg: PlateResult, connected: Optional[Callable[[], bool]],
                    deadline: float) -> tuple[bytes, str]:
        self.counters.pushes += 1
        if msg.offline:
            self.counters.offline_skipped += 1
            log.info("%s: offline resend of %s (plate id %d) not sent to the lane: it passed earlier",
                     self.name, msg.plate or "无牌车", msg.plate_id)
            return self._reply("offline resend", connected)
        if msg.confidence < self.cfg.min_confidence:
            self.counters.low_confidence += 1
            log.info("%s: %s read with confidence %d < %d, ignored", self.name, msg.plate, msg.confidence,
                     self.cfg.min_confidence)
            return self._reply("push", connected)
        if self._emit is None:
            self.counters.dropped += 1
            log.warning("%s: plate %s arrived while the lane is not running", self.name, msg.plate)
            return self._reply("push", connected)
        image = await self._save_image(msg)
        seq = self._serial_seq
        emit = self._emit
        if emit is not None:  # the lane may have stopped while the picture was written
            emit(PlateRead(msg.plate, "" if msg.color == "unknown" else msg.color, msg.confidence,
                           source=self.name, image=image))
            await self._wait_for_lane(seq, deadline)
        return self._reply("push", connected)

    async def _wait_for_lane(self, seq: int, deadline: float) -> None:
        """Until the lane's OPEN for this car and its message for the board are both queued (each as far as this
        camera carries them), or one is and the other did not follow within SETTLE_S (a refused car has no OPEN;
        the lane hands its OPEN to the relay a loop turn before its message), or the deadline (counted from the
        push's arrival: the camera's own HTTP timeout runs from there too)."""
        if not self._relay_claimed and not self._displays:
            return  # nothing the lane could add to this reply
        now = self._clock.monotonic()
        settle_until: Optional[float] = None
        while True:
            opened = self._open_order is not None
            shown = self._serial_seq > seq
            if (opened or not self._relay_claimed) and (shown or not self._displays):
                return
            if (opened or shown) and settle_until is None:
                settle_until = now + SETTLE_S
            end = deadline if settle_until is None else min(deadline, settle_until)
            if end <= now:
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), end - now)
            except TimeoutError:
                pass
            now = self._clock.monotonic()

    def _reply(self, kind: str, connected: Optional[Callable[[], bool]]) -> tuple[bytes, str]:
        serial = self._take_serial()
        order = self._open_order
        carry = order is not None and (connected is None or connected())
        body = build_response(open_gate=carry, serial_data=serial)
        if carry:
            assert order is not None
            self._open_order = None
            order.delivered.set_result(kind)  # set last: the bytes exist, nothing below can fail
            self.counters.opens_sent += 1
        self.counters.serial_frames_sent += len(serial)
        return body, JSON

    def _take_serial(self) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        now = self._clock.monotonic()
        while self._serial:
            queued_at, channel, frames = self._serial.popleft()
            if now - queued_at > SERIAL_TTL_S:
                self.counters.serial_expired += 1
                continue
            out.extend((channel, f) for f in frames)
        return out

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- pictures ------------------------------------------------------------------------------------------
    async def _save_image(self, msg: PlateResult) -> str:
        """The picture's path for the record ("" when none is kept)."""
        data = msg.image or msg.plate_image
        if not self.cfg.save_images or not data:
            return ""
        name = f"{self._clock.now():%Y%m%d-%H%M%S-%f}_{msg.plate_id}"
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._write_image, name, data),
                                                      name=f"{self.name} picture {name}")
        self._saves.add(task)
        task.add_done_callback(lambda t: self._saved(t, msg.plate))
        await asyncio.wait({task}, timeout=SAVE_WAIT_S)  # not cancelled on timeout: it completes later
        if task.done() and not task.cancelled() and task.exception() is None:
            return str(task.result()[0])
        return str(self.images_dir / f"{name}.jpg")  # where the slow write is putting it

    def _saved(self, task: asyncio.Task[tuple[Path, int]], plate: str) -> None:
        self._saves.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.counters.image_errors += 1
            if not self._image_fault:
                self._image_fault = True
                log.warning("%s: cannot save pictures under %s: %s", self.name, self.images_dir, exc)
            return
        if self._image_fault:
            self._image_fault = False
            log.info("%s: saving pictures again under %s", self.name, self.images_dir)
        path, pruned = task.result()
        self.counters.images_saved += 1
        self.counters.images_pruned += pruned
        self._images[plate] = path
        self._images.move_to_end(plate)
        while len(self._images) > LAST_IMAGES:
            self._images.popitem(last=False)

    def _write_image(self, name: str, data: bytes) -> tuple[Path, int]:
        """Worker thread: write atomically (a record never points at half a file), then prune the oldest."""
        with self._files_lock:
            d = self.images_dir
            d.mkdir(parents=True, exist_ok=True)
            if self._files is None:
                for stale in d.glob("*.tmp"):  # left by a crash mid-write
                    stale.unlink(missing_ok=True)
                self._files = deque(sorted(p.name for p in d.glob("*.jpg")))  # names start with the time
            path, n = d / f"{name}.jpg", 0
            while path.exists():  # same microsecond and plate id (a clock step): never overwrite
                n += 1
                path = d / f"{name}-{n}.jpg"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            self._files.append(path.name)
            pruned = 0
            while len(self._files) > self.cfg.image_retention:
                (d / self._files.popleft()).unlink(missing_ok=True)
                pruned += 1
            return path, pruned


# -- aiohttp ---------------------------------------------------------------------------------------------
def camera_paths(lane_id: str) -> tuple[str, str]:
    """The push URL without and with a token (a token-less POST must be a 401, not a 404)."""
    return f"/camera/{lane_id}", f"/camera/{lane_id}/{{token}}"


def add_camera_routes(router: web.UrlDispatcher, camera: VzenithCamera, auth: CameraAuth) -> None:
    route = camera_route(camera, auth)
    for path in camera_paths(camera.lane_id):
        router.add_post(path, route)


def camera_route(camera: VzenithCamera, auth: CameraAuth) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The POST /camera/<lane id>[/<token>] handler. Checks the sender first (`auth`), then reads at most
    camera.max_body_bytes + 1 whatever the app's client_max_size, so an oversized push is a 413 from the
    camera's own bound."""
    realm = f'Basic realm="lanectl camera {camera.lane_id}", charset="UTF-8"'

    async def route(request: web.Request) -> web.Response:
        source = request.remote or "unknown"
        refusal = auth.check(source, request.headers.get("Authorization"), request.match_info.get("token"))
        if refusal is not None:
            camera.refused(source, refusal)
            headers = {"WWW-Authenticate": realm} if refusal.status == 401 and auth.basic else None
            answer = web.Response(status=refusal.status, text=refusal.reason, headers=headers)
            if not request.content.is_eof():
                answer.force_close()  # its body is never read: the connection goes with it
            return answer
        limit = camera.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            camera._bad(VzenithError(f"Content-Length {request.content_length} is over {limit}", 413))
            return web.Response(status=413, text=f"body over {limit} bytes")
        body = bytearray()
        while len(body) <= limit:
            chunk = await request.content.read(limit + 1 - len(body))
            if not chunk:
                break
            body += chunk

        def connected() -> bool:
            transport = request.transport
            return transport is not None and not transport.is_closing()

        try:
            answer, content_type = await camera.handle(bytes(body), request.content_type, connected=connected)
        except VzenithError as exc:
            return web.Response(status=exc.status, text=str(exc)[:200])
        except Exception:
            log.exception("%s: push handling failed", camera.name)
            return web.Response(status=500, text="internal error")
        return web.Response(body=answer, content_type=content_type)

    return route


# -- the relay as a barrier ------------------------------------------------------------------------------
_DOWN = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True)
_UP = IoSnapshot(arming=False, safety=False, up_limit=True, down_limit=False)


class CameraRelayBarrier:
    """Barrier port over the camera's relay. OPEN only; the barrier closes by itself."""

    def __init__(self, camera: VzenithCamera, cycle_s: Optional[float] = None, *,
                 deliver_timeout_s: Optional[float] = None) -> None:
        camera._claim_relay()
        self.camera = camera
        self.cycle_s = camera.cfg.relay_cycle_s if cycle_s is None else cycle_s
        self.deliver_timeout_s = camera.cfg.relay_deliver_s if deliver_timeout_s is None else deliver_timeout_s
        self.opens = 0
        self.failed = 0
        self._clock = camera._clock
        self._lock = asyncio.Lock()
        self._emit: Optional[Emit] = None
        self._down_at: Optional[float] = None
        self._wake = asyncio.Event()

    async def run(self, emit: Emit) -> None:
        """Report the arm down, then down again `cycle_s` after each delivered OPEN, until cancelled."""
        self._emit = emit
        emit(_DOWN)
        try:
            while True:
                if self._down_at is None:
                    await self._wake.wait()
                    self._wake.clear()
                    continue
                delay = self._down_at - self._clock.monotonic()
                if delay > 0:
                    await self._clock.sleep(delay)  # a later OPEN only moves the deadline later: re-check
                    continue
                self._down_at = None
                emit(_DOWN)
        finally:
            self._emit = None

    async def open(self) -> None:
        async with self._lock:  # one OPEN on the camera at a time, one reply per OPEN
            order = self.camera._order_open()
            try:
                async with asyncio.timeout(self.deliver_timeout_s):
                    carrier = await asyncio.shield(order.delivered)
            except TimeoutError:
                if not order.delivered.done():
                    self.camera._withdraw(order)  # never fires later
                    self.failed += 1
                    raise BarrierError(f"OPEN not delivered: no reply to camera {self.camera.name} within "
                                       f"{self.deliver_timeout_s:g} s (is it pushing heartbeats?)") from None
                carrier = order.delivered.result()  # carried in the very tick the timeout fired
            except asyncio.CancelledError:
                if not order.delivered.done():
                    self.camera._withdraw(order)
                    raise
                self._raised()  # already on its way to the relay: report the arm up, then stop
                raise
            log.info("%s: OPEN carried by a %s reply", self.camera.name, carrier)
            self._raised()

    async def close(self) -> None:
        raise BarrierError("the camera relay cannot lower the arm; the barrier closes itself")

    def expect_command(self, seconds: float = 0.0) -> None:
        """ModbusBarrier's hint from a serial plate reader; nothing to hold on this path."""

    def _raised(self) -> None:
        self.opens += 1
        self._down_at = self._clock.monotonic() + self.cycle_s
        self._wake.set()
        if self._emit is not None:
            self._emit(_UP)
