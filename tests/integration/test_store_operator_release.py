"""Who released a car and what its cash fell short of, on a real SQLite file: schema v8 (an existing v7 database
upgrades in place), the record, the OPEN's audit row, the ledger, and the upload the webhook receives."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lanectl.adapters.store import MIGRATIONS, SqliteStore
from lanectl.core import effects as fx
from lanectl.core.events import IoSnapshot, OperatorOpen, PlateRead
from lanectl.core.lane import InsideCar, LaneContext, LaneState, handle
from tests.policies import FlatPolicy

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=TZ)
DOWN = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True)


def make_v7(path) -> None:
    """A database as lanectl with schema v7 left it, with a release record, its OPEN and a top-up."""
    conn = sqlite3.connect(path)
    for version in range(7):
        conn.executescript(f"BEGIN;\n{MIGRATIONS[version]}\nPRAGMA user_version={version + 1};\nCOMMIT;")
    conn.execute("INSERT INTO records (record_id, lane_id, kind, plate, at, ts, status, reason, paid_fen, "
                 "updated_at) VALUES ('out1_old', 'out1', 'release', '', ?, ?, 'released', 'operator:fault', 0, ?)",
                 (NOW.isoformat(), NOW.timestamp(), NOW.isoformat()))
    conn.execute("INSERT INTO barrier_actions (action_id, lane_id, record_id, command, authority, reason, operator, "
                 "status, requested_at) VALUES ('out1_a', 'out1', 'out1_old', 'open', 'operator', 'fault', '王', "
                 "'confirmed', ?)", (NOW.isoformat(),))
    conn.execute("INSERT INTO balance_moves (plate, delta_fen, kind, reference, at) VALUES "
                 "('粤B7', 1000, 'topup', '王: cash', ?)", (NOW.isoformat(),))
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 7
    conn.close()


async def test_a_v7_database_upgrades_in_place_and_keeps_its_rows(tmp_path):
    path = tmp_path / "lanectl.db"
    make_v7(path)
    store = SqliteStore(path)
    await store.open()
    try:
        [old] = await store.records()
        assert (old["record_id"], old["operator_uid"], old["short_fen"], old["over_fen"]) == ("out1_old", None, 0, 0)
        [action] = await store.barrier_actions()
        assert (action["operator"], action["operator_uid"], action["status"]) == ("王", None, "confirmed")
        [move] = await store.balance_moves()
        assert (move["reference"], move["operator_uid"]) == ("王: cash", None)
        # and new rows carry the uid
        await store.topup("粤B7", 500, "值班员: cash", NOW, operator_uid=1001)
        assert (await store.balance_moves())[0]["operator_uid"] == 1001
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 8
    conn.close()


class Lane:
    """The lane machine committing to the real store, as the runner does (state and persistent effects)."""

    def __init__(self, store: SqliteStore, direction: str, inside: dict) -> None:
        self.store = store
        self.ctx = LaneContext("out1", direction, FlatPolicy(), inside=inside)  # type: ignore[arg-type]
        self.state = LaneState()
        self.now = NOW

    async def feed(self, event, after: float = 1.0) -> list[fx.Effect]:
        self.now += timedelta(seconds=after)
        self.state, out = handle(self.state, event, self.now, self.ctx)
        await self.store.commit_lane("out1", self.state.to_dict(), out, self.now)
        return out


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore(tmp_path / "lanectl.db", destinations=["webhook"])
    await s.open()
    yield s
    await s.close()


async def car_inside(store: SqliteStore) -> dict:
    """粤B12345 entered three hours ago (its entry record in the store, as the exit lane sees it)."""
    entered = NOW - timedelta(hours=3)
    await store.commit_lane("in1", {}, [fx.NewRecord("in1_1", "in1", "entry", "粤B12345", "blue",
                                                     entered.isoformat(), "inside")], entered)
    return {"粤B12345": InsideCar("in1_1", entered)}


async def test_a_short_cash_release_is_stored_and_uploaded_with_who_and_the_shortfall(store):
    lane = Lane(store, "exit", await car_inside(store))
    await lane.feed(DOWN)
    await lane.feed(PlateRead("粤B12345"))
    await lane.feed(OperatorOpen("王", "cash", 100, operator_uid=1001))
    [rec, entry] = await store.records()
    assert entry["status"] == "exited"
    assert (rec["status"], rec["due_fen"], rec["paid_fen"], rec["short_fen"], rec["over_fen"]) == \
        ("released", 500, 100, 400, 0)
    assert (rec["operator"], rec["operator_uid"]) == ("王", 1001)
    [action] = await store.barrier_actions()
    assert (action["authority"], action["operator"], action["operator_uid"]) == ("operator", "王", 1001)
    [item] = await store.due("webhook", lane.now, 10)
    payload = item.payload
    assert (payload["operator"], payload["operator_uid"], payload["short_fen"], payload["over_fen"]) == \
        ("王", 1001, 400, 0)
    assert payload["payments"] == [{"amount_fen": 100, "method": "cash", "reference": "王",
                                    "at": payload["payments"][0]["at"], "flag": ""}]


async def test_an_over_payment_is_stored_as_over(store):
    lane = Lane(store, "exit", await car_inside(store))
    await lane.feed(DOWN)
    await lane.feed(PlateRead("粤B12345"))
    await lane.feed(OperatorOpen("王", "cash", 600, operator_uid=1001))
    rec = (await store.records(lane="out1"))[0]
    assert (rec["paid_fen"], rec["short_fen"], rec["over_fen"]) == (600, 0, 100)


async def test_a_release_with_no_car_stores_who_released_it_never_an_empty_name(store):
    lane = Lane(store, "entry", {})
    await lane.feed(DOWN)
    await lane.feed(OperatorOpen("", "ambulance", operator_uid=1002))
    [rec] = await store.records()
    assert (rec["kind"], rec["operator"], rec["operator_uid"]) == ("release", "uid:1002", 1002)
    [item] = await store.due("webhook", lane.now, 10)
    assert (item.payload["operator"], item.payload["operator_uid"]) == ("uid:1002", 1002)
