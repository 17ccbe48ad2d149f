"""The LED board and HTTP camera emulators, end to end: the board reads frames off a real pty cable and from a
camera's serialData pass-through; the camera pushes to a tiny aiohttp lane endpoint built on the codecs and acts
on its reply (relay, RS-485 pass-through)."""

from __future__ import annotations

import base64
import socket
import time
from datetime import datetime
from typing import Callable, Optional

import pytest
import serial
from aiohttp import web

from hil.emulators.camera_http import HttpCamera, fake_jpeg
from hil.emulators.led_board import LedBoard
from hil.wire import VirtualCable
from lanectl.protocols.led_board import (
    Colour,
    encode_frame,
    set_clock,
    show_line,
    show_lines_and_speak,
    show_qr,
    speak,
)
from lanectl.protocols.vzenith_http import Heartbeat, PlateResult, VzenithError, build_response, parse_push


@pytest.fixture
def links(tmp_path):
    return str(tmp_path / "rig" / "lane-led"), str(tmp_path / "rig" / "lane-led-device")


# -- LED board over a serial line ------------------------------------------------------------------------
async def test_led_board_reads_frames_off_a_virtual_cable(links):
    a, b = links
    frames = [b"\xaa\x55noise", show_line(0, "欢迎光临 粤B12345"), show_line(1, "请入场", Colour.YELLOW),
              speak("欢迎光临"), show_qr("https://p.example/lane/1"), b"\x00\x64\xff"]
    with VirtualCable(a, b):
        async with LedBoard(b) as board:
            with serial.Serial(a, baudrate=9600, timeout=1) as port:
                data = b"".join(frames)
                for i in range(0, len(data), 7):  # odd-sized writes: frames arrive split
                    port.write(data[i:i + 7])
                await board.until(lambda: board.qr is not None and board.decoder.pending == 3)
    assert board.lines == ["欢迎光临 粤B12345", "请入场"]
    assert board.speech == ["欢迎光临"]
    assert board.qr == "https://p.example/lane/1"
    assert (board.stats.frames, board.stats.skipped_bytes, board.stats.bad_crc) == (4, 7, 0)
    assert board.decoder.pending == 3  # the unfinished "00 64 FF" tail


async def test_led_board_on_a_paced_9600_line(links):
    a, b = links
    frame = show_lines_and_speak(["粤B12345", "停车3小时", "请缴费7元"], "粤B12345 停车3小时 请缴费7元")
    with VirtualCable(a, b, baudrate=9600) as cable:
        async with LedBoard(b) as board:
            with serial.Serial(a, baudrate=9600, timeout=1) as port:
                t0 = time.monotonic()
                port.write(frame)
                await board.until(lambda: board.speech != [])
                elapsed = time.monotonic() - t0
    assert board.lines == ["粤B12345", "停车3小时", "请缴费7元"]
    assert board.hears("请缴费7元")
    assert elapsed >= cable.wire_time(len(frame)) * 0.9, elapsed  # ~76 bytes ≈ 79 ms on the wire


async def test_led_board_feed_applies_only_good_frames_for_its_address():
    board = LedBoard(address=0)
    with pytest.raises(ValueError):
        await board.open()  # no serial path: feed() only
    stream = (show_line(0, "月租车 剩余12天") + b"\xff" * 5
              + encode_frame(0x62, b"\x00")  # CRC fine, DATA breaks the layout: rejected
              + encode_frame(0x99, b"\x01")  # a command without a layout: unknown
              + show_line(0, "黑名单车辆 禁止通行", address=7)  # another board on the bus: ignored
              + set_clock(datetime(2024, 5, 17, 8, 30, 5)) + show_line(2, "一路顺风"))
    outputs = []
    for i in range(len(stream)):
        outputs += board.feed(stream[i:i + 1])
    assert board.lines == ["月租车 剩余12天", "一路顺风"]
    assert board.sees("剩余12天") and not board.sees("黑名单")
    assert board.clock == datetime(2024, 5, 17, 8, 30, 5)
    assert len(outputs) == len(board.outputs) == 3
    assert [(f.command, f.data) for f, _ in board.rejected] == [(0x62, b"\x00")]
    assert "2" in board.rejected[0][1]  # the reason names what the layout needs
    assert [f.command for f in board.unknown] == [0x99] and board.ignored == 1
    assert board.stats.skipped_bytes == 5


# -- HTTP camera against a tiny lane endpoint ------------------------------------------------------------
class LaneEndpoint:
    """What the lane's camera adapter does, in a few lines: parse with the codec, answer with build_response.
    Opens for live plate results unless told otherwise; never for offline (cached) ones or heartbeats."""

    def __init__(self, *, max_image_bytes: Optional[int] = None,
                 open_for: Callable[[PlateResult], bool] = lambda r: not r.offline) -> None:
        self.max_image_bytes = max_image_bytes
        self.open_for = open_for
        self.available = True
        self.received: list[PlateResult | Heartbeat] = []
        self.errors: list[VzenithError] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self._runner: Optional[web.AppRunner] = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/camera/in1", self._post)
        app.router.add_post("/camera/in1/{token}", self._post)  # a push URL with the camera's token
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/camera/in1"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def heartbeats(self) -> int:
        return sum(isinstance(r, Heartbeat) for r in self.received)

    async def _post(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        self.paths.append(request.path)
        if not self.available:
            return web.Response(status=503)
        try:
            result = parse_push(await request.read(), max_image_bytes=self.max_image_bytes)
        except VzenithError as exc:
            self.errors.append(exc)
            return web.Response(status=exc.status, text=str(exc))
        self.received.append(result)
        if isinstance(result, Heartbeat):
            body = build_response()
        elif self.open_for(result):
            body = build_response(open_gate=True, serial_data=[(0, show_line(0, f"欢迎光临 {result.plate}")),
                                                               (0, speak("欢迎光临"))])
        else:
            body = build_response(serial_data=[(0, show_line(0, "请稍候"))])
        return web.Response(body=body, content_type="application/json")


@pytest.fixture
async def lane():
    endpoint = LaneEndpoint()
    await endpoint.start()
    yield endpoint
    await endpoint.stop()


async def test_car_push_opens_the_relay_and_the_led_board_shows_the_reply(lane):
    board = LedBoard()
    async with HttpCamera(lane.url, serialno="sn-in1", led_board=board) as cam:
        reply = await cam.car("粤B12345", color="green", confidence=97)
    assert reply.status == 200 and reply.opened and reply.error is None
    assert cam.relay_opens == 1 and cam.pushes == 1 and cam.failures == 0
    assert board.lines == ["欢迎光临 粤B12345"] and board.speech == ["欢迎光临"]
    assert [channel for channel, _ in cam.serial_out] == [0, 0]
    (result,) = lane.received
    assert isinstance(result, PlateResult)
    assert (result.plate, result.color, result.confidence, result.serialno, result.offline) == \
        ("粤B12345", "green", 97, "sn-in1", False)
    assert result.image == cam.sent_images[1] and result.image[:2] == b"\xff\xd8" and result.image[-2:] == b"\xff\xd9"
    assert result.plate_image is not None and result.plate_image[:2] == b"\xff\xd8"
    assert abs(result.time_sec - time.time()) < 5
    headers = lane.headers[0]
    assert headers.get("Content-Length") is not None and "Transfer-Encoding" not in headers


async def test_plateless_car_and_several_cars(lane):
    board = LedBoard()
    async with HttpCamera(lane.url, led_board=board) as cam:
        for plate in ("京A12345", "无牌车", "沪C9876D"):
            await cam.car(plate, color="yellow" if plate.startswith("沪") else "blue")
    assert [r.plate for r in lane.received] == ["京A12345", "", "沪C9876D"]
    assert [r.plate_id for r in lane.received] == [1, 2, 3]
    assert cam.relay_opens == 3 and board.lines == ["欢迎光临 沪C9876D"]


async def test_heartbeats_are_answered_and_never_open(lane):
    async with HttpCamera(lane.url, serialno="sn-hb", device_name="gate-1") as cam:
        cam.start_heartbeats(0.01)
        await LedBoard().until(lambda: lane.heartbeats >= 3)
    assert cam.relay_opens == 0 and cam.heartbeats >= 3
    assert all(r == Heartbeat("sn-hb", "gate-1") for r in lane.received)
    assert all(reply.status == 200 and not reply.opened for reply in cam.replies)


async def test_lane_down_then_cached_push_is_resent_offline_and_does_not_open(lane):
    board = LedBoard()
    async with HttpCamera(lane.url, led_board=board) as cam:
        lane.available = False
        reply = await cam.car("粤B12345")
        assert (reply.status, reply.opened, cam.failures, len(cam.offline_queue)) == (503, False, 1, 1)
        lane.available = True
        (again,) = await cam.resend_offline()
    assert again.status == 200 and not again.opened
    assert cam.relay_opens == 0 and cam.offline_queue == []
    (result,) = lane.received
    assert result.offline and result.plate == "粤B12345"
    assert board.lines == ["请稍候"]


async def test_no_answer_at_all_is_a_failure_and_is_cached():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with HttpCamera(f"http://127.0.0.1:{port}/camera/in1", timeout_s=1.0) as cam:
        reply = await cam.car("粤B12345")
    assert reply.status == 0 and reply.error and not reply.opened
    assert cam.failures == 1 and len(cam.offline_queue) == 1 and cam.relay_opens == 0


async def test_malformed_and_oversized_pushes_get_the_codec_status():
    endpoint = LaneEndpoint(max_image_bytes=1000)
    await endpoint.start()
    try:
        async with HttpCamera(endpoint.url, image_size=4096) as cam:
            bad = await cam.post_raw(b'{"AlarmInfoPlate": {"result": ')
            big = await cam.car("粤B12345")
            small = await cam.car("粤B12345", images=False)
    finally:
        await endpoint.stop()
    assert (bad.status, big.status, small.status) == (400, 413, 200)
    assert [e.status for e in endpoint.errors] == [400, 413]
    assert cam.offline_queue == []  # a 4xx is final: the camera does not resend it
    assert cam.relay_opens == 1


async def test_the_camera_sends_its_basic_auth_and_url_token_as_configured(lane):
    async with HttpCamera(lane.url, username="cam-in1", password="pä:ss") as basic, \
            HttpCamera(lane.url + "/", token="tok-0123456789abcdef") as token, HttpCamera(lane.url) as plain:
        replies = [await basic.car("粤B12345"), await basic.heartbeat(), await token.car("粤B12345"),
                   await plain.heartbeat()]
    assert [r.status for r in replies] == [200] * 4
    # RFC 7617: base64 of "user:password" in UTF-8, on every post (heartbeats too)
    expected = "Basic " + base64.b64encode("cam-in1:pä:ss".encode()).decode()
    assert [h.get("Authorization") for h in lane.headers] == [expected, expected, None, None]
    assert lane.paths == ["/camera/in1", "/camera/in1", "/camera/in1/tok-0123456789abcdef", "/camera/in1"]


def test_fake_jpeg_is_jpeg_shaped():
    picture = fake_jpeg("粤B12345", 500)
    assert len(picture) == 500 and picture[:4] == b"\xff\xd8\xff\xe0" and picture[-2:] == b"\xff\xd9"
