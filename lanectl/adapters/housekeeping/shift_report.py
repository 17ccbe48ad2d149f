"""The daily shift report: one CSV file per lot day, `shift-YYYY-MM-DD.csv` under report_dir, read on a
connection of its own (never the writer thread).

Columns: section, key, count, amount_fen, short_fen, over_fen. Sections:
    summary   entries / exits / releases (count), short_fen / over_fen (what released cars were short or over)
    entries   per lane: entry records
    exits     per lane: exit records
    money     per payment method: payments taken that day (count, amount_fen)
    operator  per operator: cars let out by hand (count), paid amount_fen, short_fen, over_fen
Records count by their lane time; payments by their `at` (shift_figures: shared with the console's shift view).
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

HEADER = ("section", "key", "count", "amount_fen", "short_fen", "over_fen")


def report_path(report_dir: Path, day: date) -> Path:
    return report_dir / f"shift-{day.isoformat()}.csv"


# a payment's `at` (ISO 8601 with its offset) as unix seconds, comparable with records.ts
PAID_TS = "((julianday(at) - 2440587.5) * 86400.0)"


def day_span(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The lot day `day` as [start, end) in lot time (23 or 25 hours long on a DST change)."""
    return datetime.combine(day, time(0), tz), datetime.combine(day + timedelta(days=1), time(0), tz)


def shift_figures(conn: sqlite3.Connection, start: datetime, end: datetime) -> dict[str, Any]:
    """What the lot did in [start, end): records by their lane time, payments by their time. The daily report
    and the booth console's shift view both read these (amounts in fen):
        entries / exits   {lane: count}
        money             [(method, count, amount_fen)]  every payment taken, late ones (for refund) too
        operators         [(operator, releases, paid_fen, short_fen, over_fen)]"""
    span = (start.timestamp(), end.timestamp())
    # `+kind`: the period's rows by the time index, not every entry of years through the (kind, status) one
    by_lane = {kind: dict(conn.execute(
        "SELECT lane_id, count(*) FROM records WHERE ts >= ? AND ts < ? AND +kind = ? GROUP BY lane_id "
        "ORDER BY lane_id", (*span, kind)).fetchall()) for kind in ("entry", "exit")}
    money = [tuple(r) for r in conn.execute(
        f"SELECT method, count(*), sum(amount_fen) FROM payments WHERE {PAID_TS} >= ? AND {PAID_TS} < ? "
        "GROUP BY method ORDER BY method", span)]
    operators = [tuple(r) for r in conn.execute(
        "SELECT operator, count(*), sum(paid_fen), sum(short_fen), sum(over_fen) FROM records "
        "WHERE ts >= ? AND ts < ? AND operator != '' GROUP BY operator ORDER BY operator", span)]
    return {"entries": by_lane["entry"], "exits": by_lane["exit"], "money": money, "operators": operators,
            "releases": sum(r[1] for r in operators), "money_count": sum(r[1] for r in money),
            "money_fen": sum(r[2] for r in money), "short_fen": sum(r[3] for r in operators),
            "over_fen": sum(r[4] for r in operators)}


def report_rows(conn: sqlite3.Connection, day: date, tz: ZoneInfo) -> list[tuple[Any, ...]]:
    f = shift_figures(conn, *day_span(day, tz))
    rows: list[tuple[Any, ...]] = [
        ("summary", "entries", sum(f["entries"].values()), "", "", ""),
        ("summary", "exits", sum(f["exits"].values()), "", "", ""),
        ("summary", "releases", f["releases"], "", "", ""),
        ("summary", "money", f["money_count"], f["money_fen"], "", ""),
        ("summary", "short_over", "", "", f["short_fen"], f["over_fen"]),
    ]
    rows += [("entries", lane, n, "", "", "") for lane, n in f["entries"].items()]
    rows += [("exits", lane, n, "", "", "") for lane, n in f["exits"].items()]
    rows += [("money", method, n, fen, "", "") for method, n, fen in f["money"]]
    rows += [("operator", name, n, paid, short, over) for name, n, paid, short, over in f["operators"]]
    return rows


def write_report_sync(database: Path, report_dir: Path, day: date, tz: ZoneInfo) -> dict[str, Any]:
    """Write the report of `day` (replacing one written before); runs on a thread of its own."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        rows = report_rows(conn, day, tz)
    finally:
        conn.close()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    report_dir.mkdir(parents=True, exist_ok=True)
    target = report_path(report_dir, day)
    part = target.with_name(target.name + ".part")
    part.write_text(out.getvalue(), encoding="utf-8")
    os.replace(part, target)
    summary = {r[1]: r[2] for r in rows[:3]}
    return {"file": str(target), "day": day.isoformat(), **summary, "money_fen": rows[3][3]}
