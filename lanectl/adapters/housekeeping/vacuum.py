"""Weekly VACUUM (gives back the pages retention freed, defragments) and ANALYZE (fresh statistics for the
query planner), then a WAL checkpoint that truncates the -wal file. Runs on the store's writer thread: lanes'
writes wait for it (seconds per 100 MB), which is why it is scheduled at a quiet hour."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def database_bytes(path: Path) -> int:
    """The database with its WAL: what the disk holds for it."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def vacuum_sync(conn: sqlite3.Connection, path: Path) -> dict[str, Any]:
    before = database_bytes(path)
    conn.execute("VACUUM")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"bytes_before": before, "bytes_after": database_bytes(path)}
