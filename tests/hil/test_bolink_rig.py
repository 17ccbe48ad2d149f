"""HIL: the daemon process with Bolink — entries uploaded, sign-free cars leaving on a wallet payment, a
pending payment surviving kill -9, a failed one handed to the booth. The barrier opens for a paid result of
the waiting car only, once."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from hil.emulators import bolink as emu
from hil.platforms import BOLINK_PARK
from tests.hil.checks import no_harm

pytestmark = pytest.mark.hil



# Cars parked since half an hour (seeded before the daemon starts) owe the first hour, 5 元.
PARKED = [{"plate": p, "lane": "in1", "minutes_ago": 30} for p in ("粤B12345", "粤B22222", "粤B33333")]


async def sign_free(bench, plate: str) -> str:
    """The platform tells the lane (5.2) that the plate is a sign-free member; returns its entry record id."""
    entry = next(r for r in await bench.control.records(plate=plate) if r["kind"] == "entry")
    bench.bolink.sign_free.add(plate)
    pushes = await bench.bolink.push_notice_car_owner(BOLINK_PARK, plate, order_id=entry["record_id"])
    assert pushes[-1].acked
    return entry["record_id"]


@pytest.mark.rig(bolink=True)
async def test_an_entry_is_uploaded_and_the_platform_says_whether_it_is_sign_free(bench):
    bench.bolink.sign_free.add("粤B56789")
    assert (await bench.rig.car("in1", "粤B56789")).passed
    for _ in range(50):
        order = next((o for o in bench.bolink.orders.values() if o.car_number == "粤B56789"), None)
        if order is not None and bench.bolink.pushes_for("notice_car_owner"):
            break
        await asyncio.sleep(0.1)
    assert order is not None and order.entry["in_channel_id"] == "E1", "the entry was uploaded (3.1)"
    await bench.bolink.idle()
    assert all(p.acked for p in bench.bolink.pushes_for("notice_car_owner"))
    assert (await bench.control.status())["platforms"]["bolink"]["accepted"] >= 1
    no_harm(bench)


@pytest.mark.rig(bolink=True, seed=PARKED)
async def test_a_sign_free_car_leaves_on_its_wallet(bench):
    order_id = await sign_free(bench, "粤B12345")
    bench.bolink.scripts["粤B12345"] = emu.pending_then_paid(0.5)
    opens = bench.rig.io.count("open")
    result = await bench.rig.car("out1", "粤B12345", wait_open_s=10)
    assert result.passed and bench.rig.io.count("open") == opens + 1
    [exit_record] = [r for r in await bench.control.records(plate="粤B12345") if r["kind"] == "exit"]
    assert (exit_record["status"], exit_record["paid_fen"], exit_record["entry_record_id"]) == ("paid", 500, order_id)
    assert bench.bolink.order(BOLINK_PARK, order_id).status == "paid"
    no_harm(bench)


@pytest.mark.rig(bolink=True, seed=PARKED)
async def test_a_failed_payment_falls_back_to_the_booth(bench):
    await sign_free(bench, "粤B22222")
    bench.bolink.scripts["粤B22222"] = emu.fail()
    waiting = asyncio.create_task(bench.rig.car("out1", "粤B22222", wait_open_s=30))
    for _ in range(50):
        status = (await bench.control.status())["lanes"]["out1"]
        if "岗亭" in status["last_display"]:
            break
        await asyncio.sleep(0.1)
    assert status["phase"] == "awaiting_payment" and "请扫码或到岗亭缴费" in status["last_display"]
    answer = await bench.control.open_barrier(lane="out1", operator="王", reason="cash", amount_fen=500)
    assert answer["opened"] and (await asyncio.wait_for(waiting, 15)).passed
    no_harm(bench)


@pytest.mark.rig(bolink=True, seed=PARKED, window_s=60.0)
async def test_kill_9_while_a_payment_is_pending_resumes_and_opens_once(bench):
    order_id = await sign_free(bench, "粤B33333")
    bench.bolink.scripts["粤B33333"] = emu.never_settle()
    waiting = asyncio.create_task(bench.rig.car("out1", "粤B33333", wait_open_s=60))
    await asyncio.sleep(1.5)
    status = await bench.control.status()
    assert status["lanes"]["out1"]["phase"] == "awaiting_payment"
    record_id = status["lanes"]["out1"]["waiting"]["record_id"]
    opens = bench.rig.io.count("open")

    bench.daemon.kill9()
    await bench.daemon.start()
    bench.platforms.connect((await bench.control.status())["http_port"])  # the new process chose a new port
    await asyncio.sleep(1.0)
    assert bench.rig.io.count("open") == opens, "a restart never opens by itself"
    # the platform settles while the daemon is back: the resumed settlement polls 4.3 / takes the 5.5 push
    await bench.bolink.push_outpark(BOLINK_PARK, order_id, state=1, total_fen=500, trade_no="T-AFTER-RESTART")
    assert (await asyncio.wait_for(waiting, 20)).passed
    assert bench.rig.io.count("open") == opens + 1
    records = {r["record_id"]: r for r in await bench.control.records(plate="粤B33333")}
    assert (records[record_id]["status"], records[record_id]["paid_fen"]) == ("paid", 500)
    no_harm(bench)


@pytest.mark.rig(bolink=True, seed=[{"plate": "粤B44444", "lane": "in1", "minutes_ago": 30}])
async def test_a_car_that_paid_ahead_leaves_free_within_the_grace(bench):
    entry = next(r for r in await bench.control.records(plate="粤B44444") if r["kind"] == "entry")
    for _ in range(2):  # the platform repeats its notice: counted once
        pushes = await bench.bolink.push_prepay(BOLINK_PARK, order_id=entry["record_id"], total_fen=500,
                                                trade_no="PRE1")
        assert pushes[-1].acked
    opens = bench.rig.io.count("open")
    assert (await bench.rig.car("out1", "粤B44444")).passed
    assert bench.rig.io.count("open") == opens + 1
    [exit_record] = [r for r in await bench.control.records(plate="粤B44444") if r["kind"] == "exit"]
    assert (exit_record["reason"], exit_record["due_fen"], exit_record["paid_fen"]) == ("paid_ahead", 0, 500)
    no_harm(bench)


@pytest.mark.rig(bolink=True)
async def test_a_plate_less_car_scanning_the_entry_qr_is_admitted_under_the_platform_id(bench):
    opens = bench.rig.io.count("open")
    push = await bench.bolink.push_nolicence_in_park(BOLINK_PARK, channel_id="E1", car_number="wx_8c1f02")
    assert push.answer["state"] == 1 and push.answer["car_number"] == "wx_8c1f02"
    for _ in range(50):
        if bench.rig.io.count("open") > opens:
            break
        await asyncio.sleep(0.1)
    assert bench.rig.io.count("open") == opens + 1, "the entry barrier of channel E1 opened"
    [record] = [r for r in await bench.control.records(lane="in1") if r["plate"] == "wx_8c1f02"]
    assert (record["lane_id"], record["status"], record["reason"]) == ("in1", "inside", "bolink_plateless")
    for _ in range(50):  # 3.1 carries the platform's id whole
        order = bench.bolink.order(BOLINK_PARK, record["record_id"])
        if order is not None:
            break
        await asyncio.sleep(0.1)
    assert order is not None and order.car_number == "wx_8c1f02"
    # the same request again (the platform retries) never opens twice; a channel that is no entry lane is refused
    again = await bench.bolink.push(BOLINK_PARK, dict(push.data), retry=False)
    assert again[-1].answer["state"] == 1 and bench.rig.io.count("open") == opens + 1
    wrong = await bench.bolink.push_nolicence_in_park(BOLINK_PARK, channel_id="A1", car_number="wx_other")
    assert wrong.answer["state"] == 0 and bench.rig.io.count("open") == opens + 1


@pytest.mark.rig(bolink=True, bolink_downlink="http_mode", seed=[{"plate": "粤B55555", "lane": "in1", "minutes_ago": 30}])
async def test_behind_nat_the_same_flows_run_over_the_http_mode_downlink(bench):
    """No callback URL: the daemon logs in and long-polls; 5.2 (as update_balance) and 5.5 reach it that way."""
    entry = next(r for r in await bench.control.records(plate="粤B55555") if r["kind"] == "entry")
    bench.bolink.sign_free.add("粤B55555")
    await bench.bolink.push_notice_car_owner(BOLINK_PARK, "粤B55555", order_id=entry["record_id"])
    bench.bolink.scripts["粤B55555"] = emu.never_settle()
    waiting = asyncio.create_task(bench.rig.car("out1", "粤B55555", wait_open_s=30))
    await asyncio.sleep(1.5)
    assert (await bench.control.status())["lanes"]["out1"]["phase"] == "awaiting_payment", "wallet charged, paying"
    pushes = await bench.bolink.push_outpark(BOLINK_PARK, entry["record_id"], state=1, total_fen=500, trade_no="NAT1")
    assert pushes[-1].acked, "the lane answered the downlinked 5.5 with an upload"
    assert (await asyncio.wait_for(waiting, 15)).passed
    downlink = (await bench.control.status())["platforms"]["bolink_downlink"]
    assert downlink["logged_in"] and downlink["messages"] >= 2
    assert bench.bolink.logins >= 1 and bench.bolink.polls < 60, "long-polls held, not hammered"
    no_harm(bench)


@pytest.mark.rig(bolink=True, seed=[{"plate": "wx_8c1f02", "lane": "in1", "minutes_ago": 30}])
async def test_a_plate_less_car_leaves_by_the_platform_id_it_entered_with(bench):
    """Entered by the entry QR (5.7) under wx_8c1f02; at the exit the camera reads no plate. The driver scans
    the exit QR: the platform asks the price of wx_8c1f02 at this exit (5.1 scene 2), pays that stay (5.5)."""
    [entry] = [r for r in await bench.control.records(lane="in1") if r["plate"] == "wx_8c1f02"]
    waiting = asyncio.create_task(bench.rig.car("out1", "", wait_open_s=30))
    await asyncio.sleep(1.5)
    assert (await bench.control.status())["lanes"]["out1"]["phase"] == "awaiting_payment"
    asked = await bench.bolink.push_query_price(BOLINK_PARK, pay_scene=2, car_number="wx_8c1f02",
                                                out_channel_id="A1")
    assert (asked.answer["state"], asked.answer["order_id"], asked.answer["price"]) == (1, entry["record_id"], "5.00")
    assert not waiting.done()
    pushes = await bench.bolink.push_outpark(BOLINK_PARK, entry["record_id"], state=1, total_fen=500, trade_no="QR1")
    assert pushes[-1].acked and (await asyncio.wait_for(waiting, 15)).passed
    records = {r["record_id"]: r for r in await bench.control.records(limit=10)}
    assert records[entry["record_id"]]["status"] == "exited"
    [exit_record] = [r for r in records.values() if r["kind"] == "exit"]
    assert (exit_record["status"], exit_record["entry_record_id"], exit_record["paid_fen"]) == (
        "paid", entry["record_id"], 500)
    no_harm(bench)


@pytest.mark.rig(bolink=True, seed=[{"plate": "粤B66661", "lane": "in1", "minutes_ago": 30}])
async def test_an_unplugged_booth_scanner_is_shown_and_pays_again_once_plugged_back(bench):
    """The scanner's USB-serial cable is pulled while a car waits to pay: lanectl status names the scanner
    fault (health stays ok: cars still come and go), the car keeps waiting with the arm down, and once the cable
    is back a scanned payment code pays it by sweepcode and lets it out."""
    rig = bench.rig
    waiting = asyncio.create_task(rig.car("out1", "粤B66661", wait_open_s=30))
    for _ in range(100):  # not sign-free, no ETC account: the car waits for the booth or a code
        if "请扫码或到岗亭缴费" in (await bench.control.status())["lanes"]["out1"]["last_display"]:
            break
        await asyncio.sleep(0.1)
    cable = rig.cables["scanner-out1"]
    cable.unplug()
    for _ in range(100):
        status = (await bench.control.status())["lanes"]["out1"]
        if status["scanner_fault"]:
            break
        await asyncio.sleep(0.1)
    assert status["scanner_fault"] and status["phase"] == "awaiting_payment"
    assert not status["barrier_fault"] and not status["plate_reader_fault"]
    shown = subprocess.run([sys.executable, "-m", "lanectl", "status", "--socket", str(bench.daemon.socket)],
                           capture_output=True, text=True, timeout=20)
    assert "FAULT: scanner:" in shown.stdout, shown.stdout
    await rig.replug("scanner-out1")
    for _ in range(150):
        if not (await bench.control.status())["lanes"]["out1"]["scanner_fault"]:
            break
        await asyncio.sleep(0.1)
    assert not (await bench.control.status())["lanes"]["out1"]["scanner_fault"]
    await rig.scan("out1", "134567890123456789")
    assert (await asyncio.wait_for(waiting, 20)).passed
    [exit_record] = [r for r in await bench.control.records(plate="粤B66661") if r["kind"] == "exit"]
    assert (exit_record["status"], exit_record["paid_fen"]) == ("paid", 500)
    sweep = [u for u in bench.bolink.uploads if u.data.get("pay_type") == "sweepcode"]
    assert len(sweep) == 1 and sweep[0].data["auth_code"] == "134567890123456789"
    no_harm(bench)


async def control_push(bench, msg: dict) -> dict:
    """What a script does: POST /__control__/push on the emulator."""
    import json

    import aiohttp
    async with aiohttp.ClientSession() as http:
        async with http.post(bench.bolink.url + emu.CONTROL_PUSH, data=json.dumps(msg, ensure_ascii=False).encode(),
                             timeout=aiohttp.ClientTimeout(total=40)) as r:
            assert r.status == 200
            return await r.json()


@pytest.mark.rig(bolink=True, bolink_downlink="http_mode", bolink_uplink="sdk",
                 seed=[{"plate": "粤B77777", "lane": "in1", "minutes_ago": 30}])
async def test_an_sdk_only_lot_uploads_over_upload_do_and_answers_every_flat_downlink(bench):
    """The daemon as a lot registered only for the SDK channel, behind NAT: one login; the entry and the cash exit
    go up as `inpark` / `outpark`; every downlink a script pushes arrives flat and is answered."""
    import json

    assert (await bench.rig.car("in1", "粤B70001")).passed
    for _ in range(50):
        order = next((o for o in bench.bolink.orders.values() if o.car_number == "粤B70001"), None)
        if order is not None:
            break
        await asyncio.sleep(0.1)
    assert order is not None and order.entry is not None, "the entry went up as an SDK inpark"
    assert "/bpd/upload.do:inpark" in [u.path for u in bench.bolink.uploads]
    entry = next(r for r in await bench.control.records(plate="粤B77777") if r["kind"] == "entry")
    rid = entry["record_id"]
    pushed = [
        {"service_name": "update_balance", "car_number": "粤B70001", "balance": "0.00", "autopay": 0},
        {"service_name": "query_price", "park_id": BOLINK_PARK, "pay_scene": 0, "car_number": "粤B77777",
         "order_id": rid},
        {"service_name": "query_price", "park_id": BOLINK_PARK, "pay_scene": 1, "car_number": "粤B77777",
         "out_channel_id": "A1", "query_order_no": "Q1"},
        {"service_name": "monthcard_pay", "trade_no": "M1", "park_id": BOLINK_PARK, "pay_money": 300.0, "state": 1,
         "card_id": "C1", "car_number": "粤B79999", "start_time": "2026-12-01", "end_time": "2026-12-31",
         "pay_time": 1765000000},
        {"service_name": "nolicence_in_park", "car_number": "wx_sdk01", "park_id": BOLINK_PARK, "channel_id": "A1",
         "timetemp": 1765000000000},  # A1 is no entry lane: answered state 0, still a reply
        {"service_name": "prepay_order", "park_id": BOLINK_PARK, "order_id": rid, "car_number": "粤B77777",
         "prepay": 5.0, "prepay_type": 1, "pay_time": 1765000000},
    ]
    for msg in pushed:
        out = await control_push(bench, msg)
        body = json.loads(out["pushes"][-1]["body"])
        assert body["service_name"] == msg["service_name"] and "data" not in body, body
        if msg["service_name"] == "update_balance":
            assert out["state"] == 1
        else:
            assert out["pushes"][-1]["answer"] not in (None, "no reply"), f"{msg['service_name']} not answered"
            if msg["service_name"] != "nolicence_in_park":
                assert out["state"] == 1, out
    opens = bench.rig.io.count("open")
    assert (await bench.rig.car("out1", "粤B77777")).passed, "paid ahead: leaves free"
    assert bench.rig.io.count("open") == opens + 1
    outpark = await control_push(bench, {"service_name": "outpark", "park_id": BOLINK_PARK, "order_id": "in9_none",
                                         "trade_no": "LATE1", "state": 1, "total": 5.0, "pay_type": "wallet"})
    assert outpark["state"] == 1, "a 5.5 for an order the lane does not know is still recorded and answered"
    assert bench.bolink.logins == 1, "one login for uplink and downlink"
    assert not [u for u in bench.bolink.uploads if u.path.startswith("/unionapi/neworder")]
    assert bench.bolink.polls < 80, "long-polls held, not hammered"
    no_harm(bench)
