"""The HTTP camera adapter behind a real aiohttp listener, pushed to by the HIL camera emulator: plates reach
the lane once, bad bodies get 4xx, pictures are kept with a retention limit, and the camera relay opens only
for an OPEN the lane commanded — once per command. Only a camera that authenticates gets that far: a push with
no or wrong credentials, or from a source not allowed, is refused before its body is read and changes nothing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import AsyncIterator, Callable, Optional
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from hil.emulators.camera_http import HttpCamera
from lanectl.adapters.camera_auth import CameraAuth
from lanectl.adapters.camera_http import CameraRelayBarrier, VzenithCamera, add_camera_routes
from lanectl.adapters.clock import SystemClock
from lanectl.config.devices import LaneDevices, VzenithCameraConfig
from lanectl.core.events import Event, IoSnapshot, PlateRead
from lanectl.service.ports import BarrierError

CLOCK = SystemClock(ZoneInfo("Asia/Shanghai"))
DOWN = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True)
UP = IoSnapshot(arming=False, safety=False, up_limit=True, down_limit=False)
USER, PASSWORD = "cam-in1", "s3cret-pass:word"  # a colon in a password is allowed (split at the first)
BASIC = CameraAuth(username=USER, password=PASSWORD)


class Rig:
    """A lane in a few lines: the camera adapter at POST /camera/in1 on 127.0.0.1:0, its plates (and the relay
    barrier's snapshots) collected in `events`, and `on_plate` standing in for the lane runner: it is called
    with each PlateRead and may start tasks (an OPEN, a message), as the runner does for a decision."""

    def __init__(self, tmp_path: Path, auth: CameraAuth = BASIC, report_interval_s: float = 60.0,
                 **cfg: object) -> None:
        self.camera = VzenithCamera("in1", VzenithCameraConfig(kind="vzenith_http", **cfg), tmp_path / "images",
                                    CLOCK, report_interval_s=report_interval_s)
        self.auth = auth
        self.events: list[Event] = []
        self.on_plate: Optional[Callable[[PlateRead], None]] = None
        self.barrier: Optional[CameraRelayBarrier] = None
        self.url = ""
        self._tasks: set[asyncio.Task] = set()
        self._runner: Optional[web.AppRunner] = None

    def emit(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, PlateRead) and self.on_plate is not None:
            self.on_plate(event)

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        return task

    def relay(self, cycle_s: float = 0.3, **kw: float) -> CameraRelayBarrier:
        self.barrier = CameraRelayBarrier(self.camera, cycle_s, **kw)
        self.spawn(self.barrier.run(self.emit))
        return self.barrier

    def plates(self) -> list[PlateRead]:
        return [e for e in self.events if isinstance(e, PlateRead)]

    def snapshots(self) -> list[IoSnapshot]:
        return [e for e in self.events if isinstance(e, IoSnapshot)]

    async def start(self) -> None:
        self.spawn(self.camera.run(self.emit))
        app = web.Application()
        add_camera_routes(app.router, self.camera, self.auth)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/camera/in1"
        await asyncio.sleep(0)  # let run() connect the emit function

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.camera.aclose()


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, **cfg: object) -> AsyncIterator[Rig]:
    r = Rig(tmp_path, **cfg)  # type: ignore[arg-type]
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


def camera(lane: Rig, **kw: object) -> HttpCamera:
    """The emulated camera set up as an integrator would: the lane's push URL and its basic-auth credentials."""
    return HttpCamera(lane.url, username=USER, password=PASSWORD, **kw)  # type: ignore[arg-type]


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


# -- plates ----------------------------------------------------------------------------------------------
async def test_a_push_emits_one_normalized_plate_read(tmp_path):
    async with rig(tmp_path) as lane, camera(lane) as cam:
        reply = await cam.car("粤b 12345", color="green", confidence=97)
        plateless = await cam.car("无牌车", color=0)
    assert reply.status == plateless.status == 200 and not reply.opened and reply.commands.serial_data == ()
    reads = lane.plates()
    assert [replace(r, image="") for r in reads] == [PlateRead("粤B12345", "green", 97, source="in1-camera"),
                                                    PlateRead("", "", 95, source="in1-camera")]
    # each read names its saved picture, which the lane keeps on the record
    assert all(Path(r.image).is_file() and Path(r.image).parent == tmp_path / "images" / "in1" for r in reads)
    assert Path(reads[0].image).read_bytes() == cam.sent_images[1]
    status = lane.camera.status()
    assert (status["pushes"], status["bad"], status["opens_sent"]) == (2, 0, 0)


async def test_offline_resends_and_low_confidence_reads_emit_nothing(tmp_path):
    async with rig(tmp_path, min_confidence=80) as lane:
        async with HttpCamera("http://127.0.0.1:9/camera/in1", timeout_s=0.5, username=USER,
                              password=PASSWORD) as cam:  # lane PC unreachable
            await cam.car("粤B12345")
            await cam.car("京A88888")
            assert len(cam.offline_queue) == 2
            cam.url = lane.url
            replies = await cam.resend_offline()
            low = await cam.car("沪C12345", confidence=60)
    assert [r.status for r in replies + [low]] == [200, 200, 200] and not any(r.opened for r in replies)
    assert lane.events == []
    status = lane.camera.status()
    assert (status["offline_skipped"], status["low_confidence"], status["images_saved"]) == (2, 1, 0)


async def test_malformed_and_oversized_bodies_get_4xx_and_the_camera_keeps_working(tmp_path):
    async with rig(tmp_path, max_image_kb=16, serialno="sn-in1") as lane:
        limit = lane.camera.max_body_bytes
        async with camera(lane, serialno="sn-in1") as cam:
            not_json = await cam.post_raw(b'{"AlarmInfoPlate": ')
            no_plate = await cam.post_raw(json.dumps({"AlarmInfoPlate": {"result": {}}}).encode())
            wrong_type = await cam.post_raw(json.dumps({"AlarmInfoPlate": {"result": {"PlateResult": {
                "license": "粤B12345", "confidence": [96]}}}}).encode())
            huge = await cam.post_raw(b" " * (limit + 1))
            cam.image_size = 20 * 1024  # one picture over max_image_kb, the body still under the bound
            big_picture = await cam.car("粤B12345")
            cam.image_size = 2048
            ok = await cam.car("粤B12345")
        async with camera(lane, serialno="sn-other") as stranger:
            foreign = await stranger.car("京A88888")
    assert [r.status for r in (not_json, no_plate, wrong_type)] == [400, 400, 400]
    assert (huge.status, big_picture.status, foreign.status) == (413, 413, 403)
    assert "not JSON" in not_json.error
    assert "over" in huge.error and len(huge.error) <= 200
    assert ok.status == 200
    assert [replace(r, image="") for r in lane.plates()] == [PlateRead("粤B12345", "blue", 95, source="in1-camera")]
    assert lane.camera.status()["bad"] == 6


async def test_heartbeats_are_answered_at_once(tmp_path):
    async with rig(tmp_path, relay_barrier=True) as lane, camera(lane) as cam:
        lane.relay()
        t0 = time.monotonic()
        replies = [await cam.heartbeat() for _ in range(3)]
        elapsed = time.monotonic() - t0
    assert [(r.status, r.opened) for r in replies] == [(200, False)] * 3
    assert elapsed < 0.5 and lane.camera.status()["heartbeats"] == 3


async def test_pictures_are_saved_and_only_the_newest_kept(tmp_path):
    async with rig(tmp_path, image_retention=3) as lane, camera(lane) as cam:
        for plate in ("粤B00001", "粤B00002", "粤B00003", "粤B00004", "粤B00005"):
            await cam.car(plate)
        await cam.car("粤B00006", images=False)  # nothing to save: the plate still goes to the lane
    folder = tmp_path / "images" / "in1"
    files = sorted(folder.iterdir())
    assert len(files) == 3 and all(f.suffix == ".jpg" for f in files)
    assert [f.stem.split("_")[1] for f in files] == ["3", "4", "5"]  # camera plate ids: the newest three
    assert lane.camera.last_image("粤B00005") == files[-1]
    assert files[-1].read_bytes() == cam.sent_images[5]
    assert lane.camera.last_image("粤B00001") is not None and not lane.camera.last_image("粤B00001").exists()
    assert lane.camera.last_image("粤B00006") is None
    status = lane.camera.status()
    assert (status["images_saved"], status["images_pruned"], status["image_errors"]) == (5, 2, 0)
    assert len(lane.plates()) == 6


async def test_retention_counts_pictures_already_on_disk(tmp_path):
    folder = tmp_path / "images" / "in1"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"20200101-000000-00000{i}_{i}.jpg").write_bytes(b"old")
    (folder / "20200101-000000-000009_9.tmp").write_bytes(b"half")  # a crash mid-write
    async with rig(tmp_path, image_retention=2) as lane, camera(lane) as cam:
        await cam.car("粤B12345")
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and names[0] == "20200101-000000-000002_2.jpg" and names[1].endswith("_1.jpg")


async def test_an_unwritable_picture_folder_does_not_stop_the_plate(tmp_path):
    (tmp_path / "images").write_text("a file where the folder should be")
    async with rig(tmp_path) as lane, camera(lane) as cam:
        reply = await cam.car("粤B12345")
    assert reply.status == 200 and len(lane.plates()) == 1
    assert lane.camera.status()["image_errors"] == 1 and lane.camera.last_image("粤B12345") is None


async def test_a_slow_disk_does_not_hold_the_plate(tmp_path, monkeypatch):
    import lanectl.adapters.camera_http as adapter
    monkeypatch.setattr(adapter, "SAVE_WAIT_S", 0.05)
    async with rig(tmp_path) as lane, camera(lane) as cam:
        write = lane.camera._write_image
        monkeypatch.setattr(lane.camera, "_write_image", lambda *a: (time.sleep(0.3), write(*a))[1])
        t0 = time.monotonic()
        await cam.car("粤B12345")
        assert time.monotonic() - t0 < 0.25 and len(lane.plates()) == 1
        assert lane.camera.last_image("粤B12345") is None  # still being written
        await lane.camera.aclose()
    assert lane.camera.last_image("粤B12345").read_bytes() == cam.sent_images[1]


# -- the camera relay ------------------------------------------------------------------------------------
async def test_an_open_during_the_push_rides_in_its_reply(tmp_path):
    async with rig(tmp_path, relay_barrier=True) as lane, camera(lane) as cam:
        barrier = lane.relay(cycle_s=0.3)
        opens: list[asyncio.Task] = []
        lane.on_plate = lambda ev: opens.append(lane.spawn(barrier.open()))
        t0 = time.monotonic()
        reply = await cam.car("粤B12345")
        elapsed = time.monotonic() - t0
        await opens[0]  # delivered: returned without error
        assert reply.opened and cam.relay_opens == 1 and elapsed < 1.0  # did not sit out reply_wait_s
        assert lane.snapshots() == [DOWN, UP]
        await until(lambda: len(lane.snapshots()) == 3)  # the arm is taken to be down again cycle_s later
    assert lane.snapshots() == [DOWN, UP, DOWN]
    assert isinstance(lane.events[1], PlateRead) and lane.events[2] == UP
    assert barrier.opens == 1 and lane.camera.status()["opens_sent"] == 1


async def test_an_open_with_no_push_waiting_goes_out_with_the_next_heartbeat(tmp_path):
    async with rig(tmp_path, relay_barrier=True) as lane, camera(lane) as cam:
        barrier = lane.relay()
        opening = lane.spawn(barrier.open())  # e.g. a payment confirmed while the car waits
        await asyncio.sleep(0.05)
        assert not opening.done() and lane.camera.status()["open_pending"]
        first = await cam.heartbeat()
        await opening
        second = await cam.heartbeat()
    assert first.opened and not second.opened and cam.relay_opens == 1
    assert lane.snapshots()[:2] == [DOWN, UP]


async def test_no_open_commanded_means_no_reply_ever_carries_ok(tmp_path):
    async with rig(tmp_path, relay_barrier=True, reply_wait_s=0.02) as lane, camera(lane) as cam:
        lane.relay()
        replies = []
        for i in range(10):
            replies.append(await cam.car(f"粤B1234{i}"))
            replies.append(await cam.heartbeat())
        bad = await cam.post_raw(b"{}")
    assert [r.status for r in replies] == [200] * 20 and bad.status == 400
    assert cam.relay_opens == 0 and not any(r.opened for r in replies)
    assert len(lane.plates()) == 10 and lane.snapshots() == [DOWN]


async def test_one_open_is_one_delivery(tmp_path):
    async with rig(tmp_path, relay_barrier=True, reply_wait_s=0.3) as lane, camera(lane) as cam:
        barrier = lane.relay()
        lane.on_plate = lambda ev: lane.spawn(barrier.open()) if ev.plate == "粤B12345" else None
        first = await cam.car("粤B12345")
        later = [await cam.heartbeat(), await cam.car("京A88888"), await cam.heartbeat()]
        again = await cam.car("粤B12345")  # a second command: a second delivery
    assert first.opened and again.opened and not any(r.opened for r in later)
    assert cam.relay_opens == 2 and barrier.opens == 2


async def test_an_open_no_reply_carries_fails_and_never_fires_late(tmp_path):
    async with rig(tmp_path, relay_barrier=True) as lane, camera(lane) as cam:
        barrier = lane.relay(deliver_timeout_s=0.15)
        with pytest.raises(BarrierError, match="not delivered"):
            await barrier.open()
        cancelled = lane.spawn(barrier.open())
        await asyncio.sleep(0.02)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        reply = await cam.heartbeat()
    assert not reply.opened and cam.relay_opens == 0 and barrier.failed == 1
    assert lane.snapshots() == [DOWN] and not lane.camera.status()["open_pending"]


async def test_close_is_refused_and_the_relay_has_one_owner(tmp_path):
    async with rig(tmp_path, relay_barrier=True) as lane:
        barrier = lane.relay()
        with pytest.raises(BarrierError, match="cannot lower the arm"):
            await barrier.close()
        with pytest.raises(ValueError, match="already has an owner"):
            CameraRelayBarrier(lane.camera)
    plain = VzenithCamera("in2", VzenithCameraConfig(kind="vzenith_http"), tmp_path, CLOCK)
    with pytest.raises(ValueError, match="relay_barrier is off"):
        CameraRelayBarrier(plain)


async def test_a_camera_that_hung_up_is_not_handed_the_open(tmp_path):
    async with rig(tmp_path, relay_barrier=True) as lane, camera(lane) as cam:
        barrier = lane.relay()
        opening = lane.spawn(barrier.open())
        await asyncio.sleep(0.01)
        body, _ = await lane.camera.handle(b'{"heartbeat": {}}', connected=lambda: False)
        assert b"ok" not in body and not opening.done()
        assert (await cam.heartbeat()).opened
        await opening


def test_device_sections_are_validated():
    relay = {"kind": "vzenith_http", "relay_barrier": True}
    modbus = {"kind": "modbus_tcp", "host": "10.0.0.5"}
    with pytest.raises(ValidationError, match="configure one of them"):
        LaneDevices.model_validate({"barrier": modbus, "camera": relay})
    with pytest.raises(ValidationError, match="relay_cycle_s"):
        LaneDevices.model_validate({"camera": relay | {"relay_cycle_s": 0}})
    with pytest.raises(ValidationError, match="relay_barier"):
        LaneDevices.model_validate({"camera": {"kind": "vzenith_http", "relay_barier": True}})
    d = LaneDevices.model_validate({"camera": relay})
    assert (d.camera.relay_cycle_s, d.camera.image_retention, d.camera.save_images, d.camera.max_image_kb) == \
        (8.0, 2000, True, 1024)
    assert LaneDevices.model_validate({"barrier": modbus, "camera": {"kind": "vzenith_http"}}).camera is not None


# -- who may push --------------------------------------------------------------------------------------------
TOKEN = "tok-0123456789abcdef"


async def post_from(source: str, url: str, body: bytes, headers: Optional[dict] = None) -> tuple[int, dict, bytes]:
    """A POST whose connection comes from `source` (any 127.x address is this machine's loopback)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(url, data=body, headers=headers or {}) as resp:
            return resp.status, dict(resp.headers), await resp.read()


async def test_a_push_without_credentials_is_401_and_changes_nothing(tmp_path):
    async with rig(tmp_path, relay_barrier=True) as lane:
        barrier = lane.relay()
        opening = lane.spawn(barrier.open())  # an OPEN waits for a reply to carry it
        await until(lambda: lane.camera.status()["open_pending"])
        async with HttpCamera(lane.url) as anonymous:
            push = await anonymous.car("粤B12345")
            heartbeat = await anonymous.heartbeat()
        status, headers, _ = await post_from("127.0.0.1", lane.url, b'{"heartbeat": {}}')
        assert (push.status, heartbeat.status, status) == (401, 401, 401)
        assert headers["WWW-Authenticate"].startswith('Basic realm="lanectl camera in1"')
        assert anonymous.relay_opens == 0 and not opening.done(), "a refused reply never carries the OPEN"
        assert lane.plates() == [] and not (tmp_path / "images").exists(), "no plate, no picture"
        st = lane.camera.status()
        assert (st["refused_credentials"], st["pushes"], st["heartbeats"], st["seconds_since_contact"]) == \
            (3, 0, 0, None)
        async with camera(lane) as cam:  # the camera itself: works as before, and picks the OPEN up
            assert (await cam.heartbeat()).opened
        await opening
        assert lane.camera.status()["opens_sent"] == 1


async def test_wrong_credentials_are_401(tmp_path):
    async with rig(tmp_path) as lane:
        replies = []
        for username, password in ((USER, "guess"), ("admin", PASSWORD), (USER, PASSWORD + "x"), (USER, "")):
            async with HttpCamera(lane.url, username=username, password=password) as cam:
                replies.append(await cam.car("粤B12345"))
        async with camera(lane, token=TOKEN) as with_token:  # a token where none is configured: not this URL
            replies.append(await with_token.car("粤B12345"))
        garbled = [await post_from("127.0.0.1", lane.url, b"{}", {"Authorization": value})
                   for value in ("Basic !!!notbase64", "Bearer " + PASSWORD, "Basic " + "A" * 4000)]
    assert [r.status for r in replies] == [401] * 5 and [g[0] for g in garbled] == [401] * 3
    assert lane.plates() == [] and lane.camera.status()["refused_credentials"] == 8


async def test_a_token_in_the_push_url_authenticates(tmp_path):
    async with rig(tmp_path, auth=CameraAuth(token=TOKEN)) as lane:
        async with HttpCamera(lane.url, token=TOKEN) as cam:
            ok = await cam.car("粤B12345")
        async with HttpCamera(lane.url) as no_token, HttpCamera(lane.url, token=TOKEN[:-1] + "X") as wrong:
            missing, bad = await no_token.car("京A88888"), await wrong.car("京A88888")
        status, headers, _ = await post_from("127.0.0.1", lane.url, b"{}")
    assert ok.status == 200 and (missing.status, bad.status, status) == (401, 401, 401)
    assert "WWW-Authenticate" not in headers  # nothing to ask the camera for: the token is in its URL
    assert [r.plate for r in lane.plates()] == ["粤B12345"]


async def test_basic_auth_and_token_together_both_must_match(tmp_path):
    both = CameraAuth(username=USER, password=PASSWORD, token=TOKEN)
    async with rig(tmp_path, auth=both) as lane:
        async with camera(lane, token=TOKEN) as cam, camera(lane) as no_token, \
                HttpCamera(lane.url, token=TOKEN) as no_basic:
            replies = [await cam.car("粤B12345"), await no_token.car("粤B12345"), await no_basic.car("粤B12345")]
    assert [r.status for r in replies] == [200, 401, 401] and len(lane.plates()) == 1


async def test_a_source_not_allowed_is_403_even_with_the_right_credentials(tmp_path):
    allowed = CameraAuth(allow_from=(ipaddress.ip_network("127.0.0.2/32"), ipaddress.ip_network("10.0.0.0/8")),
                         username=USER, password=PASSWORD)
    async with rig(tmp_path, auth=allowed) as lane:
        async with camera(lane) as cam:  # from 127.0.0.1
            refused = await cam.car("粤B12345")
        header = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
        body = json.dumps({"heartbeat": {"serialno": "x"}}).encode()
        from_allowed = await post_from("127.0.0.2", lane.url, body, header)
        no_credentials = await post_from("127.0.0.2", lane.url, body)
    assert refused.status == 403 and from_allowed[0] == 200 and no_credentials[0] == 401
    st = lane.camera.status()
    assert (st["refused_source"], st["refused_credentials"], st["heartbeats"], st["pushes"]) == (1, 1, 1, 0)
    assert lane.plates() == [] and not (tmp_path / "images").exists()


async def test_credentials_are_checked_before_the_body_is_read(tmp_path):
    async with rig(tmp_path, max_image_kb=16) as lane:
        huge = b" " * (lane.camera.max_body_bytes + 1)
        status, headers, _ = await post_from("127.0.0.1", lane.url, huge)
        async with camera(lane) as cam:
            authenticated = await cam.post_raw(huge)
    assert status == 401 and headers.get("Connection", "").lower() == "close"  # not 413: never read
    assert authenticated.status == 413 and lane.camera.status()["bad"] == 1


async def test_refusals_are_logged_at_most_once_per_interval_per_source(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "lanectl.adapters.camera_http")
    async with rig(tmp_path, report_interval_s=0.3) as lane:
        for _ in range(5):
            assert (await post_from("127.0.0.1", lane.url, b"{}"))[0] == 401
        for _ in range(3):
            assert (await post_from("127.0.0.3", lane.url, b"{}", {"Authorization": "Basic eDp5"}))[0] == 401
        first = [r.getMessage() for r in caplog.records]
        await until(lambda: len(caplog.records) >= 3, timeout=3.0)  # one count line for the first source
        await until(lambda: len(caplog.records) >= 4, timeout=3.0)  # and one for the second
    assert first == ["in1-camera (127.0.0.1): pushes refused: no credentials (401) (counted from now on, one line "
                     "every 0.3 s while it lasts)",
                     "in1-camera (127.0.0.3): pushes refused: wrong credentials (401) (counted from now on, one "
                     "line every 0.3 s while it lasts)"]
    later = sorted(r.getMessage() for r in caplog.records[2:4])
    assert later == ["in1-camera (127.0.0.1): 4 pushes refused in the last 0.3 s: no credentials (401)",
                     "in1-camera (127.0.0.3): 2 pushes refused in the last 0.3 s: wrong credentials (401)"]
    assert lane.camera.status()["refused_credentials"] == 8


async def test_refusals_from_many_sources_share_one_tally_past_a_bound(tmp_path, caplog):
    from lanectl.adapters.camera_auth import WRONG_CREDENTIALS
    from lanectl.adapters.camera_http import MAX_REFUSAL_SOURCES
    caplog.set_level(logging.WARNING, "lanectl.adapters.camera_http")
    lane = Rig(tmp_path)
    for i in range(MAX_REFUSAL_SOURCES + 20):  # spoofed source addresses
        lane.camera.refused(f"10.0.{i // 250}.{i % 250}", WRONG_CREDENTIALS)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == MAX_REFUSAL_SOURCES + 1 and len(lane.camera._refusals) == MAX_REFUSAL_SOURCES + 1
    assert lines[-1].startswith("in1-camera (other sources): pushes refused: wrong credentials (401) from 10.0.0.32")
    assert lane.camera.status()["refused_credentials"] == MAX_REFUSAL_SOURCES + 20
    await lane.camera.aclose()  # the tallies say what they counted and stop
    assert "in1-camera (other sources): 19 pushes refused since the last report" in caplog.records[-1].getMessage()
