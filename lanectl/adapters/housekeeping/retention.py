"""Record retention: records older than the cutoff go, with the rows that hang on them, in bounded batches —
one transaction each on the store's writer thread, so a lane waits at most one batch.

A record is kept, however old, while anything about it is still open:
- an entry whose car is still inside (status `inside`);
- an outbox row for it that is not `done` (pending: not uploaded yet; dead: given up on, for an operator to look
  at — neither has reached its destination);
- an open settlement, or a payment attempt still charging / pending / on fallback.
What goes with a record: its payments, payment attempts, settlement, prepayments, barrier audit rows and its
uploaded (`done`) outbox rows. Kept whatever their age: the site bus rows (the booth's numbered message log,
whose highest seq numbers the next message), the stored-value ledger (`balance_moves`: balances are
its sum), the inbox (callback dedupe keys), card renewals and platform marks.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

OPEN_ATTEMPTS = ("charging", "pending", "fallback")
DEPENDENTS = (("payments", "record_id"), ("payment_attempts", "record_id"), ("settlements", "record_id"),
              ("prepayments", "entry_record_id"), ("barrier_actions", "record_id"))


def outbox_kinds_sync(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(destination, kind) pairs in the outbox: a record's rows there are keyed `<kind>:<record_id>`."""
    return [(r[0], r[1]) for r in conn.execute("SELECT DISTINCT destination, kind FROM outbox")]


def candidates_sync(conn: sqlite3.Connection, cutoff_ts: float, after: tuple[float, str],
                    limit: int) -> list[tuple[float, str]]:
    """The next (ts, record_id)s older than the cutoff past `after`, with no open entry, settlement or attempt."""
    marks = ",".join("?" * len(OPEN_ATTEMPTS))
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT r.ts, r.record_id FROM records r WHERE r.ts < ? AND (r.ts, r.record_id) > (?, ?) "
        "AND NOT (r.kind = 'entry' AND r.status = 'inside') "
        "AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.record_id = r.record_id AND s.status = 'open') "
        f"AND NOT EXISTS (SELECT 1 FROM payment_attempts a WHERE a.record_id = r.record_id AND a.status IN ({marks})) "
        "ORDER BY r.ts, r.record_id LIMIT ?", (cutoff_ts, after[0], after[1], *OPEN_ATTEMPTS, limit))]


def delete_batch_sync(conn: sqlite3.Connection, record_ids: Sequence[str],
                      kinds: Sequence[tuple[str, str]]) -> dict[str, int]:
    """In the caller's transaction: delete these records (those with an outbox row not yet done are skipped)
    and their dependent rows. Returns rows deleted per table, and `kept_unsent`."""
    counts: dict[str, Any] = {"kept_unsent": 0}
    keys = {rid: [(dest, f"{kind}:{rid}") for dest, kind in kinds] for rid in record_ids}
    going = []
    for rid in record_ids:
        # `<kind>:<record_id>` (uploads) or `<kind>:<record_id>:<seq>` (site bus): a range of the unique index
        unsent = any(conn.execute("SELECT 1 FROM outbox WHERE destination=? AND status != 'done' "
                                  "AND (key = ? OR (key > ? AND key < ?))",
                                  (dest, key, f"{key}:", f"{key};")).fetchone() for dest, key in keys[rid])
        if unsent:
            counts["kept_unsent"] += 1
        else:
            going.append(rid)
    if not going:
        return counts
    marks = ",".join("?" * len(going))
    for table, column in DEPENDENTS:
        counts[table] = conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", going).rowcount
    # only the uploads' rows (exact key): the site bus rows are this booth's numbered message log — the next seq
    # is their highest + 1 — so they are never deleted here
    counts["outbox"] = sum(conn.execute("DELETE FROM outbox WHERE destination=? AND key=? AND seq IS NULL",
                                        key).rowcount for rid in going for key in keys[rid])
    counts["records"] = conn.execute(f"DELETE FROM records WHERE record_id IN ({marks})", going).rowcount
    return counts
