"""Plain-SQL row writes for the repositories (an INSERT of a dict, an UPDATE by primary key). The sqlite3 module
does this in a line; sqlite-utils, used before, costs the daemon ~3 MiB of RSS (it brings click, pluggy,
dateutil, tabulate) and re-reads the table's columns on every call."""

from __future__ import annotations

import re
import sqlite3
from typing import Any, Mapping

from lanectl.adapters.store.faults import StoreError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # table and column names come from code, never from input


def _check_names(*names: str) -> None:
    for name in names:
        if not _NAME.match(name):
            raise StoreError(f"not a column or table name: {name!r}")


def insert_row(conn: sqlite3.Connection, table: str, row: Mapping[str, Any]) -> None:
    _check_names(table, *row)
    conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))


def update_row(conn: sqlite3.Connection, table: str, key: str, value: Any, changes: Mapping[str, Any]) -> None:
    """UPDATE one row by its primary key; StoreError if there is no such row (as sqlite-utils raised)."""
    _check_names(table, key, *changes)
    if not changes:
        return
    sets = ", ".join(f"{column}=?" for column in changes)
    cur = conn.execute(f"UPDATE {table} SET {sets} WHERE {key}=?", (*changes.values(), value))
    if cur.rowcount == 0:
        raise StoreError(f"{table}: no row {key}={value!r} to update")
