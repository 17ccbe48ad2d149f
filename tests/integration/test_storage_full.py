"""Issue 12: the disk fills up under a running lane. A real SQLite file on a small tmpfs, a real filler file, the
real store and a LaneRunner task with a fake barrier: nothing opens without its row, an arm that must come down
comes down (its audit row kept in memory), the task never dies, and when the filler goes the kept row is written,
"recovered" is logged once and the next car is let in with its record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import uuid
from pathlib import Path
from typing import Callable, Iterator
from zoneinfo import ZoneInfo

import pytest

from lanectl.adapters.clock import SystemClock
from lanectl.adapters.store import SqliteStore
from lanectl.core import effects as fx
from lanectl.core.events import IoSnapshot, PlateRead
from lanectl.service.lane_runner import LaneRunner
from tests.fakes import FakeBarrier, FakeDisplay
from tests.policies import FlatPolicy
from tests.tmpfs import fill, small_tmpfs

TZ = ZoneInfo("Asia/Shanghai")
DOWN = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True)
UP_ARMING = IoSnapshot(arming=True, safety=False, up_limit=True, down_limit=False)
UP_SAFETY = IoSnapshot(arming=False, safety=True, up_limit=True, down_limit=False)
UP_CLEAR = IoSnapshot(arming=False, safety=False, up_limit=True, down_limit=False)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait (bounded) for something the daemon does on its own."""
    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(_poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"not within {timeout:g} s: {what}") from None


def fault_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith(("storage failing", "storage recovered"))]


async def test_disk_full_keeps_the_lane_up_refuses_opens_closes_the_arm_and_recovers(caplog):
    caplog.set_level(logging.INFO)
    with small_tmpfs() as fs:
        store = SqliteStore(fs / "lanectl.db", destinations=["webhook"], probe_interval_s=0.2)
        await store.open()
        barrier, display = FakeBarrier(), FakeDisplay()
        decided: list[list[fx.Effect]] = []
        runner = LaneRunner("in1", "entry", FlatPolicy(), store, SystemClock(TZ), barrier=barrier, display=display,
                            on_effects=lambda _lane, effects: decided.append(effects), storage_retry_s=0.1)
        task = asyncio.create_task(runner.run(), name="lane-in1")
        watch = asyncio.create_task(store.watch(), name="storage-probe")
        try:
            await runner.started.wait()
            runner.emit(DOWN)
            await until(lambda: runner.state.io == DOWN, "the first snapshot")

            # Car 1 comes in while the disk is fine and stops under the raised arm.
            runner.emit(PlateRead("粤B11111", "blue", 90))
            await until(lambda: barrier.commands == ["open"] and not runner.state.pending_action, "car 1's OPEN")
            [car1] = await store.records(plate="粤B11111")
            runner.emit(UP_ARMING)
            runner.emit(UP_SAFETY)
            await until(lambda: runner.state.visit is not None and runner.state.visit.passage == "on_safety",
                        "car 1 under the arm")

            # The disk fills up. SQLite may reuse WAL pages it allocated before; truncate the WAL first so the
            # next commit needs new space, as on a disk that has been full for a while.
            await truncate_wal(store)
            assert fill(fs / "filler") > 0

            # A second car is read while car 1 is still under the arm: held for after the cycle.
            runner.emit(PlateRead("粤B22222", "blue", 90))
            # Car 1 leaves the safety loop: the arm must come down, though nothing can be written.
            barrier.safety = False
            runner.emit(UP_CLEAR)
            await until(lambda: barrier.commands == ["open", "close"], "the CLOSE after car 1")
            assert not store.health.ok and "disk full" in store.health.reason
            await until(lambda: not runner.state.pending_action, "the CLOSE acknowledged")
            runner.emit(DOWN)
            await until(lambda: runner.state.phase.value == "idle", "the lane back to idle")
            assert runner.state.held is None  # the held car needs a record: forgotten; the camera reads it again
            # the CLOSE's audit row, its "sent" status and the down limit's confirmation, in memory
            assert store.health.queued == 3

            # Car 2 at the camera again: no OPEN without its row, no record, the board says why.
            runner.emit(PlateRead("粤B22222", "blue", 90))
            await until(lambda: any(isinstance(e, fx.Log) and "cannot be written" in e.message
                                    for effects in decided for e in effects), "car 2 refused")
            assert barrier.commands == ["open", "close"]
            assert runner.state.phase.value == "idle" and runner.state.visit is None
            await until(lambda: "fault" in display.keys(), "the fault on the board")
            assert not task.done()

            # The disk gets space again: the probe notices on its own, writes the kept rows, says so once.
            (fs / "filler").unlink()
            await until(lambda: store.health.ok, "storage recovered", timeout=10.0)
            assert store.health.queued == 0
            [close] = [a for a in await store.barrier_actions("in1") if a["command"] == "close"]
            assert (close["record_id"], close["reason"], close["status"]) == (car1["record_id"], "car_passed",
                                                                              "confirmed")
            assert await store.records(plate="粤B22222") == []

            # The next read of car 2 opens normally, with its record and audit row written first.
            runner.emit(PlateRead("粤B22222", "blue", 90))
            await until(lambda: barrier.commands == ["open", "close", "open"], "car 2's OPEN")
            [car2] = await store.records(plate="粤B22222")
            opens = [a for a in await store.barrier_actions("in1") if a["command"] == "open"]
            assert car2["record_id"] in {a["record_id"] for a in opens}
            # the lane state stored is the one acted on: idle after car 1, now opening for car 2
            saved = await store.load_lane_state("in1")
            assert saved["phase"] == "opening" and saved["visit"]["record_id"] == car2["record_id"]

            assert not task.done() and not watch.done()
            lines = fault_lines(caplog)
            assert len(lines) == 2 and lines[0].startswith("storage failing") and \
                lines[1].startswith("storage recovered"), lines
            assert str(fs / "lanectl.db") in lines[0] and "disk full" in lines[0]
            assert not any("cannot rollback" in r.getMessage() for r in caplog.records)
        finally:
            for t in (task, watch):
                t.cancel()
            await asyncio.gather(task, watch, return_exceptions=True)
            await store.close()


# --- every write path of the store on a full disk ------------------------------------------------------------------
NOW = SystemClock(TZ).now()


async def truncate_wal(store: SqliteStore) -> None:
    """Empty the WAL (as on a disk that has been full for a while: no pages SQLite allocated earlier to write into)."""
    busy, _, _ = await store._run(lambda: store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
    wal = store.path.with_name(store.path.name + "-wal")
    assert busy == 0 and wal.stat().st_size == 0, f"WAL not truncated: busy={busy} size={wal.stat().st_size}"


async def _prepared(fs: Path) -> SqliteStore:
    """A store with one of everything a write path can touch: a car inside, an exit waiting with a settlement
    and an attempt, an outbox row, a stored-value plate."""
    store = SqliteStore(fs / "lanectl.db", destinations=["webhook"], probe_interval_s=60.0)
    await store.open()
    await store.seed_balances({"粤B77777": 1000}, NOW)
    entry = fx.NewRecord("in1_1", "in1", "entry", "粤B12345", "blue", NOW.isoformat(), "inside")
    await store.commit_lane("in1", {"phase": "idle", "seq": 1}, [entry, fx.Publish("in1_1", "entry")], NOW)
    order = fx.StartSettlement("out1_1", "out1", "粤B12345", "blue", 500, 500, NOW.isoformat())
    await store.commit_lane("out1", {"phase": "awaiting_payment", "seq": 1}, [
        fx.NewRecord("out1_1", "out1", "exit", "粤B12345", "blue", NOW.isoformat(), "awaiting_payment"), order], NOW)
    await store.new_attempt("out1_1", "out1", "bolink", "bolink-out1_1", 500, NOW)
    await truncate_wal(store)
    return store


WRITES = {
    "commit_lane": lambda s: s.commit_lane("in1", {"phase": "opening", "seq": 3}, [
        fx.NewRecord("in1_2", "in1", "entry", "粤B2", "", NOW.isoformat(), "inside"), fx.Publish("in1_2", "entry"),
        fx.OpenBarrier("in1_3", "in1_2", "rules", "temporary")], NOW),
    "topup": lambda s: s.topup("粤B77777", 500, "ops: test", NOW),
    "seed_balances": lambda s: s.seed_balances({"粤B88888": 100}, NOW),
    "new_attempt": lambda s: s.new_attempt("out1_1", "out1", "xft", "xft-out1_1", 500, NOW),
    "mark_attempt": lambda s: s.mark_attempt(1, "pending", "paying", NOW),
    "settle_attempt": lambda s: s.settle_attempt(1, True, "T1", 500, "wallet", "", NOW),
    "inbox_put": lambda s: s.inbox_put("bolink", "outpark:T1:1", "{}", NOW),
    "set_mark": lambda s: s.set_mark("bolink", "粤B12345", "signfree", "1", NOW),
    "add_prepayment": lambda s: s.add_prepayment("bolink", "P1", order_id="in1_1", plate="粤B12345",
                                                  amount_fen=300, paid_at=NOW, now=NOW),
    "add_renewal": lambda s: s.add_renewal("bolink", "M1", "c1", "粤B12345", "", "2027-01-01", 100, NOW),
    "mark_done": lambda s: s.mark_done(1, NOW),
    "mark_retry": lambda s: s.mark_retry(1, 1, NOW, "boom"),
    "mark_dead": lambda s: s.mark_dead(1, "boom", NOW),
}


async def _snapshot(store: SqliteStore) -> dict:
    def _all() -> dict:
        tables = [r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                                     "AND name NOT LIKE 'sqlite_%'")]
        return {t: [tuple(r) for r in store.conn.execute(f"SELECT * FROM {t} ORDER BY rowid")] for t in tables}
    return await store._run(_all)


@pytest.mark.parametrize("write", sorted(WRITES))
async def test_every_write_path_fails_typed_after_a_clean_rollback_and_keeps_nothing(write, caplog):
    from lanectl.service.ports import StorageUnavailable
    with small_tmpfs() as fs:
        store = await _prepared(fs)
        try:
            before, balances, inside = await _snapshot(store), store.balances(), store.inside()
            fill(fs / "filler")
            with pytest.raises(StorageUnavailable) as raised:
                await WRITES[write](store)
            assert "disk full" in raised.value.reason
            assert not await store._run(lambda: store.conn.in_transaction)
            assert not store.health.ok
            assert (store.balances(), store.inside()) == (balances, inside)
            assert not any("rollback" in r.getMessage() for r in caplog.records)
            (fs / "filler").unlink()
            assert await store.probe() and store.health.ok
            assert await _snapshot(store) == before  # nothing of the failed write was kept
            await WRITES[write](store)  # and the same write goes through now
        finally:
            await store.close()


async def test_an_audit_update_is_kept_while_the_disk_is_full_and_written_on_recovery():
    with small_tmpfs() as fs:
        store = await _prepared(fs)
        try:
            await store.commit_lane("in1", {"phase": "opening", "seq": 2},
                                    [fx.OpenBarrier("in1_2", "in1_1", "rules", "temporary")], NOW)
            await truncate_wal(store)
            fill(fs / "filler")
            await store.mark_action("in1_2", True, "", NOW)  # does not raise: kept
            assert not store.health.ok and store.health.queued == 1
            [row] = await store.barrier_actions("in1")
            assert row["status"] == "requested"
            assert not await store.probe()  # still full
            (fs / "filler").unlink()
            assert await store.probe()
            [row] = await store.barrier_actions("in1")
            assert row["status"] == "sent" and store.health.queued == 0
        finally:
            await store.close()


async def test_the_memory_for_kept_audit_rows_is_bounded_and_the_overflow_counted_and_logged_once(tmp_path, caplog):
    store = SqliteStore(tmp_path / "lanectl.db", audit_limit=3)
    await store.open()
    try:
        kept = [store.defer_action("in1", fx.CloseBarrier(f"in1_{i}", "in1_0", "car_passed"), NOW) for i in range(6)]
        assert kept == [True, True, True, False, False, False]
        assert (store.health.queued, store.health.dropped) == (3, 3)
        assert len([r for r in caplog.records if "no room for more" in r.getMessage()]) == 1
        assert await store.probe()  # storage is fine: the kept rows are written at once
        assert sorted(a["action_id"] for a in await store.barrier_actions("in1")) == ["in1_0", "in1_1", "in1_2"]
        assert store.health.queued == 0
    finally:
        await store.close()


async def test_a_database_locked_by_another_process_is_a_storage_fault_until_the_lock_goes(tmp_path, caplog):
    import sqlite3

    from lanectl.service.ports import StorageUnavailable
    caplog.set_level(logging.INFO)
    store = SqliteStore(tmp_path / "lanectl.db", probe_interval_s=0.0)
    await store.open()
    other = sqlite3.connect(tmp_path / "lanectl.db", isolation_level=None)
    try:
        await store._run(lambda: store.conn.execute("PRAGMA busy_timeout=50"))
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailable) as raised:
            await store.inbox_put("xft", "k1", "{}", NOW)
        assert "locked" in raised.value.reason and not store.health.ok
        assert not await store.probe()
        other.execute("ROLLBACK")
        assert await store.probe() and store.health.ok
        assert await store.inbox_put("xft", "k1", "{}", NOW)
        assert len(fault_lines(caplog)) == 2
    finally:
        other.close()
        await store.close()


# --- other writers: a platform callback, the settlement flow -------------------------------------------------------
async def test_a_callback_that_cannot_be_stored_is_not_acknowledged_and_is_taken_when_it_comes_again(caplog):
    import json

    from lanectl.providers.xft import codec as xft
    from lanectl.providers.xft.inbound import XftInbound
    with small_tmpfs() as fs:
        store = await _prepared(fs)
        try:
            inbound = XftInbound("k" * 32, store, None, SystemClock(TZ), require_signature=True)
            body = json.dumps(xft.signed_fields(xft.notify_fields(out_trade_no="out1_1", state="00", amount_fen=500,
                                                                  third_trade_no="42"), "k" * 32)).encode()
            fill(fs / "filler")
            answer, _ = await inbound.handle_body(body, "application/json")
            assert answer == xft.NOTIFY_NACK  # not stored: XFT sends it again
            assert not any(r.exc_info for r in caplog.records)  # no traceback per callback
            (fs / "filler").unlink()
            assert await store.probe()
            answer, _ = await inbound.handle_body(body, "application/json")
            assert answer == xft.NOTIFY_ACK
            assert (await store._run(lambda: store.conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0])) == 1
        finally:
            await store.close()


async def test_a_settlement_flow_makes_no_charge_before_its_attempt_is_written_and_survives_the_outage():
    from lanectl.service.settlement import Attempt, ChargeAnswer, SettlementService, SettlementTiming
    from tests.fakes import LaneEvents

    class Provider:
        name = "bolink"

        def __init__(self) -> None:
            self.charged: list[str] = []

        def order_ref(self, order: fx.StartSettlement) -> str:
            return f"bolink-{order.record_id}"

        async def charge(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
            self.charged.append(order.record_id)
            return ChargeAnswer("paid", "T9", order.due_fen, "wallet")

        async def query(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
            return ChargeAnswer("pending")

    from lanectl.core.events import PaymentConfirmed
    with small_tmpfs() as fs:
        store = await _prepared(fs)
        store.probe_interval_s = 0.05
        lanes, provider = LaneEvents(), Provider()
        svc = SettlementService(store, {"bolink": provider}, {"out2": ["bolink"]}, lanes.emit, SystemClock(TZ),
                                SettlementTiming(window_s=30.0, storage_retry_s=0.02))
        try:
            order = fx.StartSettlement("out2_1", "out2", "粤B12345", "blue", 500, 500, NOW.isoformat())
            fill(fs / "filler")
            svc.on_effects("out2", [order])
            await until(lambda: store.health.fault is not None and store.health.fault.refused >= 3,
                        "the flow's attempt refused, then tried again")
            assert provider.charged == [] and "out2_1" in svc.status()["settling"]
            (fs / "filler").unlink()
            [paid] = await lanes.wait_for(PaymentConfirmed)
            assert (paid.record_id, paid.trade_no) == ("out2_1", "T9") and provider.charged == ["out2_1"]
            [attempt] = await store.attempts(record_id="out2_1")
            assert attempt.status == "paid"
        finally:
            await svc.stop()
            await store.close()


async def test_the_public_listener_answers_503_without_a_traceback_when_a_callback_cannot_be_stored(caplog):
    import aiohttp

    from lanectl.adapters.callback_server import CallbackServer
    from lanectl.service.ports import StorageUnavailable

    async def handler(body: bytes, content_type: str) -> tuple[bytes, str]:
        raise StorageUnavailable("disk full (test)")

    async def health() -> dict:
        return {"ok": True}

    server = CallbackServer("127.0.0.1", 0, max_body_kb=16, health=health)
    server.add_post("/bolink/callback", handler)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{server.port}/bolink/callback", data=b"{}") as resp:
                assert resp.status == 503 and "disk" not in await resp.text()
    finally:
        await server.stop()
    assert not any(r.exc_info for r in caplog.records)


# --- the file system turns read-only under a running lane --------------------------------------------------------
@contextlib.contextmanager
def ext4_image(size_mb: int = 16) -> Iterator[tuple[Path, str]]:
    """A small ext4 file system on a loop device (errors=remount-ro); yields (mount point, loop device name)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root (CI runs these tests as root)")
    base = Path("/tmp") / f"lanectl-ro-{uuid.uuid4().hex[:8]}"
    image, where = base.with_suffix(".img"), base
    where.mkdir()
    try:
        with open(image, "wb") as f:
            f.truncate(size_mb << 20)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
        mounted = made.returncode == 0 and subprocess.run(
            ["mount", "-o", "loop,errors=remount-ro", str(image), str(where)], capture_output=True).returncode == 0
        if not mounted:
            pytest.skip(f"cannot make and mount an ext4 loop image here: {made.stderr.strip()}")
        try:
            source = subprocess.run(["findmnt", "-no", "SOURCE", str(where)], capture_output=True,
                                    text=True).stdout.strip()
            yield where, os.path.basename(source)
        finally:
            if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(where)], capture_output=True)
    finally:
        with contextlib.suppress(OSError):
            where.rmdir()
        with contextlib.suppress(OSError):
            image.unlink()


async def test_a_file_system_turned_read_only_at_runtime_refuses_opens_but_still_closes_the_arm(caplog):
    caplog.set_level(logging.INFO)
    with ext4_image() as (fs, device):
        trigger = Path(f"/sys/fs/ext4/{device}/trigger_fs_error")
        if not trigger.exists():
            pytest.skip(f"{trigger} is not available: cannot turn the file system read-only under the daemon")
        store = SqliteStore(fs / "lanectl.db", probe_interval_s=0.2)
        await store.open()
        barrier = FakeBarrier()
        decided: list[fx.Effect] = []
        runner = LaneRunner("in1", "entry", FlatPolicy(), store, SystemClock(TZ), barrier=barrier,
                            display=FakeDisplay(), storage_retry_s=0.1,
                            on_effects=lambda _lane, effects: decided.extend(effects))
        task = asyncio.create_task(runner.run(), name="lane-in1")
        try:
            await runner.started.wait()
            runner.emit(DOWN)
            runner.emit(PlateRead("粤B11111", "blue", 90))
            await until(lambda: barrier.commands == ["open"] and not runner.state.pending_action, "car 1's OPEN")
            runner.emit(UP_ARMING)
            runner.emit(UP_SAFETY)
            await until(lambda: runner.state.visit is not None and runner.state.visit.passage == "on_safety",
                        "car 1 under the arm")

            trigger.write_text("lanectl test: file system error\n")  # ext4 remounts itself read-only
            runner.emit(UP_CLEAR)
            await until(lambda: barrier.commands == ["open", "close"], "the CLOSE after car 1")
            assert not store.health.ok and "I/O error" in store.health.reason
            await until(lambda: not runner.state.pending_action, "the CLOSE acknowledged")
            runner.emit(DOWN)
            await until(lambda: runner.state.phase.value == "idle", "the lane back to idle")
            runner.emit(PlateRead("粤B22222", "blue", 90))
            await until(lambda: any(isinstance(e, fx.Log) and "cannot be written" in e.message
                                    and ("plate", "粤B22222") in e.fields for e in decided), "car 2 refused")
            assert barrier.commands == ["open", "close"] and runner.state.visit is None
            assert store.health.queued == 3 and not task.done()  # CLOSE row, its "sent", its confirmation
            assert not await store.probe()  # stays down: ext4 needs an fsck and a remount; lanectl a restart
            lines = fault_lines(caplog)
            assert len(lines) == 1 and lines[0].startswith("storage failing") and str(fs) in lines[0]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await store.close()


async def test_a_restart_on_a_full_disk_after_a_kill_opens_and_reports_the_fault():
    """After kill -9 the -wal and -shm files are still there, so SQLite can open the database on a full disk (a
    clean stop removes them, and a start on a full disk then fails at open: SQLite cannot size a new -shm)."""
    from lanectl.service.ports import StorageUnavailable
    with small_tmpfs() as fs:
        killed = await _prepared(fs)  # left open: its -wal and -shm stay, as after kill -9
        try:
            await killed.commit_lane("in1", {"phase": "opening", "seq": 2},
                                     [fx.OpenBarrier("in1_2", "in1_1", "rules", "temporary")], NOW)
            await truncate_wal(killed)
            fill(fs / "filler")
            again = SqliteStore(fs / "lanectl.db", probe_interval_s=0.0)
            await again.open()
            try:
                assert not again.health.ok and "disk full" in again.health.reason
                assert list(again.inside()) == ["粤B12345"]
                with pytest.raises(StorageUnavailable):
                    await again.seed_balances({"粤B99999": 100}, NOW)
                (fs / "filler").unlink()
                assert await again.probe() and again.health.ok
            finally:
                await again.close()
        finally:
            await killed.close()
        third = SqliteStore(fs / "lanectl.db")
        await third.open()
        try:
            [row] = [a for a in await third.barrier_actions("in1") if a["action_id"] == "in1_2"]
            assert row["status"] == "interrupted"  # marked at the first start that could write, never resent
        finally:
            await third.close()
