"""The booth's other actions end to end without a browser: the daemon in-process (real SQLite, its control
socket, the site's operators map) and the real CLI. An exit car misread as 粤B8234S: `lanectl correct` with a
plate matching no stay exactly lists the candidates and changes nothing, the right plate re-prices the stay and
the record keeps both plates and who corrected it; `lanectl refuse` turns it away and a second refusal is told
who was first. At the entry, an unreadable car is held for the booth and `lanectl admit` lets it in as an
operator release; an operator without the `open` role may do none of it."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import AsyncIterator

import pytest

from lanectl.app import App
from lanectl.bootstrap import build_app
from lanectl.config import load_config
from lanectl.core.events import PlateRead
from tests.integration.test_cli_operator_release import lanectl, until
from tests.fakes import FakeClock
from tests.integration.test_control_socket import short_dir  # noqa: F401 (fixture)
from tests.minimal_site import write_minimal_config

ME = os.getuid()


@pytest.fixture
async def app(short_dir) -> AsyncIterator[App]:  # noqa: F811
    tariffs = {"default": {"free_minutes": 0, "first_minutes": 60, "first_fen": 500, "increment_minutes": 60,
                           "increment_fen": 100, "no_entry": "fixed", "no_entry_fen": 500}}
    etc = write_minimal_config(Path(short_dir), tariffs=tariffs,
                               operators={"users": {ME: {"name": "值班员", "roles": ["open"]}}})
    (etc / "lanes" / "out1.yaml").write_text("id: out1\ndirection: exit\n")
    the_app = build_app(load_config(etc), clock=FakeClock())
    stop = asyncio.Event()
    task = asyncio.create_task(the_app.run(stop))
    await asyncio.wait_for(the_app.ready.wait(), 10)
    yield the_app
    stop.set()
    await asyncio.wait_for(task, 20)


async def enter(app: App, plate: str) -> None:
    in1 = app.runners["in1"]
    before = len(app.store.inside_view())
    in1.emit(PlateRead(plate, "blue", 95))
    await until(lambda: len(app.store.inside_view()) == before + 1)


async def test_a_misread_exit_plate_is_corrected_from_the_cli_then_refused(app: App, capsys):
    sock = str(app.config.site.control.socket)
    for plate in ("粤B82345", "粤B82346"):
        await enter(app, plate)
    await app.clock.advance(3 * 3600)  # 5 yuan the first hour, 1 yuan each hour after
    out1 = app.runners["out1"]
    out1.emit(PlateRead("粤B8234S", "blue", 90))
    await until(lambda: out1.state.phase.value == "awaiting_payment")
    record_id = out1.state.visit.record_id
    view = app.console_view("out1")
    assert [c["plate"] for c in view["car"]["candidates"]] == ["粤B82345", "粤B82346"]
    code, out, _ = await lanectl(capsys, "status", "--socket", sock)
    assert code == 0 and ("    read 粤B8234S, no stay found; may be: 粤B82345, 粤B82346: lanectl correct out1 PLATE"
                          in out.splitlines())

    code, out, _ = await lanectl(capsys, "correct", "--socket", sock, "out1", "津B82345")
    assert code == 1 and "candidates" in out and "粤B82345  entered" in out
    assert out1.state.visit.plate == "粤B8234S"  # nothing changed

    code, out, _ = await lanectl(capsys, "correct", "--socket", sock, "--json", "out1", "粤b82346")
    data = json.loads(out)
    assert code == 0 and data["outcome"] == "corrected" and data["plate"] == "粤B82346"
    assert data["operator"] == "值班员" and data["operator_uid"] == ME and data["due_fen"] == 700
    (rec,) = await app.records(plate="粤B82346", lane="out1", since=None, until=None, limit=5)
    assert (rec["record_id"], rec["read_plate"], rec["corrected_by"]) == (record_id, "粤B8234S", "值班员")
    assert rec["entry_record_id"] and rec["status"] == "awaiting_payment"
    assert app.console_view("out1")["car"]["candidates"] == []  # its stay is found: nothing to offer

    code, out, _ = await lanectl(capsys, "refuse", "--socket", sock, "out1", "--reason", "逃费嫌疑",
                                 "--record", record_id)
    assert code == 0 and f"refused: car refused: the barrier stays down (record {record_id}, by 值班员" in out
    code, out, _ = await lanectl(capsys, "refuse", "--socket", sock, "out1", "--reason", "again",
                                 "--record", record_id)
    assert code == 1 and "car_gone: that car was already refused by 值班员" in out
    (rec,) = await app.records(plate="粤B82346", lane="out1", since=None, until=None, limit=5)
    assert rec["status"] == "refused" and rec["reason"] == "operator_refused:逃费嫌疑" and rec["operator"] == "值班员"
    assert out1.state.phase.value == "idle"


async def test_an_unreadable_entry_car_is_admitted_from_the_cli(app: App, capsys):
    sock = str(app.config.site.control.socket)
    in1 = app.runners["in1"]
    code, out, _ = await lanectl(capsys, "admit", "--socket", sock, "in1", "--reason", "访客")
    assert code == 1 and "nothing_waiting" in out
    in1.emit(PlateRead("竑B55502", "blue", 90))
    await until(lambda: app.console_view("in1")["held"] is not None)
    assert app.console_view("in1")["held"]["reason"] == "unreadable_plate"
    code, out, _ = await lanectl(capsys, "status", "--socket", sock)
    assert code == 0 and "    held for the booth: 竑B55502 (unreadable_plate): lanectl admit in1" in out

    code, out, err = await lanectl(capsys, "admit", "--socket", sock, "in1", "--reason", "访客", "--plate", "hello")
    assert code == 1 and "not a plate" in err
    code, out, _ = await lanectl(capsys, "admit", "--socket", sock, "--json", "in1", "--reason", "访客 301")
    data = json.loads(out)
    assert data["outcome"] == "admitted" and data["opened"] is False  # decided and audited; no barrier device here
    assert "no barrier device configured" in data["message"]
    (rec,) = [r for r in await app.records(plate=None, lane="in1", since=None, until=None, limit=5)
              if r["record_id"] == data["record_id"]]
    assert (rec["kind"], rec["status"], rec["plate"], rec["reason"]) == ("entry", "inside", "", "operator:访客 301")
    assert rec["operator"] == "值班员" and rec["operator_uid"] == ME
    assert app.console_view("in1")["held"] is None


async def test_no_booth_action_without_the_open_role(short_dir, capsys):  # noqa: F811
    etc = write_minimal_config(Path(short_dir), operators={"users": {ME: {"name": "值班员", "roles": ["topup"]}}})
    the_app = build_app(load_config(etc))
    stop = asyncio.Event()
    task = asyncio.create_task(the_app.run(stop))
    try:
        await asyncio.wait_for(the_app.ready.wait(), 10)
        sock = str(the_app.config.site.control.socket)
        for argv in (("refuse", "in1", "--reason", "x"), ("correct", "in1", "粤B12345"),
                     ("admit", "in1", "--reason", "x")):
            code, _, err = await lanectl(capsys, argv[0], "--socket", sock, *argv[1:])
            assert code == 1 and "may not open a barrier" in err, err
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
