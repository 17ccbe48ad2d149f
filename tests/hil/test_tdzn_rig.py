"""HIL: the daemon process with the tdzn platform — enterNotify / leaveNotify with pay orders, a car waiting
for payNotify across a kill -9, a release by the platform's operator. The barrier opens for a paid result of
the waiting car only, once."""

from __future__ import annotations

import asyncio

import pytest

from hil.emulators import tdzn as tdzn_emu
from tests.hil.checks import no_harm

pytestmark = pytest.mark.hil

PARKED = [{"plate": p, "lane": "in1", "minutes_ago": 30} for p in ("粤E11111", "粤E22222")]



async def until(predicate, timeout: float = 8.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.rig(tdzn=True)
async def test_entry_and_exit_are_notified_with_the_pay_orders(bench):
    bench.tdzn.script("粤B56789", tdzn_emu.pay_at_preleave())
    assert (await bench.rig.car("in1", "粤B56789")).passed
    await until(lambda: bench.tdzn.entries)
    [entry] = bench.tdzn.entries.values()
    assert (entry["plateNum"], entry["parkCode"]) == ("粤B56789", "RIG/1P1")
    await bench.rig.wait_down("in1")
    # a stay of seconds is free: the exit opens on the rules and is still reported, with no pay order
    assert (await bench.rig.car("out1", "粤B56789")).passed
    await until(lambda: bench.tdzn.leaves)
    [leave] = bench.tdzn.leaves.values()
    assert leave["recordNo"] == entry["recordNo"] and leave["payOrders"] == []
    no_harm(bench)


@pytest.mark.rig(tdzn=True, seed=PARKED, window_s=60.0)
async def test_kill_9_while_waiting_for_pay_notify_opens_once_when_it_arrives(bench):
    bench.tdzn.script("粤E11111", tdzn_emu.pay_later(4.0, type=1))
    waiting = asyncio.create_task(bench.rig.car("out1", "粤E11111", wait_open_s=60))
    await asyncio.sleep(1.5)
    status = await bench.control.status()
    assert status["lanes"]["out1"]["phase"] == "awaiting_payment"
    record_id = status["lanes"]["out1"]["waiting"]["record_id"]
    opens = bench.rig.io.count("open")

    bench.daemon.kill9()
    await bench.daemon.start()  # the listener comes back on the same fixed port
    assert bench.rig.io.count("open") == opens, "a restart never opens by itself"
    # the platform's payNotify (retried until answered 200) reaches the restarted daemon
    assert (await asyncio.wait_for(waiting, 20)).passed
    assert bench.rig.io.count("open") == opens + 1
    records = {r["record_id"]: r for r in await bench.control.records(plate="粤E11111")}
    assert (records[record_id]["status"], records[record_id]["paid_fen"]) == ("paid", 500)
    await until(lambda: any(l["plateNum"] == "粤E11111" for l in bench.tdzn.leaves.values()))
    leave = next(l for l in bench.tdzn.leaves.values() if l["plateNum"] == "粤E11111")
    assert [o["paidFee"] for o in leave["payOrders"]] == [500] and leave["mobileFee"] == 500
    no_harm(bench)


@pytest.mark.rig(tdzn=True, seed=PARKED)
async def test_the_platform_operator_releases_a_waiting_car_by_name(bench):
    waiting = asyncio.create_task(bench.rig.car("out1", "粤E22222", wait_open_s=30))
    await asyncio.sleep(1.5)
    cancel = await bench.tdzn.remote_dev("A1", type=1, operator="张三", open_gate_case="车主取消")
    assert cancel.ok and not waiting.done()
    answer = await bench.tdzn.remote_dev("A1", type=2, operator="张三", open_gate_case="车主已线下补缴")
    assert answer.ok and (await asyncio.wait_for(waiting, 15)).passed
    [record] = [r for r in await bench.control.records(plate="粤E22222") if r["kind"] == "exit"]
    assert (record["status"], record["operator"]) == ("released", "张三")
    assert "车主已线下补缴" in record["reason"]
    no_harm(bench)
