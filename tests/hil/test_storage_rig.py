"""HIL, issue 12: the real daemon process on the rig with its database on a small tmpfs that fills up while cars
come. The process stays up, nothing opens without its row, an arm up over a car that leaves comes down, and
after the filler goes every row is there and the next car is let in."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import aiohttp
import pytest

from tests.hil.checks import no_harm
from tests.tmpfs import fill, small_tmpfs

pytestmark = pytest.mark.hil

FS = Path(f"/tmp/lanectl-hil-full-{os.getpid()}")  # the rig's site config names it, so it is fixed per run
DB = FS / "lanectl.db"


@pytest.fixture
def full_fs() -> Iterator[Path]:
    """A 8 MiB tmpfs for the database; requested before `bench`, so it is unmounted after the daemon stopped."""
    with small_tmpfs("8m", FS) as fs:
        yield fs


def rows(sql: str, *args: object) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def storage_ok(bench) -> bool:
    return (await bench.control.status())["storage"]["ok"]


async def healthz(bench) -> dict:
    port = (await bench.control.status())["http_port"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            return await resp.json()


@pytest.mark.rig(site_overrides={"database": str(DB)})
async def test_disk_full_while_cars_come_keeps_the_daemon_up_and_every_row(full_fs, bench):
    rig, daemon = bench.rig, bench.daemon
    model = rig.io.barrier(rig.lane("in1").unit)
    assert (await rig.car("in1", "粤B10001")).passed
    assert await rig.wait_down("in1")

    # Car 2 drives in and stops under the arm; meanwhile the disk fills up (WAL emptied first, as on a disk
    # that has been full for a while: no pages SQLite allocated earlier to write into).
    second = asyncio.create_task(rig.car("in1", "粤B10002", on_safety_s=2.5))
    await rig.io.wait_until(lambda: model.safety, timeout=10)
    other = sqlite3.connect(DB)
    try:
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        other.close()
    fill(FS / "filler")
    assert (await asyncio.wait_for(second, 15)).passed
    assert await rig.wait_down("in1"), "the arm over car 2 must come down though nothing can be written"

    # Car 3 comes while the disk is full: not let in.
    third = await rig.car("in1", "粤B10003", wait_open_s=3.0)
    assert not third.opened
    status = await bench.control.status()
    assert status["storage"]["ok"] is False and "disk full" in status["storage"]["reason"]
    assert status["storage"]["queued_audit_rows"] >= 1
    body = await healthz(bench)
    assert body["ok"] is False and "disk full" in body["storage"]
    cli = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "lanectl", "status", "--socket",
                                                   str(daemon.socket)], capture_output=True, text=True, timeout=20)
    assert cli.returncode == 0 and "STORAGE FAULT" in cli.stdout and str(DB) in cli.stdout, cli.stdout + cli.stderr
    assert daemon.proc is not None and daemon.proc.poll() is None

    # Space again: the daemon notices by itself, writes what it kept, and car 3 is let in on its next try.
    (FS / "filler").unlink()
    for _ in range(200):
        if await storage_ok(bench):
            break
        await asyncio.sleep(0.1)
    assert await storage_ok(bench), "storage did not recover within 20 s of the space coming back"
    assert (await rig.car("in1", "粤B10003")).passed
    assert await rig.wait_down("in1")

    records = {r["plate"]: r for r in await bench.control.records(lane="in1", limit=20)}
    assert set(records) == {"粤B10001", "粤B10002", "粤B10003"}
    actions = rows("SELECT * FROM barrier_actions WHERE lane_id='in1' ORDER BY rowid")
    opens = [a for a in actions if a["command"] == "open"]
    assert len(opens) == rig.io.count("open", rig.lane("in1").unit) == 3, "an OPEN on the wire has its row"
    assert {a["record_id"] for a in opens} == {r["record_id"] for r in records.values()}
    closes_of_2 = [a for a in actions if a["command"] == "close" and a["record_id"] == records["粤B10002"]["record_id"]]
    assert [a["status"] for a in closes_of_2] == ["confirmed"], "the CLOSE sent during the outage is on the books"
    assert all(a["status"] in ("sent", "confirmed", "failed") for a in actions)

    log = daemon.log()
    assert log.count("storage failing") == 1 and log.count("storage recovered") == 1
    assert "cannot rollback" not in log and "Traceback" not in log
    assert daemon.proc.poll() is None
    no_harm(bench)
