"""Online backups: a consistent copy of the live database through SQLite's backup API, on a read connection of
its own (in WAL mode a reader never blocks the writer thread, so lanes keep committing while it copies).

The copy is written to `<name>.part`, checked, fsynced and only then renamed into place; older generations are
removed only after a good one exists, so a failed backup (disk full) leaves the previous ones as they were.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

PREFIX = "lanectl-"
SUFFIX = ".db"


def backup_name(at: datetime) -> str:
    return f"{PREFIX}{at.strftime('%Y%m%d-%H%M%S')}{SUFFIX}"


def generations(backup_dir: Path) -> list[Path]:
    """The backups in `backup_dir`, oldest first (their names sort by time)."""
    if not backup_dir.is_dir():
        return []
    return sorted(p for p in backup_dir.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())


def backup_sync(database: Path, backup_dir: Path, keep: int, at: datetime) -> dict[str, Any]:
    """Copy `database` to `backup_dir`, keep the newest `keep` backups. Runs on a thread of its own."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    target = backup_dir / backup_name(at)
    part = target.with_name(target.name + ".part")
    with contextlib.suppress(FileNotFoundError):
        part.unlink()  # a copy an earlier failure left half-written
    try:
        src = sqlite3.connect(database, isolation_level=None)
        try:
            src.execute("PRAGMA query_only=ON")
            src.execute("PRAGMA busy_timeout=5000")  # a checkpoint may hold a lock for a moment
            dst = sqlite3.connect(part, isolation_level=None)
            try:
                src.backup(dst)  # all pages in one step: one snapshot, never restarted by the lanes' writes
                check = dst.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"the copy failed its check: {check}")
                records = dst.execute("SELECT count(*) FROM records").fetchone()[0]
            finally:
                dst.close()
        finally:
            src.close()
        _fsync(part)
        os.replace(part, target)
        _fsync_dir(backup_dir)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    removed = [p.name for p in generations(backup_dir)[:-keep]]
    for name in removed:
        with contextlib.suppress(FileNotFoundError):
            (backup_dir / name).unlink()
    return {"file": str(target), "bytes": target.stat().st_size, "records": records, "removed": removed,
            "kept": len(generations(backup_dir))}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        _fsync(path)


class RestoreError(Exception):
    """A backup that cannot be restored, or a restore that must not run now; the message says why."""


def check_backup(backup: Path, newest_schema: int) -> dict[str, Any]:
    """What a restore would bring back: RestoreError unless `backup` is a sound lanectl database this version
    can open (its schema no newer than `newest_schema`)."""
    if not backup.is_file():
        raise RestoreError(f"{backup}: no such file")
    try:
        conn = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            records = conn.execute("SELECT count(*) FROM records").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise RestoreError(f"{backup}: not a lanectl database ({exc})") from None
    if check != "ok":
        raise RestoreError(f"{backup}: damaged ({check})")
    if version > newest_schema:
        raise RestoreError(f"{backup}: schema v{version} is newer than this lanectl (v{newest_schema})")
    return {"schema": version, "records": records}


def restore_sync(backup: Path, database: Path, newest_schema: int, at: datetime) -> dict[str, Any]:
    """Put `backup` in place of `database` (the daemon stopped). The database it replaces is kept beside it as
    `<name>.before-restore-<time>` (with its -wal / -shm), never deleted. Older-schema backups are migrated by the
    daemon at its next start."""
    found = check_backup(backup, newest_schema)
    database.parent.mkdir(parents=True, exist_ok=True)
    part = database.with_name(database.name + ".restoring")
    try:
        src = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(part)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
        _fsync(part)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    kept = None
    if database.exists():
        kept = database.with_name(f"{database.name}.before-restore-{at.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("-wal", "-shm"):
            side = database.with_name(database.name + suffix)
            if side.exists():
                os.replace(side, kept.with_name(kept.name + suffix))
        os.replace(database, kept)
    else:
        for suffix in ("-wal", "-shm"):  # a stray WAL must never be replayed into the restored file
            with contextlib.suppress(FileNotFoundError):
                database.with_name(database.name + suffix).unlink()
    os.replace(part, database)
    _fsync_dir(database.parent)
    return {**found, "database": str(database), "previous": str(kept) if kept else None}
