"""The local store: one SQLite file, one writer thread, repositories over one unit of work."""

from lanectl.adapters.store.sqlite_store import (MIGRATIONS, DatabaseUnusable, SqliteStore, StoreError, migrate,
                                                 schema_version, storage_fault)

__all__ = ["MIGRATIONS", "DatabaseUnusable", "SqliteStore", "StoreError", "migrate", "schema_version",
           "storage_fault"]
