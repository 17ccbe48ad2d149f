"""HIL: the real daemon process against the rig — pty serial lines, Modbus RTU IO emulator with barrier
physics, simulated cars. The emulator counts any CLOSE sent onto an occupied arm (close_refused) and any arm
lowered onto a car (arm_hits): both must stay 0."""

from __future__ import annotations

import asyncio

import pytest

from hil.scenario import ScenarioPlayer
from tests.hil.checks import no_harm

pytestmark = pytest.mark.hil



@pytest.mark.rig(seed=True, bolink=True, xft=True, tdzn=True)
async def test_demo_scenario_runs_against_the_daemon_process(bench):
    player = ScenarioPlayer(bench.rig, bench.control, settle_s=1.5, refuse_wait_s=2.0, platforms=bench.platforms)
    outcomes = await player.play(bench.scenario)
    await player.settle()
    assert [(o.what, o.got) for o in outcomes if not o.ok] == []
    records = await bench.control.records(limit=50)
    kinds = sorted((r["kind"], r["status"]) for r in records)
    assert ("entry", "refused") in kinds and ("exit", "released") in kinds
    cash = [r for r in records if r["kind"] == "exit" and r["plate"] == "粤A88888"]
    assert (cash[0]["due_fen"], cash[0]["paid_fen"], cash[0]["status"]) == (700, 700, "released")
    debited = [r for r in records if r["kind"] == "exit" and r["plate"] == "粤B77777"]
    assert (debited[0]["reason"], debited[0]["paid_fen"], debited[0]["status"]) == ("stored_value", 500, "leaving")
    assert (await bench.control.balances(plate="粤B77777"))["balances"] == {"粤B77777": 1500}
    wallet = {r["plate"]: r for r in records if r["kind"] == "exit" and r["status"] == "paid"}
    assert sorted(wallet) == ["粤C11111", "粤C22222", "粤C55555", "粤D11111", "粤D22222", "粤D33333", "粤E11111",
                              "粤E22222", "粤E33333", "粤F11111"], \
        "Bolink wallets, ETC and the booth scanner, XFT sign-free, tdzn pre-leave and payNotify"
    released = {r["plate"]: r for r in records if r["kind"] == "exit" and r["status"] == "released"}
    assert released["粤E44444"]["operator"] == "张三", "the tdzn platform operator's release is audited by name"
    assert {r["plate"] for r in records if r["status"] == "released" and r["kind"] == "exit"} >= {"粤C33333", "粤D44444"}
    no_harm(bench)
    # the monthly card bought on Bolink survives a restart: the car comes back as a monthly car
    await bench.daemon.stop()
    await bench.daemon.start()
    assert (await bench.rig.car("in1", "粤C44444")).passed
    back = [r for r in await bench.control.records(plate="粤C44444") if r["kind"] == "entry"][0]
    assert back["vehicle_class"] == "monthly"


@pytest.mark.rig(seed=True)  # 粤A88888 has been parked for 3 hours: it owes 7 元
async def test_kill_9_while_an_exit_waits_for_payment_resumes_without_repeating_commands(bench):
    rig = bench.rig
    waiting = asyncio.create_task(rig.car("out1", "粤A88888", wait_open_s=60))
    await asyncio.sleep(1.5)
    status = await bench.control.status()
    record_id = status["lanes"]["out1"]["waiting"]["record_id"]
    opens_before = rig.io.count("open")

    bench.daemon.kill9()
    await bench.daemon.start()

    status = await bench.control.status()
    assert status["lanes"]["out1"]["phase"] == "awaiting_payment"
    assert status["lanes"]["out1"]["waiting"]["record_id"] == record_id
    await asyncio.sleep(1.0)
    assert rig.io.count("open") == opens_before, "a restart must not raise the barrier by itself"
    answer = await bench.control.open_barrier(lane="out1", operator="王", reason="cash", amount_fen=700)
    assert answer["opened"] and answer["record_id"] == record_id
    assert (await asyncio.wait_for(waiting, 15)).passed
    await rig.wait_down("out1")
    records = await bench.control.records(plate="粤A88888")
    assert sorted((r["kind"], r["status"]) for r in records) == [("entry", "exited"), ("exit", "released")]
    no_harm(bench)


async def test_a_vanishing_rs485_adapter_faults_the_lanes_and_they_recover(bench):
    rig = bench.rig
    rig.bus.unplug()
    async def faulted() -> bool:
        lanes = (await bench.control.status())["lanes"]
        return all(lane["barrier_fault"] for lane in lanes.values())
    for _ in range(100):
        if await faulted():
            break
        await asyncio.sleep(0.1)
    assert await faulted()
    rig.bus.plug()
    for _ in range(150):
        if not any(lane["barrier_fault"] for lane in (await bench.control.status())["lanes"].values()):
            break
        await asyncio.sleep(0.1)
    assert not any(lane["barrier_fault"] for lane in (await bench.control.status())["lanes"].values())
    assert (await rig.car("in1", "粤B22222")).passed
    no_harm(bench)


async def _lane_status(bench, lane: str, predicate, timeout_s: float = 10.0) -> dict:
    for _ in range(int(timeout_s * 10)):
        status = (await bench.control.status())["lanes"][lane]
        if predicate(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"lane {lane} never reached the expected state: {status}")


async def test_an_arm_that_jams_on_the_way_up_is_a_fault_and_the_operator_lets_the_car_through(bench):
    """The arm sticks half way (ice, a broken spring): no up limit. The lane reports the fault (status and the
    board), never lowers onto the waiting car, and once the arm is freed an operator release re-sends OPEN
    for the same record; the car passes and the fault clears."""
    rig = bench.rig
    arm = rig.io.barrier(1)
    arm.jam_at = 0.4
    car = await rig.car("in1", "粤B44444", wait_open_s=2.0, back_away=False)
    assert car.opened and not car.passed and arm.position == 0.4
    faulted = await _lane_status(bench, "in1", lambda s: s["barrier_fault"])  # after open_confirm_s (5 s)
    assert faulted["barrier_fault"].startswith("OPEN not confirmed by the up limit")
    assert rig.boards["in1"].sees("道闸故障")
    assert rig.io.count("close", 1) == 0, "nothing is lowered while the car waits under a stuck arm"

    arm.jam_at = None  # the operator frees the arm, then releases the car from the booth
    answer = await bench.control.open_barrier(lane="in1", operator="王师傅", reason="arm freed")
    assert answer["opened"]
    await rig.io.wait_until(lambda: arm.up_limit, timeout=5.0)
    await _lane_status(bench, "in1", lambda s: not s["barrier_fault"])
    rig.io.set_loop(1, "safety", True)
    rig.io.set_loop(1, "arming", False)
    await asyncio.sleep(0.5)
    rig.io.set_loop(1, "safety", False)
    assert await rig.wait_down("in1")
    [entry] = await bench.control.records(plate="粤B44444")
    assert (entry["kind"], entry["status"]) == ("entry", "inside"), "one car, one record"
    assert (rig.io.count("open", 1), rig.io.count("close", 1)) == (2, 1)
    no_harm(bench)


async def test_garbage_on_the_camera_line_is_skipped_and_the_next_plate_works(bench):
    camera = bench.rig.cameras["in1"]
    await camera.send_raw(b"\xff\xfe\x00garbage without end" + b"x" * 300 + b"\r\n\x81\x30,blue,90\r\n")
    assert (await bench.rig.car("in1", "粤B33333")).passed
    lines = (await bench.control.status())["lanes"]["in1"]["plate_lines"]
    assert lines["read"] == 1 and lines["skipped"] >= 2
    no_harm(bench)


async def test_noise_before_a_plate_line_costs_nothing_and_a_big5_plate_goes_to_the_booth(bench):
    """Issue 14: a stray 0xFE glued to a car's line used to cost that car; a Big5 camera's 粵B55502, read as GBK,
    gave 竑B55502, which was let in. Now the car is read, and the Big5 reading waits for the booth."""
    rig, camera = bench.rig, bench.rig.cameras["in1"]
    await camera.send_raw(b"\xfe")  # the stray byte, then the car's own line
    assert (await rig.car("in1", "粤B35791")).passed
    assert await rig.wait_down("in1")
    opens = rig.io.count("open", 1)

    rig.io.set_loop(1, "arming", True)
    await camera.send_raw("粵B55502,blue,96\r\n".encode("big5"))
    status = await _lane_status(bench, "in1", lambda s: "车牌无法识别" in s["last_display"])
    assert status["unreadable_plates"] == 1
    assert status["plate_lines"]["unreadable"] == 1 and status["plate_lines"]["resynced"] == 1
    [record] = [r for r in await bench.control.records(lane="in1") if r["reason"] == "unreadable_plate"]
    assert (record["plate"], record["status"]) == ("竑B55502", "refused")
    for _ in range(50):  # the board is written after the decision is committed
        if rig.boards["in1"].sees("车牌无法识别"):
            break
        await asyncio.sleep(0.1)
    assert rig.boards["in1"].sees("车牌无法识别")

    answer = await bench.control.open_barrier(lane="in1", operator="王师傅", reason="plate unreadable")
    assert answer["opened"]  # the booth decides; the only OPEN for that car is the operator's
    assert rig.io.count("open", 1) == opens + 1
    rig.io.set_loop(1, "safety", True)
    rig.io.set_loop(1, "arming", False)
    await asyncio.sleep(0.5)
    rig.io.set_loop(1, "safety", False)
    assert await rig.wait_down("in1")
    no_harm(bench)


async def test_health_endpoint_on_the_public_listener_shows_no_records(bench):
    import aiohttp
    port = (await bench.control.status())["http_port"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            body = await resp.json()
            assert resp.status == 200 and body["ok"] is True
            assert set(body["lanes"]) == {"in1", "out1"} and "records" not in body
        async with session.get(f"http://127.0.0.1:{port}/records") as resp:
            assert resp.status == 404  # operator calls only go through the local control socket


async def test_sigterm_stops_cleanly_and_leaves_the_barrier_as_it_is(bench):
    rig = bench.rig
    waiting = asyncio.create_task(rig.car("out1", "粤A99999", wait_open_s=30))
    await asyncio.sleep(1.0)
    commands = len(rig.io.commands)
    assert await bench.daemon.stop() == 0
    assert not bench.daemon.socket.exists()
    assert len(rig.io.commands) == commands
    waiting.cancel()


@pytest.mark.rig(backoffice=True)
async def test_uploads_wait_out_a_back_office_outage_and_arrive_in_order_once(bench):
    office, rig = bench.backoffice, bench.rig
    office.available = False
    assert (await rig.car("in1", "粤B45678")).passed
    await rig.wait_down("in1")
    assert (await rig.car("out1", "粤B00001")).passed  # VIP: free exit, no entry record
    for _ in range(50):
        outbox = await bench.control.outbox()
        if outbox["destinations"].get("webhook", {}).get("failing_since"):
            break
        await asyncio.sleep(0.1)
    assert [i["key"].split(":")[0] for i in outbox["pending"]] == ["entry", "exit"]
    assert outbox["pending"][0]["last_error"]
    assert office.refused >= 1 and office.received == []

    office.available = True
    for _ in range(200):
        if len(office.received) == 2:
            break
        await asyncio.sleep(0.1)
    assert [r.kind for r in office.received] == ["entry", "exit"]
    assert office.received[0].payload["plate"] == "粤B45678"
    outbox = await bench.control.outbox()
    assert outbox["pending"] == [] and outbox["counts"] == {"webhook/done": 2}
    await asyncio.sleep(1.0)
    assert len(office.received) == 2, "an upload was delivered twice"


async def lanectl(bench, *args: str) -> tuple[int, str, str]:
    """The operator's command line against the running daemon (a subprocess: the rig lives in this loop)."""
    import sys
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lanectl", *args, "--socket", str(bench.daemon.socket),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_operator_command_line_talks_to_the_running_daemon(bench):
    import json
    assert (await bench.rig.car("in1", "粤B56789")).passed
    code, out, _ = await lanectl(bench, "status")
    assert code == 0 and "in1" in out and "out1" in out
    code, out, _ = await lanectl(bench, "records", "--plate", "粤B56789", "--json")
    rows = json.loads(out)
    assert code == 0 and [(r["kind"], r["status"]) for r in rows] == [("entry", "inside")]
    code, out, _ = await lanectl(bench, "records", "--lane", "out1")
    assert code == 0 and "no records" in out
    code, out, _ = await lanectl(bench, "outbox")
    assert code == 0 and "outbox empty" in out
    await bench.rig.wait_down("in1")
    code, out, _ = await lanectl(bench, "open", "--lane", "in1", "--reason", "fire drill", "--operator", "李")
    assert code == 0 and "OPEN delivered" in out
    code, _, err = await lanectl(bench, "open", "--lane", "nope", "--reason", "x", "--operator", "李")
    assert code == 1 and "nope" in err
    code, _, err = await lanectl(bench, "open", "--lane", "in1", "--reason", " ", "--operator", "李")
    assert code == 1 and "reason" in err
    actions = [a for a in (await bench.control.records(lane="in1")) if a["kind"] == "release"]
    assert actions and actions[0]["reason"] == "operator:fire drill"
    code, out, _ = await lanectl(bench, "topup", "--plate", "粤B77777", "--amount", "1000", "--operator", "李",
                                 "--reason", "cash")
    assert code == 0 and "balance 30.00" in out
    code, out, _ = await lanectl(bench, "balance", "--plate", "粤B77777")
    assert code == 0 and "30.00" in out and "topup" in out and "opening" in out
    code, _, err = await lanectl(bench, "topup", "--plate", "粤B12345", "--amount", "100", "--operator", "李",
                                 "--reason", "cash")
    assert code == 1 and "not a stored-value car" in err
