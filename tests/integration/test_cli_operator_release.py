"""The daemon in-process with the site's operators map, and the real CLI against its control socket: a short
cash release is refused under someone else's name, recorded under the caller's mapped name and uid with its
shortfall, and shown by `records`, `status` and `open`. This app has no barrier devices: the OPEN is decided
and audited but not delivered, which changes nothing of what is recorded."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from lanectl import cli
from lanectl.app import App
from lanectl.bootstrap import build_app
from lanectl.config import load_config
from lanectl.core.events import PlateRead
from tests.integration.test_control_socket import short_dir  # noqa: F401 (fixture)
from tests.minimal_site import write_minimal_config

ME = os.getuid()


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


@pytest.fixture
async def app(short_dir) -> AsyncIterator[App]:  # noqa: F811
    # a car with no entry record owes a fixed 5 元 at the exit
    tariffs = {"default": {"free_minutes": 0, "first_minutes": 60, "first_fen": 500, "increment_minutes": 60,
                           "increment_fen": 100, "no_entry": "fixed", "no_entry_fen": 500}}
    etc = write_minimal_config(Path(short_dir), tariffs=tariffs, vehicles={"stored_value": {"粤B77777": 0}},
                               operators={"users": {ME: {"name": "值班员", "roles": ["open", "topup"]}}})
    (etc / "lanes" / "out1.yaml").write_text("id: out1\ndirection: exit\n")
    the_app = build_app(load_config(etc))
    stop = asyncio.Event()
    task = asyncio.create_task(the_app.run(stop))
    await asyncio.wait_for(the_app.ready.wait(), 10)
    yield the_app
    stop.set()
    await asyncio.wait_for(task, 20)


async def lanectl(capsys, *argv: str) -> tuple[int, str, str]:
    def run() -> int:
        try:
            return cli.main(list(argv))
        except SystemExit as exc:  # how the CLI ends on a refusal
            return int(exc.code or 0)
    code = await asyncio.to_thread(run)
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_a_short_cash_release_shows_who_and_the_shortfall(app: App, capsys):
    sock = str(app.config.site.control.socket)
    out1 = app.runners["out1"]
    out1.emit(PlateRead("粤B12345"))
    await until(lambda: out1.state.phase.value == "awaiting_payment")
    assert out1.state.visit is not None and out1.state.visit.due_fen == 500

    code, _, err = await lanectl(capsys, "open", "--socket", sock, "--lane", "out1", "--reason", "cash",
                                 "--amount", "100", "--operator", "李四")
    assert code == 1 and f"uid {ME} is operator '值班员', not '李四'" in err
    assert out1.state.phase.value == "awaiting_payment"  # nothing happened

    code, out, _ = await lanectl(capsys, "open", "--socket", sock, "--lane", "out1", "--reason", "cash",
                                 "--amount", "100")
    # decided and recorded, not delivered
    assert code == 1 and "no barrier device configured" in out
    assert f"released by 值班员 (uid {ME}), cash short 4.00" in out

    code, out, _ = await lanectl(capsys, "records", "--socket", sock, "--lane", "out1")
    assert code == 0
    header, row = out.splitlines()
    assert "short/over" in header and "operator" in header
    assert "released" in row and "5.00" in row and "1.00" in row
    assert "short 4.00" in row and f"值班员 (uid {ME})" in row

    code, out, _ = await lanectl(capsys, "status", "--socket", sock)
    assert code == 0
    assert f"by 值班员 (uid {ME}): cash, paid 1.00, short 4.00" in out
    assert "since start 1 release(s): 1 short (4.00 in all), 0 over (0.00 in all)" in out


async def test_a_release_with_no_car_records_the_mapped_name(app: App, capsys):
    sock = str(app.config.site.control.socket)
    code, out, _ = await lanectl(capsys, "open", "--socket", sock, "--lane", "in1", "--reason", "ambulance")
    assert code == 1 and f"released by 值班员 (uid {ME}))" in out  # no --operator: the mapped name
    code, out, _ = await lanectl(capsys, "records", "--socket", sock, "--json")
    assert code == 0
    assert '"operator": "值班员"' in out and f'"operator_uid": {ME}' in out and '"kind": "release"' in out


async def test_a_top_up_is_recorded_with_the_name_and_uid(app: App, capsys):
    sock = str(app.config.site.control.socket)
    code, out, _ = await lanectl(capsys, "topup", "--socket", sock, "--plate", "粤B77777", "--amount", "1000",
                                 "--reason", "cash")
    assert code == 0 and f"balance 10.00 元 (by 值班员 (uid {ME}))" in out
    [move, _opening] = await app.store.balance_moves("粤B77777")
    assert (move["kind"], move["reference"], move["operator_uid"]) == ("topup", "值班员: cash", ME)


def test_a_daemon_whose_operators_do_not_resolve_does_not_start(short_dir):  # noqa: F811
    from tests.integration.test_startup_errors import one_line, run
    etc = write_minimal_config(Path(short_dir), operators={"groups": {"no_such_group_here": ["open"]}})
    result = run(etc)
    assert result.returncode == 78
    line = one_line(result)
    assert "site.yaml" in line and "operators.groups.no_such_group_here: no unix group" in line
