"""The booth console in a real browser (issue 18): Debian's chromium driven by Playwright against a daemon built
from fakes (devices, clock) over real SQLite and the real LAN listener. A wrong password is refused; a car that
entered three hours ago comes to the exit and owes 7 yuan; the page shows it from the live stream (the delay
from the lane's decision to the page is printed, not asserted); two operators release it for cash at once:
one is told `released` with the 2 yuan shortfall, the other that the arm is already going up; the barrier
opens once and the record names `console:wang`. Screenshots go to the test's artefact directory.

Skipped, saying why, only where no chromium (or no playwright package) can be had: scripts/test installs
Debian's chromium when it runs as root."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import aiohttp
import pytest

from lanectl.adapters.console.accounts import User, hash_password, write_users
from lanectl.bootstrap import build_app
from lanectl.config import load_config
from lanectl.core import effects as fx
from lanectl.core.events import IoSnapshot, PlateRead
from tests.fakes import FakeClock, FakeControlServer, FakeLaneDevices, FakeNotifier
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


@pytest.fixture
def config(tmp_path: Path):
    etc = write_minimal_config(tmp_path, console={"enabled": True}, housekeeping={"enabled": False})
    (etc / "lanes" / "in1.yaml").write_text("id: in1\nname: 东门入口\ndirection: entry\n" + DEVICES % {"n": 1})
    (etc / "lanes" / "out1.yaml").write_text("id: out1\nname: 东门出口\ndirection: exit\n" + DEVICES % {"n": 2})
    write_users(etc / "console-users.yaml",
                {"wang": User("wang", "operator", hash_password("wang-pass-1", n=2 ** 10)),
                 "li": User("li", "operator", hash_password("li-pass-11", n=2 ** 10))})
    return load_config(etc)


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

    app = build_app(config, clock=clock, devices=devices, control=FakeControlServer, notifier=FakeNotifier(),
                    raise_nofile=lambda: (4096, 4096), on_effects=on_effects)
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    try:
        await asyncio.wait_for(app.ready.wait(), 5)
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
                await devices.readers["out1"].send(PlateRead(PLATE, "blue", 95, "out1-camera"))
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
                await wang.screenshot(path=str(artefacts / "2-car-owes-7-yuan.png"))

                # both operators open the cash dialog and confirm at the same moment
                for page, amount in ((wang, "5.00"), (li, "7")):
                    await page.wait_for_selector(f"#lane-out1 .due:has-text('¥7.00')")
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
            finally:
                await browser.close()

        records = await app.records(plate=PLATE, lane="out1", since=None, until=None, limit=10)
        winner = f"console:{won[0]}"
        assert any(r.get("operator") == winner for r in records), records
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 10)
    assert sorted(p.name for p in artefacts.iterdir())[0] == "1-login-refused.png"
