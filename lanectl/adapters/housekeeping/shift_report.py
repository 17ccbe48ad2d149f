"""The daily shift report: one CSV file per lot day, `shift-YYYY-MM-DD.csv` under report_dir, read on a
connection of its own (never the writer thread).

Columns: section, key, count, amount_fen, short_fen, over_fen. Sections:
    summary   entries / exits / releases (count), short_fen / over_fen (what released cars were short or over)
    entries   per lane: entry records
    exits     per lane: exit records
    money     per payment method: payments taken that day (count, amount_fen)
    operator  per operator: cars let out by hand (count), paid amount_fen, short_fen, over_fen
Records count by their lane time; payments by the lot-time day of their `at`.
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


def report_rows(conn: sqlite3.Connection, day: date, tz: ZoneInfo) -> list[tuple[Any, ...]]:
    start = datetime.combine(day, time(0), tz).timestamp()
    end = datetime.combine(day + timedelta(days=1), time(0), tz).timestamp()
    span = (start, end)
    by_lane = {kind: conn.execute(
        "SELECT lane_id, count(*) FROM records WHERE ts >= ? AND ts < ? AND kind = ? GROUP BY lane_id "
        "ORDER BY lane_id", (*span, kind)).fetchall() for kind in ("entry", "exit")}
    money = conn.execute("SELECT method, count(*), sum(amount_fen) FROM payments WHERE substr(at, 1, 10) = ? "
                         "GROUP BY method ORDER BY method", (day.isoformat(),)).fetchall()
    operators = conn.execute(
        "SELECT operator, count(*), sum(paid_fen), sum(short_fen), sum(over_fen) FROM records "
        "WHERE ts >= ? AND ts < ? AND operator != '' GROUP BY operator ORDER BY operator", span).fetchall()
    rows: list[tuple[Any, ...]] = [
        ("summary", "entries", sum(n for _, n in by_lane["entry"]), "", "", ""),
        ("summary", "exits", sum(n for _, n in by_lane["exit"]), "", "", ""),
        ("summary", "releases", sum(r[1] for r in operators), "", "", ""),
        ("summary", "money", sum(r[1] for r in money), sum(r[2] for r in money), "", ""),
        ("summary", "short_over", "", "", sum(r[3] for r in operators), sum(r[4] for r in operators)),
    ]
    rows += [("entries", lane, n, "", "", "") for lane, n in by_lane["entry"]]
    rows += [("exits", lane, n, "", "", "") for lane, n in by_lane["exit"]]
    rows += [("money", method, n, fen, "", "") for method, n, fen in money]
    rows += [("operator", name, n, paid, short, over) for name, n, paid, short, over in operators]
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
