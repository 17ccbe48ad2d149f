"""HIL: the daemon process with XFT sign-free payment — entries reported, an INIT exit surviving kill -9 and
settling once, an unsigned car skipped to the booth. The barrier opens for a paid result of the waiting car
only, once."""

from __future__ import annotations

import asyncio

from dataclasses import replace

import pytest

from hil.emulators import xft as xft_emu
from tests.hil.checks import no_harm

pytestmark = pytest.mark.hil

PARKED = [{"plate": p, "lane": "in1", "minutes_ago": 30} for p in ("粤D11111", "粤D22222")]



@pytest.mark.rig(xft=True)
async def test_entries_are_reported_to_xft(bench):
    assert (await bench.rig.car("in1", "粤B56789")).passed
    for _ in range(50):
        if bench.xft.entries:
            break
        await asyncio.sleep(0.1)
    [entry] = bench.xft.entries.values()
    record = next(r for r in await bench.control.records(plate="粤B56789") if r["kind"] == "entry")
    assert (entry.plate, entry.out_trade_no, entry.store_code) == ("粤B56789", record["record_id"], "S1")
    no_harm(bench)


@pytest.mark.rig(xft=True, seed=PARKED, window_s=60.0)
async def test_kill_9_mid_init_resumes_polling_and_opens_once(bench):
    bench.xft.sign_plate("粤D11111")
    bench.xft.scripts["粤D11111"] = replace(xft_emu.init_forever(), name="init, settled later")
    waiting = asyncio.create_task(bench.rig.car("out1", "粤D11111", wait_open_s=60))
    await asyncio.sleep(1.5)
    status = await bench.control.status()
    assert status["lanes"]["out1"]["phase"] == "awaiting_payment"
    record_id = status["lanes"]["out1"]["waiting"]["record_id"]
    opens = bench.rig.io.count("open")

    bench.daemon.kill9()
    await bench.daemon.start()
    await asyncio.sleep(1.0)
    assert bench.rig.io.count("open") == opens, "a restart never opens by itself"
    # the driver's payment goes through while the daemon is back: only query/charge/v2 can tell (no notify)
    order = bench.xft.orders[record_id]
    order.state = "00"
    assert (await asyncio.wait_for(waiting, 20)).passed
    assert bench.rig.io.count("open") == opens + 1
    records = {r["record_id"]: r for r in await bench.control.records(plate="粤D11111")}
    assert (records[record_id]["status"], records[record_id]["paid_fen"]) == ("paid", 500)
    assert bench.xft.calls["exit"] == 1, "the charge is polled after the restart, never sent twice"
    no_harm(bench)


@pytest.mark.rig(xft=True, seed=PARKED)
async def test_an_unsigned_car_is_skipped_to_the_booth_without_a_charge(bench):
    waiting = asyncio.create_task(bench.rig.car("out1", "粤D22222", wait_open_s=30))
    for _ in range(50):
        status = (await bench.control.status())["lanes"]["out1"]
        if "岗亭" in status["last_display"]:
            break
        await asyncio.sleep(0.1)
    assert "请扫码或到岗亭缴费" in status["last_display"]
    assert bench.xft.calls["signed_relation"] >= 1 and bench.xft.calls["exit"] == 0
    answer = await bench.control.open_barrier(lane="out1", operator="王", reason="cash", amount_fen=500)
    assert answer["opened"] and (await asyncio.wait_for(waiting, 15)).passed
    no_harm(bench)


@pytest.mark.rig(xft=True, seed=PARKED, window_s=20.0)
async def test_a_relation_answered_after_6_s_charges_the_signed_car_and_opens_once(bench):
    bench.xft.sign_plate("粤D11111")
    bench.xft.relation_delay_s = 6.0  # longer than the 5 s charge timeout, within relation_timeout_s (8 s)
    opens = bench.rig.io.count("open")
    result = await bench.rig.car("out1", "粤D11111", wait_open_s=15)
    assert result.passed and 6.0 <= result.t_open - result.t_plate < 9.0
    assert bench.rig.io.count("open") == opens + 1
    assert bench.xft.calls["exit"] == 1 and bench.xft.calls["charge_query"] == 0, \
        "charged once on the sync SUCCESS; the slow relation was never polled as a charge in doubt"
    assert "channel" not in bench.xft.relation_requests[-1], "WECHAT: asked by plate alone (no sub_openid)"
    no_harm(bench)


@pytest.mark.rig(xft=True, seed=PARKED)
async def test_an_order_never_created_shows_the_booth_prompt_and_is_queried_only_a_few_times(bench):
    bench.xft.sign_plate("粤D22222")
    bench.xft.scripts["粤D22222"] = xft_emu.http_500(order_created=False)
    waiting = asyncio.create_task(bench.rig.car("out1", "粤D22222", wait_open_s=40))
    for _ in range(150):  # the rig's window is 6 s
        status = (await bench.control.status())["lanes"]["out1"]
        if "岗亭" in status["last_display"]:
            break
        await asyncio.sleep(0.1)
    assert "请扫码或到岗亭缴费" in status["last_display"]
    # the reconciler ends once the absent rule books the order as not charged (3 answers over >= 10 s)
    for _ in range(200):
        if not (await bench.control.status())["settlement"]["reconciling"]:
            break
        await asyncio.sleep(0.1)
    assert not (await bench.control.status())["settlement"]["reconciling"]
    assert bench.xft.calls["charge_query"] == 3, "absent_checks (3) over absent_span_s (10 s), nothing more"
    assert not bench.xft.orders and bench.xft.calls["exit"] == 1
    answer = await bench.control.open_barrier(lane="out1", operator="王", reason="cash", amount_fen=500)
    assert answer["opened"] and (await asyncio.wait_for(waiting, 15)).passed
    no_harm(bench)
