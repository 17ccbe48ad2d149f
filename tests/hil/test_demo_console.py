"""The demo with the booth console (issue 18): the scenario's booth steps — cash releases for cars that owe their
fee, a plate-less car released for the fixed amount with a reason — taken through the console's HTTP API (login,
CSRF, POST /console/lanes/<id>/release) with the same outcomes as through the control socket, and by a person at
the console (here a stand-in that acts in the console when the demo says it is their turn)."""

from __future__ import annotations

import asyncio

import pytest

from hil.console_booth import ConsoleBooth, ConsoleBoothError, PersonAtTheConsole
from hil.demo import run_demo
from hil.scenario import ScenarioPlayer, load_scenario
from lanectl.adapters.console.accounts import User, hash_password, write_users
from tests.hil.checks import no_harm

pytestmark = pytest.mark.hil

# the demo's booth cases, alone: a car parked three hours pays 7 yuan cash; a plate-less car in and out, 10 yuan
BOOTH_CASES = """
name: booth-cases
description: the demo's booth cases
inside: [{plate: 粤A88888, lane: in1, minutes_ago: 179}]
lanes: [{id: in1, direction: entry, unit: 1}, {id: out1, direction: exit, unit: 2}]
steps:
  - car: {lane: out1, plate: 粤A88888}
    expect: waiting
  - operator: {lane: out1, operator: 王师傅, reason: cash, amount_fen: 700}
    expect: passed
  - car: {lane: in1, plate: ""}
    expect: passed
  - car: {lane: out1, plate: ""}
    expect: waiting
  - operator: {lane: out1, operator: 王师傅, reason: plate-less car, amount_fen: 1000}
    expect: passed
"""


def test_the_demo_takes_its_booth_steps_through_the_console(capsys):
    # the demo scenario cut to its booth cases (--booth-cases): Bolink and XFT wallets refused, a car parked
    # three hours, a plate-less car — each paid in cash at the booth, here through the console's HTTP API
    assert run_demo(scenario="demo", baud=None, booth_via="console", only_booth_cases=True) == 0
    out = capsys.readouterr().out
    assert "scenario 'demo (booth cases)'" in out
    assert "booth console: http://127.0.0.1:" in out and "/console/" in out
    assert "account booth " in out and "(operator)" in out and "account chief " in out and "(supervisor)" in out
    assert "the scenario's booth steps go through the console's HTTP API" in out
    steps = [line for line in out.splitlines() if "operator console:booth opens out1" in line]
    assert len(steps) == 4 and all(line.lstrip().startswith("ok ") for line in steps), steps
    assert out.count("operator:cash by console:booth due 5.00 paid 5.00") == 2  # the refused wallets
    assert any("粤A88888" in line and "released" in line and "operator:cash by console:booth due 7.00 paid 7.00"
               in line for line in out.splitlines())
    assert "operator:plate-less car by console:booth due 10.00 paid 10.00" in out
    assert "demo finished: every step behaved as expected" in out


@pytest.mark.rig(seed=[{"plate": "粤A88888", "lane": "in1", "minutes_ago": 179}],
                 site_overrides={"console": {"enabled": True}})
async def test_a_person_at_the_console_takes_the_booth_steps_the_demo_waits_for(bench, tmp_path):
    write_users(bench.workdir / "etc" / "console-users.yaml",
                {"booth": User("booth", "operator", hash_password("booth-pass-1", n=2 ** 10))})
    base = f"http://127.0.0.1:{(await bench.control.status())['lan_port']}"
    async with ConsoleBooth(base, "booth", "wrong-password") as intruder:
        with pytest.raises(ConsoleBoothError, match="401 bad_credentials"):
            await intruder.login()
    turns: asyncio.Queue[str] = asyncio.Queue()
    person = PersonAtTheConsole(lambda lane, text: turns.put_nowait(text), bench.rig.wait_open, f"{base}/console/")
    player = ScenarioPlayer(bench.rig, bench.control, settle_s=1.0, booth=person)
    play = asyncio.create_task(player.play(load_scenario_text(tmp_path)))
    async with ConsoleBooth(base, "booth", "booth-pass-1") as hands:
        for amount, reason in ((700, "现金缴费"), (1000, "无牌车")):
            told = await asyncio.wait_for(turns.get(), 30)  # the demo says what to do, then waits
            assert f"take {amount // 100}.{amount % 100:02d} 元 cash" in told and "YOUR TURN" in told, told
            assert not play.done()
            answer = await hands.open_barrier(lane="out1", reason=reason, amount_fen=amount)
            assert answer["opened"], answer
    outcomes = await asyncio.wait_for(play, 30)
    assert [(o.what, o.got) for o in outcomes if not o.ok] == []
    released = [r for r in await bench.control.records(lane="out1") if r["status"] == "released"]
    assert sorted((r["paid_fen"], r["operator"]) for r in released) == [(700, "console:booth"),
                                                                        (1000, "console:booth")]
    no_harm(bench)


def load_scenario_text(tmp_path):
    path = tmp_path / "booth-cases.yaml"
    path.write_text(BOOTH_CASES, encoding="utf-8")
    return load_scenario(str(path))
