"""The repositories' plain-SQL row writes (adapters/store/rows.py): statements built once per table and columns,
names checked all the same, effects turned into rows as dataclasses.asdict did."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict

import pytest

from lanectl.adapters.store.faults import StoreError
from lanectl.adapters.store.rows import insert_row, row_of, update_row
from lanectl.core import effects as fx


@pytest.fixture
def conn() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:", isolation_level=None)
    c.execute("CREATE TABLE t (id TEXT PRIMARY KEY, a INTEGER, b TEXT)")
    return c


def test_rows_go_in_and_change_by_their_key_again_and_again(conn: sqlite3.Connection):
    for i in range(3):  # the cached statement is the same statement each time
        insert_row(conn, "t", {"id": f"r{i}", "a": i, "b": "x"})
        update_row(conn, "t", "id", f"r{i}", {"b": f"y{i}"})
    insert_row(conn, "t", {"id": "r9", "b": "only b"})  # another set of columns: another statement
    assert conn.execute("SELECT * FROM t ORDER BY id").fetchall() == [
        ("r0", 0, "y0"), ("r1", 1, "y1"), ("r2", 2, "y2"), ("r9", None, "only b")]


def test_a_missing_row_and_a_bad_name_are_store_errors_every_time(conn: sqlite3.Connection):
    with pytest.raises(StoreError, match="no row id='nope'"):
        update_row(conn, "t", "id", "nope", {"a": 1})
    for _ in range(2):
        with pytest.raises(StoreError, match="not a column or table name"):
            insert_row(conn, "t", {"id": "x", "a; DROP TABLE t": 1})
        with pytest.raises(StoreError, match="not a column or table name"):
            update_row(conn, "t", "id", "x", {"b = 1 --": 1})
        with pytest.raises(StoreError, match="not a column or table name"):
            update_row(conn, "t t", "id", "x", {})
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)


def test_an_effect_becomes_the_row_asdict_gave():
    record = fx.NewRecord("in1_1", "in1", "entry", "粤B12345", "blue", "2026-12-08T08:00:00+08:00", "inside",
                          "vip", "whitelist", detail=("match:exact", "rule"), operator_uid=1000)
    payment = fx.RecordPayment("out1_2", "out1", 500, "cash", "li", "2026-12-08T09:00:00+08:00", "short")
    for effect in (record, payment):
        assert row_of(effect) == asdict(effect) and list(row_of(effect)) == list(asdict(effect))
