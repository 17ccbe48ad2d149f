"""The booth console in a real browser (issue 18): Debian's chromium driven by Playwright against a daemon built
from fakes (devices, clock) over real SQLite and the real LAN listener, the exit charging through the XFT
platform emulator (hil/emulators/xft.py). A wrong password is refused; a car that entered three hours ago comes
to the exit and owes 7 yuan; the page shows it from the live stream (the delay from the lane's decision to the
page is printed, not asserted) with the exit camera's picture, "no picture" for the entry, the fee in words and
XFT's refusal with the platform's reason; two operators release it for cash at once: one is told `released`
with the 2 yuan shortfall, the other that the arm is already going up; the barrier opens once and the record
names the winner. The supervisor tops up a stored-value card (the operator has no such control); the page fits
a 1366×768 booth screen and a tablet both ways up. Screenshots go to the test's artefact directory.

Skipped, saying why, only where no chromium (or no playwright package) can be had: scripts/test installs
Debian's chromium when it runs as root."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import aiohttp
import pytest

from hil.emulators import xft as xft_emu
from lanectl.adapters.console.accounts import User, hash_password, write_users
from lanectl.config import load_config
from lanectl.core import effects as fx
from lanectl.core.events import IoSnapshot, PlateRead
from tests.daemon import fake_device_daemon
from tests.fakes import FakeClock, FakeLaneDevices
from tests.minimal_site import write_minimal_config

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
async_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed "
                                "(pip install -e '.[test]')")
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine: scripts/test installs "
                                 "Debian's (apt-get install chromium) when run as root"),
              pytest.mark.timeout(120)]

DEVICES = """devices:
  barrier: {kind: modbus_rtu, port: /dev/null-rs485-%(n)s, unit: 1}
  plate_reader: {kind: serial_line, port: /dev/null-camera-%(n)s}
"""
AT_THE_LOOP = IoSnapshot(arming=True, safety=False, up_limit=False, down_limit=True)
PLATE = "粤B12345"
STORED = "粤B55555"  # a stored-value car with 10 yuan on it
XFT_KEY = "xft-key-for-the-console-browser-test"
REFUSAL = "卡内余额不足"


@pytest.fixture
async def xft():
    platform = xft_emu.XftPlatform(key=XFT_KEY)
    await platform.start()
    platform.sign_plate(PLATE)
    platform.script(PLATE, xft_emu.fail("PAY_FAIL", REFUSAL))
    yield platform
    await platform.stop()


@pytest.fixture
def config(tmp_path: Path, xft, monkeypatch):
    monkeypatch.setenv("LANECTL_TEST_XFT_KEY", XFT_KEY)
    etc = write_minimal_config(tmp_path, console={"enabled": True}, housekeeping={"enabled": False},
                               vehicles={"stored_value": {STORED: 1000}},
                               payments={"xft": {"base_url": xft.url, "app_id": "wx8888", "merchant_code": "M1",
                                                 "store_code": "S1", "key": {"env": "LANECTL_TEST_XFT_KEY"},
                                                 "notify_url": "http://127.0.0.1:9/xft/notify"}})
    (etc / "lanes" / "in1.yaml").write_text("id: in1\nname: 东门入口\ndirection: entry\n" + DEVICES % {"n": 1})
    (etc / "lanes" / "out1.yaml").write_text("id: out1\nname: 东门出口\ndirection: exit\npayments: [xft]\n" +
                                             DEVICES % {"n": 2})
    write_users(etc / "console-users.yaml",
                {"wang": User("wang", "operator", hash_password("wang-pass-1", n=2 ** 10)),
                 "li": User("li", "supervisor", hash_password("li-pass-11", n=2 ** 10))})
    return load_config(etc)


async def fits(page, width: int, height: int) -> None:
    """At this screen size nothing is wider than the screen and the card's buttons are there to touch."""
    await page.set_viewport_size({"width": width, "height": height})
    scroll, inner = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"{width}x{height}: the page is {scroll} px wide"
    for button in ("#lane-out1 button.release", "#lane-out1 button.cash"):
        await page.locator(button).scroll_into_view_if_needed()
        box = await page.locator(button).bounding_box()
        assert box is not None and await page.locator(button).is_visible(), button
        assert box["x"] >= 0 and box["x"] + box["width"] <= inner and box["height"] >= 44, (width, button, box)


async def log_in(page, user: str, password: str) -> None:
    await page.fill("#login input[name=user]", user)
    await page.fill("#login input[name=password]", password)
    await page.click("#login button[type=submit]")


async def test_an_operator_sees_the_car_and_its_fee_live_and_releases_it_for_cash(config, tmp_path):
    artefacts = tmp_path / "console-screenshots"
    artefacts.mkdir()
    clock, devices = FakeClock(), FakeLaneDevices()
    decided: dict[str, float] = {}  # record id -> wall time the lane decided the car owes

    def on_effects(lane: str, effects: list) -> None:
        for e in effects:
            if isinstance(e, fx.NewRecord) and e.kind == "exit" and e.due_fen:
                decided.setdefault(e.record_id, time.time())

    async with fake_device_daemon(config, clock, devices, on_effects=on_effects) as app:
        assert app.lan is not None
        lan, public = f"http://127.0.0.1:{app.lan.port}", f"http://127.0.0.1:{app.http.port}"
        async with aiohttp.ClientSession() as http:
            for path in ("/console/", "/console/events", "/console/static/console.js"):
                async with http.get(public + path) as r:
                    assert r.status == 404, path  # never on the face the internet reaches
        # the car entered three hours ago (through the entry lane)
        await devices.barriers["in1"].send(AT_THE_LOOP)
        await devices.readers["in1"].send(PlateRead(PLATE, "blue", 95, "in1-camera"))
        await asyncio.wait_for(devices.barriers["in1"].opened.wait(), 5)
        await clock.advance(3 * 3600)

        async with async_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=["--no-sandbox", "--disable-gpu"])
            try:
                # the exit camera's picture: a real JPEG (the browser must be able to show it), made by the browser
                shot = await browser.new_page(viewport={"width": 320, "height": 240})
                await shot.set_content(f"<body style='margin:0;background:#234;color:#fff;font:48px sans-serif'>"
                                       f"<p style='margin:80px 20px'>{PLATE}</p>")
                picture = app.images_dir / "out1" / "20261207-110000-000000_1.jpg"
                picture.parent.mkdir(parents=True, exist_ok=True)
                picture.write_bytes(await shot.screenshot(type="jpeg"))
                await shot.close()
                wang = await (await browser.new_context(viewport={"width": 1366, "height": 768})).new_page()
                li = await (await browser.new_context(viewport={"width": 1366, "height": 768})).new_page()
                await wang.goto(f"{lan}/console/")
                await log_in(wang, "wang", "not-his-password")
                await wang.wait_for_selector("#login-error:has-text('用户名或密码错误')")
                await wang.screenshot(path=str(artefacts / "1-login-refused.png"))
                await log_in(wang, "wang", "wang-pass-1")
                await wang.wait_for_selector("#lane-out1")
                await li.goto(f"{lan}/console/")
                await log_in(li, "li", "li-pass-11")
                await li.wait_for_selector("#lane-out1")

                # the car comes to the exit: the lane decides it owes 5 + 2 x 1 yuan for its three hours
                await devices.barriers["out1"].send(AT_THE_LOOP)
                read_at = time.time()
                await devices.readers["out1"].send(PlateRead(PLATE, "blue", 95, "out1-camera", str(picture)))
                await wang.wait_for_selector(f"#lane-out1 .plate:has-text('{PLATE}')", timeout=5000)
                await wang.wait_for_selector("#lane-out1 .due:has-text('¥7.00')")
                (record_id, at), = decided.items()
                seen = await wang.evaluate(f"window.__seen[{record_id!r}]")
                # from the plate handed to the lane (decision + SQLite commit + stream + render), and from the
                # lane's committed decision (on_effects runs right after the commit) to the page showing it
                print(f"\nconsole live update (target 200 ms; measured, not asserted): plate read -> page "
                      f"{seen - read_at * 1000:.0f} ms; committed decision -> page {seen - at * 1000:.0f} ms")
                card = await wang.inner_text("#lane-out1")
                assert "待缴费" in card and "3 小时 0 分" in card and "临时车" in card
                # the fee in words, the exit picture shown, "no picture" for the entry (its camera sent none)
                assert "首小时 5.00 元；之后每小时 1.00 元 × 2" in card and "与入场记录车牌完全一致" in card
                await wang.wait_for_function("document.querySelector('#lane-out1 .pic.here img').naturalWidth > 0")
                await wang.wait_for_selector("#lane-out1 .pic.entry.missing .none:has-text('无图片')")
                # XFT refused the charge: the booth sees it and the platform's own reason
                refused = await wang.wait_for_selector(
                    f"#lane-out1 .provider.refused[data-provider=xft]:has-text('{REFUSAL}')", timeout=5000)
                print(f"console: XFT shown as {await refused.inner_text()!r}")
                assert "已拒绝" in await refused.inner_text()
                assert await wang.is_hidden("#topup-open")  # an operator has no top-up
                await wang.screenshot(path=str(artefacts / "2-car-owes-7-yuan.png"))

                # both operators open the cash dialog and confirm at the same moment
                for page, amount in ((wang, "5.00"), (li, "7")):
                    await page.wait_for_selector("#lane-out1 .due:has-text('¥7.00')")
                    await page.click("#lane-out1 button.cash")
                    await page.fill("#release-form input[name=amount]", amount)
                    await page.fill("#release-form input[name=reason]", "现金缴费")
                await wang.screenshot(path=str(artefacts / "3-cash-dialog.png"))
                await asyncio.gather(wang.click("#release-form button[type=submit]"),
                                     li.click("#release-form button[type=submit]"))
                await asyncio.wait_for(devices.barriers["out1"].opened.wait(), 5)
                results = {}
                for name, page in (("wang", wang), ("li", li)):
                    await page.wait_for_selector("#lane-out1 .result:not(:empty)")
                    results[name] = await page.inner_text("#lane-out1 .result")
                    await page.screenshot(path=str(artefacts / f"4-after-release-{name}.png"))
                print(f"console: the two operators were told {results}; screenshots in {artefacts}")
                won = [n for n, text in results.items() if text.startswith("已放行")]
                assert len(won) == 1, results
                lost = "li" if won == ["wang"] else "wang"
                assert "道闸已在抬起" in results[lost]
                if won == ["wang"]:
                    assert "少收 2.00 元" in results["wang"]
                assert devices.barriers["out1"].commands == ["open"]  # one OPEN for the two of them

                await wang.click("#lang")  # the English view
                await wang.wait_for_selector("#lane-out1 button.cash:has-text('Cash release')")
                await wang.screenshot(path=str(artefacts / "5-english.png"))

                # the booth screen and a tablet both ways up
                for width, height in ((1366, 768), (768, 1024), (1024, 768)):
                    await fits(wang, width, height)
                    await wang.screenshot(path=str(artefacts / f"6-screen-{width}x{height}.png"), full_page=True)

                # the supervisor tops up a stored-value card; a car without one is refused in words
                await li.click("#topup-open")
                for plate, amount in (("粤B99999", "50"), (STORED, "50")):
                    await li.fill("#topup-form input[name=plate]", plate)
                    await li.fill("#topup-form input[name=amount]", amount)
                    await li.fill("#topup-form input[name=reason]", "现金充值")
                    await li.click("#topup-form button[type=submit]")
                    if plate != STORED:
                        await li.wait_for_selector("#topup-error:has-text('not a stored-value car')")
                await li.wait_for_selector(f"#topup-result:has-text('{STORED} 已充值 50.00 元，余额 60.00 元')")
                await li.screenshot(path=str(artefacts / "7-supervisor-top-up.png"))
            finally:
                await browser.close()

        records = await app.records(plate=PLATE, lane="out1", since=None, until=None, limit=10)
        winner = f"console:{won[0]}"
        assert any(r.get("operator") == winner for r in records), records
        moves = (await app.balances(plate=STORED, limit=10))["moves"]
        topups = [(m["kind"], m["delta_fen"]) for m in moves if "console:li" in m["reference"]]
        assert topups == [("topup", 5000)], moves
    assert sorted(p.name for p in artefacts.iterdir())[0] == "1-login-refused.png"
