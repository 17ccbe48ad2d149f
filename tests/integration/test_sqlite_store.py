"""The local store on a real SQLite file: atomic commits, migrations, write-ahead audit, outbox fan-out."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lanectl.adapters.store import MIGRATIONS, SqliteStore, StoreError
from lanectl.core import effects as fx

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=TZ)


def entry(rid: str, plate: str, at: datetime = NOW, status: str = "inside") -> fx.NewRecord:
    return fx.NewRecord(rid, "in1", "entry", plate, "blue", at.isoformat(), status, "temporary", "temporary")


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore(tmp_path / "db" / "lanectl.db", destinations=["webhook", "bolink"])
    await s.open()
    yield s
    await s.close()


async def test_a_commit_writes_records_audit_outbox_and_state_together(store, tmp_path):
    effects = [entry("in1_1", "粤B12345"), fx.Publish("in1_1", "entry"),
               fx.OpenBarrier("in1_2", "in1_1", "rules", "temporary"), fx.Display("hi")]
    await store.commit_lane("in1", {"phase": "opening", "seq": 2}, effects, NOW)
    assert [r["record_id"] for r in await store.records()] == ["in1_1"]
    [action] = await store.barrier_actions()
    assert action["status"] == "requested" and action["authority"] == "rules"
    out = await store.outbox_summary()
    assert out["counts"] == {"webhook/pending": 1, "bolink/pending": 1}
    assert out["pending"][0]["key"] == "entry:in1_1"
    assert (await store.load_lane_state("in1"))["phase"] == "opening"
    assert "粤B12345" in store.inside()


async def test_a_failing_commit_leaves_nothing_behind(store):
    bad = [entry("in1_1", "粤B12345"), fx.Publish("in1_1", "entry"),
           fx.PatchRecord("in1_1", (("kind", "x"),))]  # kind is not patchable
    with pytest.raises(StoreError):
        await store.commit_lane("in1", {"phase": "opening"}, bad, NOW)
    assert await store.records() == []
    assert (await store.outbox_summary())["counts"] == {}
    assert await store.load_lane_state("in1") is None
    assert store.inside() == {}


async def test_a_commit_is_on_its_way_before_it_is_awaited_and_ends_even_if_its_waiter_gives_up(store):
    """commit_lane hands the transaction to the writer thread at once and answers with a future: a lane awaits
    it without a loop turn first, and a stop that cancels the wait does not cut the commit or its projections."""
    import asyncio

    waited = store.commit_lane("in1", {"phase": "opening", "seq": 2},
                               [entry("in1_1", "粤B12345"), fx.Publish("in1_1", "entry")], NOW)
    assert isinstance(waited, asyncio.Future)
    waited.cancel()  # its waiter gave up (the daemon stops) before the writer thread answered
    await store.uow.write(lambda: None)  # the writer thread's next job: the commit is done, and answered
    assert [r["record_id"] for r in await store.records()] == ["in1_1"]
    assert "粤B12345" in store.inside()  # the projections followed the commit all the same
    assert (await store.outbox_summary())["counts"] == {"webhook/pending": 1, "bolink/pending": 1}


async def test_publishing_twice_does_not_queue_twice(store):
    await store.commit_lane("in1", {}, [entry("in1_1", "粤B1"), fx.Publish("in1_1", "entry")], NOW)
    await store.commit_lane("in1", {}, [fx.Publish("in1_1", "entry")], NOW)
    assert (await store.outbox_summary())["counts"]["webhook/pending"] == 1


async def test_requested_commands_become_interrupted_after_a_restart(tmp_path):
    path = tmp_path / "x.db"
    s = SqliteStore(path)
    await s.open()
    pictured = fx.NewRecord("in1_4", "in1", "entry", "粤B4", "blue", NOW.isoformat(), "inside", image="/i/in1/4.jpg")
    await s.commit_lane("in1", {}, [pictured], NOW)
    assert s.inside()["粤B4"].image == "/i/in1/4.jpg"
    await s.commit_lane("in1", {}, [entry("in1_1", "粤B1"), fx.OpenBarrier("in1_2", "in1_1", "rules", "t"),
                                    fx.OpenBarrier("in1_3", "in1_1", "operator", "cash", "王")], NOW)
    await s.mark_action("in1_2", True, "", NOW)
    await s.close()  # the process "dies" before in1_3 reached the wire
    s2 = SqliteStore(path)
    await s2.open()
    status = {a["action_id"]: a["status"] for a in await s2.barrier_actions()}
    assert status == {"in1_2": "sent", "in1_3": "interrupted"}
    assert s2.inside()["粤B1"].reason == "temporary"  # the entry decision survives for the exit
    assert s2.inside()["粤B4"].image == "/i/in1/4.jpg"  # and the entry picture, for the exit's platforms
    await s2.close()


async def test_inside_follows_exits_and_supersession(store):
    await store.commit_lane("in1", {}, [entry("a", "粤B1"), entry("b", "粤B2")], NOW)
    await store.commit_lane("out1", {}, [fx.PatchRecord("a", (("status", "exited"),))], NOW)
    assert set(store.inside()) == {"粤B2"}


async def test_records_filters(store):
    await store.commit_lane("in1", {}, [entry("a", "粤B1", NOW), entry("b", "粤B2", NOW + timedelta(hours=1)),
                                        entry("c", "粤B1", NOW + timedelta(hours=2))], NOW)
    assert [r["record_id"] for r in await store.records(plate="粤B1")] == ["c", "a"]
    assert [r["record_id"] for r in await store.records(since=NOW + timedelta(minutes=30),
                                                        until=NOW + timedelta(minutes=90))] == ["b"]
    assert len(await store.records(limit=2)) == 2


async def test_outbox_queue_is_fifo_and_a_retrying_item_holds_the_rest(store):
    await store.commit_lane("in1", {}, [entry("a", "粤B1"), fx.Publish("a", "entry"),
                                        entry("b", "粤B2"), fx.Publish("b", "entry")], NOW)
    due = await store.due("webhook", NOW, 10)
    assert [i.key for i in due] == ["entry:a", "entry:b"] and due[0].payload["plate"] == "粤B1"
    await store.mark_retry(due[0].id, 1, NOW + timedelta(seconds=30), "HTTP 503")
    assert await store.due("webhook", NOW + timedelta(seconds=5), 10) == []
    again = await store.due("webhook", NOW + timedelta(seconds=31), 10)
    await store.mark_done(again[0].id, NOW)
    await store.mark_dead(again[1].id, "HTTP 400", NOW)
    counts = (await store.outbox_summary())["counts"]
    assert counts["webhook/done"] == 1 and counts["webhook/dead"] == 1


async def test_schema_is_versioned_and_a_newer_database_is_refused(tmp_path):
    path = tmp_path / "v.db"
    s = SqliteStore(path)
    await s.open()
    await s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    s2 = SqliteStore(path)
    with pytest.raises(StoreError, match="newer than this lanectl"):
        await s2.open()
    await s2.close()


# --- stored-value ledger ---------------------------------------------------------------------------------------
async def test_opening_balances_are_seeded_once_and_survive_a_restart(tmp_path):
    path = tmp_path / "lanectl.db"
    s = SqliteStore(path)
    await s.open()
    assert await s.seed_balances({"粤B7": 5000}, NOW) == ["粤B7"]
    await s.commit_lane("out1", {"phase": "opening", "seq": 1}, [
        fx.NewRecord("out1_1", "out1", "exit", "粤B7", "blue", NOW.isoformat(), "leaving", "stored_value",
                     "stored_value", paid_fen=700),
        fx.DebitBalance("粤B7", 700, "out1_1", NOW.isoformat()),
        fx.RecordPayment("out1_1", "out1", 700, "stored_value", "balance", NOW.isoformat())], NOW)
    assert s.balances() == {"粤B7": 4300}
    await s.close()

    s2 = SqliteStore(path)
    await s2.open()
    # The configuration still says 5000: the ledger is the truth after the first start.
    assert await s2.seed_balances({"粤B7": 5000, "粤B8": 100}, NOW) == ["粤B8"]
    assert s2.balances() == {"粤B7": 4300, "粤B8": 100}
    assert await s2.topup("粤B7", 1000, "王: cash", NOW) == 5300
    moves = await s2.balance_moves("粤B7")
    assert [(m["kind"], m["delta_fen"], m["record_id"] or m["reference"]) for m in moves] == [
        ("topup", 1000, "王: cash"), ("debit", -700, "out1_1"), ("opening", 5000, "configuration")]
    await s2.close()


async def test_a_failed_commit_debits_nothing(store):
    bad = [fx.DebitBalance("粤B7", 700, "x_1", NOW.isoformat()), fx.PatchRecord("x_1", (("kind", "evil"),))]
    await store.seed_balances({"粤B7": 5000}, NOW)
    with pytest.raises(StoreError):
        await store.commit_lane("out1", {"phase": "idle", "seq": 1}, bad, NOW)
    assert store.balances() == {"粤B7": 5000}
    assert [m["kind"] for m in await store.balance_moves()] == ["opening"]


async def test_prepayments_are_kept_against_the_entry_once_and_reloaded(tmp_path):
    path = tmp_path / "lanectl.db"
    s = SqliteStore(path)
    await s.open()
    await s.commit_lane("in1", {"phase": "idle", "seq": 1}, [entry("in1_1", "粤B12345", NOW - timedelta(hours=2))], NOW)
    paid_at = NOW - timedelta(minutes=5)
    assert await s.add_prepayment("bolink", "P1", order_id="in1_1", plate="", amount_fen=500, paid_at=paid_at,
                                  now=NOW) == "recorded"
    assert await s.add_prepayment("bolink", "P1", order_id="in1_1", plate="", amount_fen=500, paid_at=paid_at,
                                  now=NOW) == "duplicate"
    assert await s.add_prepayment("bolink", "P2", order_id="", plate="粤B12345", amount_fen=100,
                                  paid_at=NOW, now=NOW) == "recorded"
    assert await s.add_prepayment("bolink", "P3", order_id="nope", plate="粤B99999", amount_fen=100,
                                  paid_at=NOW, now=NOW) == "not_inside"
    car = s.inside()["粤B12345"]
    assert (car.paid_fen, car.paid_at) == (600, NOW)
    assert [(p["method"], p["reference"]) for p in await s.payments("in1_1")] == [("bolink:prepay", "P1"),
                                                                                ("bolink:prepay", "P2")]
    await s.close()
    s2 = SqliteStore(path)
    await s2.open()
    assert (s2.inside()["粤B12345"].paid_fen, s2.inside()["粤B12345"].paid_at) == (600, NOW)
    await s2.close()


async def test_the_store_checkpoints_after_a_write_has_answered_and_keeps_its_wal_small(tmp_path):
    """SQLite's own checkpoint ran inside the COMMIT an OPEN waited for (issue 20); the store's runs after it."""
    import asyncio
    import threading

    from lanectl.adapters.store import unit_of_work

    store = SqliteStore(tmp_path / "lanectl.db", destinations=["webhook", "bolink"])
    await store.open()
    try:
        release, running = threading.Event(), threading.Event()
        checkpoint = store.uow._checkpoint_sync

        def held_checkpoint() -> None:
            running.set()
            release.wait(10)
            checkpoint()
        store.uow._checkpoint_sync = held_checkpoint  # type: ignore[method-assign]
        every = unit_of_work.CHECKPOINT_EVERY_WRITES
        for i in range(every):
            await store.commit_lane("in1", {"phase": "opening", "seq": i}, [entry(f"in1_{i}", f"粤B{i:05d}")], NOW)
        assert await asyncio.to_thread(running.wait, 5), "a checkpoint follows the writes"
        assert not release.is_set(), "the last write was answered while its checkpoint still ran"
        release.set()
        store.uow._checkpoint_sync = checkpoint  # type: ignore[method-assign]
        for i in range(every, 8 * every):
            await store.commit_lane("in1", {"phase": "opening", "seq": i}, [entry(f"in1_{i}", f"粤B{i:05d}"),
                                    fx.Publish(f"in1_{i}", "entry")], NOW)
        wal = (tmp_path / "lanectl.db-wal").stat().st_size
        # reused from its start after each checkpoint: about CHECKPOINT_EVERY_WRITES commits long, where SQLite's
        # default grew it to 1000 pages (4 MiB) before checkpointing inside a commit
        assert wal < 3 * 1024 * 1024, wal
    finally:
        await store.close()
