"""Record retention: records older than the cutoff go, with the rows that hang on them, in bounded batches —
one transaction each on the store's writer thread, so a lane waits at most one batch.

A record is kept, however old, while anything about it is still open:
- an entry whose car is still inside (status `inside`);
- an outbox row for it that is not `done` (pending: not uploaded yet; dead: given up on, for an operator to look
  at — neither has reached its destination);
- an open settlement, or a payment attempt still charging / pending / on fallback.
What goes with a record: its payments, payment attempts, settlement, prepayments, barrier audit rows and its
uploaded (`done`) outbox rows. Kept whatever their age: the stored-value ledger (`balance_moves`: balances are
its sum), the inbox (callback dedupe keys), card renewals and platform marks.

The site bus (in-park replication) is trimmed by its own step, `prune_site_bus_sync`, after the records: this
booth's sent messages older than the cutoff whose record is gone (deleted above, or another booth's record that a
correction named), never one not yet sent and never the highest seq (it numbers the booth's next message); and the
replica's closed stays of other booths not updated since the cutoff. A booth that asks to catch up from before the
cutoff gets what is left (a gap of more than `retention_days` is no longer anyone's car inside).
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


SITE_BUS = "site_bus"


def prune_site_bus_sync(conn: sqlite3.Connection, cutoff_ts: float, limit: int) -> dict[str, int]:
    """In the caller's transaction: at most `limit` old sent site bus messages and `limit` old closed replica
    rows go (see the module's docstring). Returns rows deleted per kind; call again while it deletes `limit`."""
    top = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox WHERE destination=?", (SITE_BUS,)).fetchone()[0]
    # key = <kind>:<record_id>:<seq>; next_at is the last send's time (a done row is not retried)
    sent = conn.execute(
        "DELETE FROM outbox WHERE rowid IN (SELECT o.rowid FROM outbox o WHERE o.destination=? AND o.status='done' "
        "AND o.seq < ? AND o.next_at < ? AND NOT EXISTS (SELECT 1 FROM records r WHERE r.record_id = "
        "substr(o.key, instr(o.key, ':') + 1, length(o.key) - instr(o.key, ':') - length(CAST(o.seq AS TEXT)) - 1)) "
        "LIMIT ?)", (SITE_BUS, top, cutoff_ts, limit)).rowcount
    # julianday() reads the offset of the stored lot-time ISO strings, so the comparison is in one time base
    replica = conn.execute(
        "DELETE FROM site_replica WHERE rowid IN (SELECT rowid FROM site_replica WHERE closed != '' "
        "AND julianday(updated_at) < julianday(?, 'unixepoch') LIMIT ?)", (cutoff_ts, limit)).rowcount
    return {"site_bus_sent": sent, "site_replica": replica}
