"""HIL: the daemon killed at the worst moments and started again, against the rig. The barrier must keep its
truth: a pulse cut short by the kill does not swallow the next command, an arm left up with no car is lowered,
a car under the arm passes first, and an operator is told when an OPEN did not reach the barrier."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from tests.hil.checks import no_harm
from tests.hil.test_lane_rig import _lane_status, lanectl

pytestmark = pytest.mark.hil


def audit(bench, lane: str) -> list[dict]:
    db = sqlite3.connect(f"file:{bench.workdir / 'lanectl.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM barrier_actions WHERE lane_id=? ORDER BY rowid", (lane,))]
    finally:
        db.close()


async def audit_settles(bench, lane: str, expected: list[tuple], fields=("command", "status"),
                        timeout_s: float = 5.0) -> None:
    """The audit rows reach `expected` (the daemon writes a confirmation once it has read the limit input)."""
    for _ in range(int(timeout_s * 10)):
        got = [tuple(r[f] for f in fields) for r in audit(bench, lane)]
        if got == expected:
            return
        await asyncio.sleep(0.1)
    assert got == expected


async def test_a_kill_inside_the_open_pulse_does_not_swallow_the_next_open(bench):
    rig = bench.rig
    killed = asyncio.Event()

    def kill_on_open(unit: int, name: str, _t: float) -> None:
        if unit == 1 and name == "open" and not killed.is_set():
            bench.daemon.kill9()  # the coil is ON; its OFF, 300 ms later, never comes
            killed.set()

    rig.io.on_command = kill_on_open
    first = asyncio.create_task(rig.car("in1", "粤B12345", wait_open_s=10))
    await asyncio.wait_for(killed.wait(), 10)
    rig.io.on_command = None
    assert rig.io.barrier(1).coils[0], "the kill left the OPEN coil ON"
    assert (await first).passed  # the edge was seen: the arm rose and the car drove through while we were down
    await bench.daemon.start()
    assert await rig.wait_down("in1"), "the arm left up with no car is lowered after the restart"
    assert not rig.io.barrier(1).coils[0]
    assert "OPEN coil 0 found ON at start" in bench.daemon.log()
    opens = rig.io.count("open", 1)
    second = await rig.car("in1", "粤B22222")
    assert second.opened and second.passed and rig.io.count("open", 1) == opens + 1
    assert await rig.wait_down("in1")
    await audit_settles(bench, "in1", [
        ("open", "confirmed"),  # cut by the kill before its answer was recorded; the up limit confirmed it
        ("close", "confirmed"),  # after the restart: arm up, no car
        ("open", "confirmed"), ("close", "confirmed")])
    no_harm(bench)


async def test_a_kill_while_the_car_stands_under_the_raised_arm_lets_it_pass_then_closes(bench):
    rig = bench.rig
    car = await rig.car("in1", "粤B33333", wait_open_s=10, on_safety_s=0.0, drive_s=0.0, back_away=False)
    assert car.opened
    rig.io.set_loop(1, "safety", True)  # the car stops under the arm
    await _lane_status(bench, "in1", lambda s: s["phase"] == "open")
    bench.daemon.kill9()
    await bench.daemon.start()
    status = await _lane_status(bench, "in1", lambda s: s["phase"] == "open")
    assert rig.io.count("close", 1) == 0 and status["barrier_fault"] == ""
    rig.io.set_loop(1, "arming", False)
    rig.io.set_loop(1, "safety", False)  # it drives on
    assert await rig.wait_down("in1")
    assert [r["plate"] for r in await bench.control.records(lane="in1")] == ["粤B33333"]
    no_harm(bench)


async def test_a_failed_operator_open_says_so_and_the_next_open_works(bench):
    rig = bench.rig
    rig.bus.unplug()
    await _lane_status(bench, "in1", lambda s: s["barrier_fault"])
    code, out, err = await lanectl(bench, "open", "--lane", "in1", "--reason", "fault", "--operator", "李")
    assert code == 1 and "OPEN not delivered" in out + err, (out, err)
    rig.bus.plug()
    blocked = await _lane_status(bench, "in1", lambda s: not s["barrier_fault"], timeout_s=15)
    assert blocked["phase"] == "blocked"  # the release's decision stands, waiting for the next open
    code, out, err = await lanectl(bench, "open", "--lane", "in1", "--reason", "fault", "--operator", "李")
    assert code == 0 and "OPEN delivered" in out, (out, err)
    await rig.io.wait_until(lambda: rig.io.barrier(1).up_limit, timeout=5.0)
    await audit_settles(bench, "in1", [("open", "failed", "李"), ("open", "confirmed", "李")],
                        fields=("command", "status", "operator"))
    no_harm(bench)
