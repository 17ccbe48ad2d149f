"""Plain-SQL row writes for the repositories (an INSERT of a dict, an UPDATE by primary key). The sqlite3 module
does this in a line; sqlite-utils, used before, costs the daemon ~3 MiB of RSS (it brings click, pluggy,
dateutil, tabulate) and re-reads the table's columns on every call.

These run inside a lane step's transaction, before its OPEN goes out: each statement's text is built (and its
names checked) once per table and set of columns, and an effect becomes a row without dataclasses.asdict's deep
copy."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import fields
from typing import Any, Mapping

from lanectl.adapters.store.faults import StoreError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # table and column names come from code, never from input
_SQL: dict[tuple[str, ...], str] = {}  # (verb, table, columns...) -> statement text, names checked
_FIELDS: dict[type, tuple[str, ...]] = {}


def _check_names(*names: str) -> None:
    for name in names:
        if not _NAME.match(name):
            raise StoreError(f"not a column or table name: {name!r}")


def _statement(key: tuple[str, ...], build: Any) -> str:
    sql = _SQL.get(key)
    if sql is None:
        _check_names(*key[1:])
        sql = _SQL[key] = build()
    return sql


def insert_row(conn: sqlite3.Connection, table: str, row: Mapping[str, Any]) -> None:
    columns = tuple(row)
    sql = _statement(("insert", table, *columns),
                     lambda: f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})")
    conn.execute(sql, tuple(row.values()))


def update_row(conn: sqlite3.Connection, table: str, key: str, value: Any, changes: Mapping[str, Any]) -> None:
    """UPDATE one row by its primary key; StoreError if there is no such row (as sqlite-utils raised)."""
    if not changes:
        _check_names(table, key)
        return
    columns = tuple(changes)
    sql = _statement(("update", table, key, *columns),
                     lambda: f"UPDATE {table} SET {', '.join(f'{column}=?' for column in columns)} WHERE {key}=?")
    cur = conn.execute(sql, (*changes.values(), value))
    if cur.rowcount == 0:
        raise StoreError(f"{table}: no row {key}={value!r} to update")


def row_of(effect: Any) -> dict[str, Any]:
    """A flat dataclass (an effect whose fields hold no dataclass) as a dict of its fields, in their order — what
    dataclasses.asdict gives for it, without the deep copy of every (immutable) value."""
    names = _FIELDS.get(type(effect))
    if names is None:
        names = _FIELDS[type(effect)] = tuple(f.name for f in fields(effect))
    return {name: getattr(effect, name) for name in names}
