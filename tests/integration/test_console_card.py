"""The lane card through the daemon, without a browser (so it is checked where no chromium can be had): a car
at an exit charged through the XFT emulator, which refuses it — the lane's console view carries the refusal
with XFT's reason once the settlement wrote it, the exit picture by record id (served on the LAN face to a
session), no entry picture, and the fee in words; the SSE stream sends the card again when the attempt
changed."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from hil.emulators import xft as xft_emu
from lanectl.adapters.console.accounts import User, hash_password, write_users
from lanectl.config import load_config
from lanectl.core.events import PlateRead
from tests.daemon import fake_device_daemon
from tests.fakes import FakeClock, FakeLaneDevices
from tests.minimal_site import AT_THE_LOOP, write_minimal_config

pytestmark = pytest.mark.timeout(60)
PLATE = "粤B12345"
KEY = "xft-key-for-the-console-card-test"
DEVICES = """devices:
  barrier: {kind: modbus_rtu, port: /dev/null-rs485-%(n)s, unit: 1}
  plate_reader: {kind: serial_line, port: /dev/null-camera-%(n)s}
"""
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"picture" * 20 + b"\xff\xd9"


@pytest.fixture
async def xft():
    platform = xft_emu.XftPlatform(key=KEY)
    await platform.start()
    platform.sign_plate(PLATE)
    platform.script(PLATE, xft_emu.fail("PAY_FAIL", "卡内余额不足"))
    yield platform
    await platform.stop()


async def until(predicate, what: str, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_the_card_shows_the_refusal_with_its_reason_the_picture_and_the_fee_in_words(tmp_path, xft,
                                                                                           monkeypatch):
    monkeypatch.setenv("LANECTL_TEST_XFT_KEY", KEY)
    etc = write_minimal_config(tmp_path, console={"enabled": True}, housekeeping={"enabled": False},
                               payments={"xft": {"base_url": xft.url, "app_id": "wx1", "merchant_code": "M1",
                                                 "store_code": "S1", "key": {"env": "LANECTL_TEST_XFT_KEY"},
                                                 "notify_url": "http://127.0.0.1:9/xft/notify"}})
    (etc / "lanes" / "in1.yaml").write_text("id: in1\ndirection: entry\n" + DEVICES % {"n": 1})
    (etc / "lanes" / "out1.yaml").write_text("id: out1\ndirection: exit\npayments: [xft]\n" + DEVICES % {"n": 2})
    write_users(etc / "console-users.yaml", {"wang": User("wang", "operator", hash_password("wang-pass-1",
                                                                                            n=2 ** 10))})
    clock, devices = FakeClock(), FakeLaneDevices()
    async with fake_device_daemon(load_config(etc), clock, devices) as app:
        assert app.lan is not None and app.console_feed is not None
        await devices.barriers["in1"].send(AT_THE_LOOP)
        await devices.readers["in1"].send(PlateRead(PLATE, "blue", 95, "in1-camera"))
        await asyncio.wait_for(devices.barriers["in1"].opened.wait(), 5)
        await clock.advance(3 * 3600)
        picture = app.images_dir / "out1" / "20240301-110000-000000_1.jpg"
        picture.parent.mkdir(parents=True, exist_ok=True)
        picture.write_bytes(JPEG)
        await devices.barriers["out1"].send(AT_THE_LOOP)
        await devices.readers["out1"].send(PlateRead(PLATE, "blue", 95, "out1-camera", str(picture)))

        def providers() -> list[dict]:
            car = app.console_feed.views["out1"]["car"]  # the view as the feed last sent it
            return car["providers"] if car else []
        await until(lambda: [p["state"] for p in providers()] == ["refused"], "XFT's refusal on the card")
        [xft_state] = providers()
        assert xft_state["provider"] == "xft" and "卡内余额不足" in xft_state["reason"]
        car = app.console_feed.views["out1"]["car"]
        assert car["picture"] == f"/console/images/{car['record_id']}" and "image" not in car  # never the path
        assert car["entry_picture"] == f"/console/images/{car['entry_record_id']}"
        assert [w["zh"] for w in car["breakdown"]][-1] == "首小时 5.00 元；之后每小时 1.00 元 × 2"

        lan = f"http://127.0.0.1:{app.lan.port}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # cookies for an IP
            async with http.get(f"{lan}{car['picture']}") as r:
                assert r.status == 401  # no session, no picture
            async with http.post(f"{lan}/console/login", json={"user": "wang", "password": "wang-pass-1"}) as r:
                assert r.status == 200
            async with http.get(f"{lan}{car['picture']}") as r:
                assert r.status == 200 and await r.read() == JPEG
            async with http.get(f"{lan}{car['entry_picture']}") as r:
                assert r.status == 404 and (await r.json())["error"] == "no_picture"  # the entry's camera sent none
            async with http.get(f"http://127.0.0.1:{app.http.port}{car['picture']}") as r:
                assert r.status == 404  # never on the public face
