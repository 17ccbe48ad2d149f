"""What can go wrong in the store, in words the rest of the daemon can act on."""

from __future__ import annotations

import sqlite3
from typing import Optional

from lanectl.startup import StartupError


class StoreError(Exception):
    pass


class DatabaseUnusable(StartupError, StoreError):
    """The database opens but cannot be used by this version (e.g. a newer schema): one line at start."""


# SQLite primary result codes that mean "the storage cannot take a write now", not "this write is wrong".
_STORAGE_CODES = {
    5: "database locked by another process",  # SQLITE_BUSY (after busy_timeout)
    8: "database is read-only",  # SQLITE_READONLY (read-only file system, file replaced, ...)
    10: "disk I/O error",  # SQLITE_IOERR and its extended codes (write, fsync, shm, ...)
    13: "disk full",  # SQLITE_FULL
    14: "cannot open a database file",  # SQLITE_CANTOPEN (WAL / SHM file)
}
_STORAGE_WORDS = ("database or disk is full", "disk i/o error", "readonly database", "unable to open database",
                  "database is locked")


def storage_fault(exc: BaseException) -> Optional[str]:
    """The reason, if `exc` says the storage cannot be written now (as opposed to a bad statement or row)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _STORAGE_CODES:
        name = getattr(exc, "sqlite_errorname", "") or _STORAGE_CODES[code & 0xFF]
        return f"{_STORAGE_CODES[code & 0xFF]} ({name}: {exc})"
    text = str(exc).lower()
    if any(w in text for w in _STORAGE_WORDS):
        return str(exc)
    return None
