"""The console's records and shift tab in a real browser (issue 18 item 4): Debian's chromium driven by Playwright
against a daemon built from fakes (devices, clock) over real SQLite and the real LAN listener, as in
test_console_browser.py (whose fixtures this reuses). A car enters with the camera's picture; the operator opens
"记录与班次", searches part of its plate typed in lower case, sees the row with its picture (thumbnail, then the
full picture), downloads the CSV (UTF-8 with BOM, the plate and the lot time in it), sees the shift counted, and
the tab in English.
Screenshots go to the test's artefact directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lanectl.core.events import PlateRead
from tests.daemon import fake_device_daemon
from tests.fakes import FakeClock, FakeLaneDevices
from tests.integration.test_console_browser import (  # noqa: F401 (config, xft: the fixtures, reused)
    AT_THE_LOOP, CHROMIUM, PLATE, async_api, config, log_in, pytestmark, xft)

PICTURE_HTML = ("<body style='margin:0'><div style='width:320px;height:180px;background:#1d3557;color:#fff;"
                "font:48px sans-serif;display:flex;align-items:center;justify-content:center'>粤B12345</div></body>")


async def test_an_operator_finds_a_car_by_part_of_its_plate_sees_its_picture_and_downloads_the_csv(config, tmp_path):
    artefacts = tmp_path / "console-screenshots"
    artefacts.mkdir()
    clock, devices = FakeClock(), FakeLaneDevices()
    async with fake_device_daemon(config, clock, devices) as app:
        assert app.lan is not None
        lan = f"http://127.0.0.1:{app.lan.port}"
        async with async_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=["--no-sandbox", "--disable-gpu"])
            try:
                # the camera's picture of the car, a real JPEG (made by the browser itself)
                maker = await browser.new_page(viewport={"width": 320, "height": 180})
                await maker.set_content(PICTURE_HTML)
                picture = app.images_dir / "in1" / "20240301080000_1.jpg"
                picture.parent.mkdir(parents=True, exist_ok=True)
                picture.write_bytes(await maker.screenshot(type="jpeg"))
                await maker.close()
                await devices.barriers["in1"].send(AT_THE_LOOP)
                await devices.readers["in1"].send(PlateRead(PLATE, "blue", 95, "in1-camera", image=str(picture)))
                await asyncio.wait_for(devices.barriers["in1"].opened.wait(), 5)
                await clock.advance(60)  # the shift so far ends now: the entry is inside it

                page = await (await browser.new_context(viewport={"width": 1366, "height": 768},
                                                        accept_downloads=True)).new_page()
                await page.goto(f"{lan}/console/")
                await log_in(page, "wang", "wang-pass-1")
                await page.wait_for_selector("#lane-in1")
                await page.click("#tab-records")
                await page.wait_for_selector("#records-view:not([hidden])")
                await page.fill("#records-search input[name=plate]", "b 1234")  # part of it, as typed
                await page.click("#records-search button[type=submit]")
                row = page.locator("#records-table tbody tr[data-record]", has_text=PLATE)
                await row.wait_for()
                text = await row.inner_text()
                assert "东门入口" in text and "入场" in text and "2024-03-01 08:00:00" in text, text
                assert "临时车" in text, text  # the record's reason in the operator's words, not `temporary`
                thumb = row.locator("img.thumb")
                await thumb.wait_for()
                loaded = await thumb.evaluate(
                    "img => img.complete ? img.naturalWidth : "
                    "new Promise(ok => img.addEventListener('load', () => ok(img.naturalWidth)))")
                assert loaded == 320  # the picture itself, through the authenticated route
                await page.screenshot(path=str(artefacts / "1-records-search.png"))
                await thumb.click()
                await page.wait_for_selector("#picture-dialog[open] #picture-full")
                assert await page.evaluate("document.querySelector('#picture-full').naturalWidth") == 320
                await page.screenshot(path=str(artefacts / "2-picture.png"))
                await page.click("#picture-dialog button")

                async with page.expect_download() as info:
                    await page.click("#records-csv")
                download = await info.value
                assert download.suggested_filename.startswith("records-") and \
                    download.suggested_filename.endswith(".csv")
                raw = Path(await download.path()).read_bytes()
                assert raw.startswith(b"\xef\xbb\xbf"), raw[:20]
                lines = raw.decode("utf-8-sig").splitlines()
                assert lines[0].startswith("时间,车道,车牌") and len(lines) == 2, lines
                assert lines[1].startswith(f"2024-03-01 08:00:00,东门入口,{PLATE},blue,入场,在场"), lines[1]

                await page.click("#records-view .subtab[data-pane=shift]")
                summary = page.locator("#shift-figures .summary")
                await summary.wait_for()
                assert "入场 1" in await summary.inner_text()
                await page.screenshot(path=str(artefacts / "3-shift.png"))
                await page.select_option("#shift-form select[name=period]", "yesterday")  # by the lot's calendar
                await page.wait_for_selector("#shift-figures .summary:has-text('2024-02-29 00:00:00')")
                assert "入场 0" in await summary.inner_text()
                await page.select_option("#shift-form select[name=period]", "today")
                await page.wait_for_selector("#shift-figures .summary:has-text('入场 1')")

                await page.click("#lang")  # the English view: the tab's own texts follow the page's language
                await page.wait_for_selector("#tab-records:has-text('Records & shift')")
                await page.wait_for_selector("#shift-figures .summary:has-text('Entries 1')")
                for pane, heading in (("money", "Provider"), ("outbox", "Destination")):
                    await page.click(f"#records-view .subtab[data-pane={pane}]")
                    await page.wait_for_selector(f"#pane-{pane} th:has-text('{heading}')")
                await page.screenshot(path=str(artefacts / "4-outbox-english.png"))
                await page.click("#tab-lanes")
                await page.wait_for_selector("#lane-in1")
                assert await page.is_hidden("#records-view")
                print(f"\nconsole records tab: screenshots in {artefacts}")
            finally:
                await browser.close()
