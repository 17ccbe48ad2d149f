"""The local store: one SQLite file, one writer thread, repositories over one unit of work.

    unit_of_work.py   connection (WAL, synchronous=FULL), the writer thread, transactions, storage faults + probe,
                      WAL checkpoints after a write has answered (never inside the COMMIT an OPEN waits for)
    schema.py         versioned migrations        faults.py   StoreError, DatabaseUnusable, storage_fault()
    lanes.py          lane state and records      audit.py    barrier commands written ahead; kept while down
    settlements.py    exit settlements, attempts  ledger.py   payments, stored-value balances (moves)
    inbox.py          platform callbacks, marks, renewals, prepayments
    outbox.py         uploads queued with the step that made them
    sqlite_store.py   SqliteStore: composes them; `commit_lane` is one transaction over all of them, then the
                      projections (cars inside: core/inside.py; balances) follow what was committed
"""

from lanectl.adapters.store.sqlite_store import (MIGRATIONS, DatabaseUnusable, SqliteStore, StoreError, migrate,
                                                 schema_version, storage_fault)

__all__ = ["MIGRATIONS", "DatabaseUnusable", "SqliteStore", "StoreError", "migrate", "schema_version",
           "storage_fault"]
