"""Databases as earlier lanectl versions left them: the schema of version N, filled with what a lot running
that version for a while would have written (tests/integration/test_schema_upgrades.py migrates them).

Schema: the released migration steps never change (schema.py), so "create at v1, apply steps up to N" is
exactly the file version N created — the same statements, in the same transactions, as `migrate` ran them.

Data: each version's `FILLS[k]` writes what version k added (its tables, its columns, its statuses), using only
the columns that existed at k. A fixture of version N runs the fills 1..N in order, like a lot that ran every
version in turn: v1-era rows carry the defaults later steps gave them, exactly as on a real upgraded site.
A new schema version adds its own fill (if it brings tables or statuses worth filling) and nothing else here
changes. Everything is generated from fixed seeds: the same version gives the same file, so no .db is kept.

What the tests check after the upgrade is listed by `open_business`: the records, pending outbox rows, open
settlements, balances and cars inside that the fixture left — the state a restarted daemon must pick up.
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from lanectl.adapters.store.schema import MIGRATIONS

LOT_TZ = timezone(timedelta(hours=8))
ENTRY, EXIT = "east_in", "east_out"
DESTINATION = "webhook"  # the one upload destination of every era (platforms came later)
PROVINCES = "粤京沪苏浙鲁川湘鄂闽"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O on Chinese plates


def create_at(path: Path, version: int) -> sqlite3.Connection:
    """An empty database of schema `version`, created by the released steps 1..version as `migrate` ran them."""
    if not 1 <= version <= len(MIGRATIONS):
        raise ValueError(f"no schema v{version} (this lanectl knows v1..v{len(MIGRATIONS)})")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    for step in range(version):
        conn.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[step]}\nPRAGMA user_version={step + 1};\nCOMMIT;")
    return conn


@dataclass
class Lot:
    """Writes rows the way the lane, the ledger and the relay of an era did (ids, times, JSON shapes)."""

    conn: sqlite3.Connection
    rng: random.Random
    clock: datetime
    seq: dict[str, int] = field(default_factory=lambda: {ENTRY: 0, EXIT: 0})
    plates_used: set[str] = field(default_factory=set)

    # --- helpers ----------------------------------------------------------------------------------------------
    def tick(self, minutes: float) -> datetime:
        self.clock += timedelta(minutes=minutes)
        return self.clock

    def plate(self, energy: bool = False) -> str:
        while True:
            tail = "".join(self.rng.choice(LETTERS + "0123456789") for _ in range(4))
            if energy:  # new-energy plates: 8 characters, D (electric) or F (hybrid) after the city letter
                plate = f"{self.rng.choice(PROVINCES)}{self.rng.choice('AB')}{self.rng.choice('DF')}" \
                        f"{self.rng.randrange(10)}{tail}"
            else:
                plate = f"{self.rng.choice(PROVINCES)}{self.rng.choice(LETTERS)}{self.rng.randrange(10)}{tail}"
            if plate not in self.plates_used:
                self.plates_used.add(plate)
                return plate

    def next_id(self, lane: str, at: datetime) -> str:
        self.seq[lane] += 1
        return f"{lane}_{at.strftime('%Y%m%d%H%M%S')}_{self.seq[lane]}"

    def insert(self, table: str, row: dict[str, Any]) -> int:
        cur = self.conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                                tuple(row.values()))
        return cur.lastrowid or 0

    # --- what a lane step wrote ---------------------------------------------------------------------------------
    def record(self, lane: str, kind: str, plate: str, at: datetime, status: str, **extra: Any) -> str:
        record_id = self.next_id(lane, at)
        row = {"record_id": record_id, "lane_id": lane, "kind": kind, "plate": plate,
               "color": "green" if len(plate) == 8 else "blue", "at": at.isoformat(), "ts": at.timestamp(),
               "status": status, "updated_at": at.isoformat(), **extra}
        row["detail"] = json.dumps(row.get("detail", []), ensure_ascii=False)
        self.insert("records", row)
        return record_id

    def patch(self, record_id: str, at: datetime, **changes: Any) -> None:
        sets = ", ".join(f"{k}=?" for k in changes)
        self.conn.execute(f"UPDATE records SET {sets}, updated_at=? WHERE record_id=?",
                          (*changes.values(), at.isoformat(), record_id))

    def barrier(self, lane: str, record_id: str, command: str, at: datetime, status: str = "sent",
                **extra: Any) -> str:
        action_id = self.next_id(lane, at)
        done = "" if status == "requested" else (at + timedelta(seconds=1)).isoformat()
        self.insert("barrier_actions", {"action_id": action_id, "lane_id": lane, "record_id": record_id,
                                        "command": command, "status": status, "requested_at": at.isoformat(),
                                        "done_at": done, **extra})
        return action_id

    def publish(self, record_id: str, kind: str, at: datetime, status: str = "done", **extra: Any) -> None:
        row = dict(self.conn.execute("SELECT * FROM records WHERE record_id=?", (record_id,)).fetchone())
        row.pop("ts")
        row["detail"] = json.loads(row["detail"])
        row["payments"] = [{k: p[k] for k in p.keys() if k in ("amount_fen", "method", "reference", "at", "flag")}
                           for p in self.conn.execute("SELECT * FROM payments WHERE record_id=?", (record_id,))]
        done = (at + timedelta(seconds=2)).isoformat() if status != "pending" else ""
        self.insert("outbox", {"destination": DESTINATION, "kind": kind, "key": f"{kind}:{record_id}",
                               "payload": json.dumps(row, ensure_ascii=False), "created_at": at.isoformat(),
                               "attempts": 1 if status == "done" else 0, "next_at": at.timestamp(),
                               "status": status, "done_at": done, **extra})

    def pay(self, record_id: str, lane: str, fen: int, method: str, at: datetime, reference: str = "",
            **extra: Any) -> None:
        self.insert("payments", {"record_id": record_id, "lane_id": lane, "amount_fen": fen, "method": method,
                                 "reference": reference, "at": at.isoformat(), **extra})

    def move(self, plate: str, delta: int, kind: str, record_id: str = "", reference: str = "",
             **extra: Any) -> None:
        """A stored-value ledger move and the plate's running balance."""
        at = self.tick(2)
        self.insert("balance_moves", {"plate": plate, "delta_fen": delta, "kind": kind, "record_id": record_id,
                                      "reference": reference, "at": at.isoformat(), **extra})
        self.conn.execute("INSERT INTO balances (plate, balance_fen, updated_at) VALUES (?,?,?) ON CONFLICT (plate) "
                          "DO UPDATE SET balance_fen=balance_fen+excluded.balance_fen, "
                          "updated_at=excluded.updated_at", (plate, delta, at.isoformat()))

    def visit(self, plate: str, stay_min: float, *, fee_fen: int, method: str = "cash", outbox: str = "done",
              exit_extra: Optional[dict[str, Any]] = None, entry_extra: Optional[dict[str, Any]] = None) -> str:
        """A car in and out through the booth: entry, OPEN/CLOSE, exit paid on the spot, uploads. Its exit id."""
        entered = self.tick(self.rng.uniform(3, 40))
        entry = self.record(ENTRY, "entry", plate, entered, "inside", vehicle_class="temporary",
                            reason="temporary", detail=["临时车"], **(entry_extra or {}))
        self.barrier(ENTRY, entry, "open", entered, authority="rules", reason="temporary")
        self.barrier(ENTRY, entry, "close", entered + timedelta(seconds=9), reason="car_passed")
        self.publish(entry, "entry", entered)
        left = entered + timedelta(minutes=stay_min)
        exit_id = self.record(EXIT, "exit", plate, left, "leaving", vehicle_class="temporary",
                              entry_record_id=entry, entered_at=entered.isoformat(), total_fen=fee_fen,
                              due_fen=fee_fen, paid_fen=fee_fen,
                              detail=[f"停车{int(stay_min) // 60}小时{int(stay_min) % 60}分",
                                      f"应收{fee_fen / 100:.2f}元"],
                              **(exit_extra or {}))
        if fee_fen:
            self.pay(exit_id, EXIT, fee_fen, method, left)
        self.patch(entry, left, status="exited")
        self.barrier(EXIT, exit_id, "open", left, authority="rules", reason="paid" if fee_fen else "free")
        self.barrier(EXIT, exit_id, "close", left + timedelta(seconds=8), reason="car_passed")
        self.publish(exit_id, "exit", left, status=outbox)
        return exit_id

    def arrive(self, plate: str, **extra: Any) -> str:
        """A car let in that is still inside. Its entry id."""
        at = self.tick(self.rng.uniform(3, 40))
        entry = self.record(ENTRY, "entry", plate, at, "inside", vehicle_class="temporary", reason="temporary",
                            detail=["临时车"], **extra)
        self.barrier(ENTRY, entry, "open", at, authority="rules", reason="temporary")
        self.barrier(ENTRY, entry, "close", at + timedelta(seconds=7), reason="car_passed")
        self.publish(entry, "entry", at)
        return entry

    def lane_state(self, lane: str, phase: str = "idle", visit: Optional[dict[str, Any]] = None,
                   **extra: Any) -> None:
        """As LaneState.to_dict wrote it (v1 fields; later eras pass theirs in `extra`)."""
        state = {"phase": phase, "seq": self.seq[lane], "visit": visit,
                 "io": {"arming": bool(visit), "safety": False, "up_limit": False, "down_limit": True,
                        "anti_smash": False},
                 "barrier_fault": "", "last_plate": visit["plate"] if visit else "",
                 "last_plate_at": self.clock.isoformat() if visit else None, "held": None, "deadlines": [],
                 "pending_action": "", **extra}
        self.conn.execute("INSERT OR REPLACE INTO lane_state (lane_id, state, updated_at) VALUES (?,?,?)",
                          (lane, json.dumps(state, ensure_ascii=False), self.clock.isoformat()))


# --- what each version added ---------------------------------------------------------------------------------
def fill_v1(lot: Lot) -> None:
    """Records, booth payments, barrier audit, webhook uploads, platform callbacks, lane state."""
    for i in range(30):
        lot.visit(lot.plate(energy=i % 5 == 0), lot.rng.uniform(5, 600), fee_fen=lot.rng.choice([0, 500, 700, 1500]),
                  method=lot.rng.choice(["cash", "wechat_qr", "alipay_qr"]))
    for _ in range(6):
        lot.arrive(lot.plate())
    # turned away at the entry: on the blacklist (no barrier command, still uploaded)
    at = lot.tick(11)
    lot.plates_used.add("粤B66666")
    refused = lot.record(ENTRY, "entry", "粤B66666", at, "refused", reason="blacklist", detail=["逃费三次"])
    lot.publish(refused, "entry", at)
    # a missed exit: the same plate came in again, the old entry is superseded
    again = lot.plate()
    stale = lot.arrive(again)
    newer = lot.arrive(again)
    lot.patch(stale, lot.clock, status="superseded")
    # the operator let a car out from the booth (release record, manual OPEN)
    at = lot.tick(20)
    plate = lot.plate()
    release = lot.record(EXIT, "release", plate, at, "released", operator="李四", reason="manual",
                         detail=["岗亭放行：车牌未识别"])
    lot.barrier(EXIT, release, "open", at, authority="operator", reason="manual", operator="李四")
    lot.publish(release, "release", at)
    # a car backed away from the exit; the next one paid
    at = lot.tick(9)
    owes = lot.arrive(lot.plate())
    car = lot.conn.execute("SELECT plate, at FROM records WHERE record_id=?", (owes,)).fetchone()
    away = lot.record(EXIT, "exit", car["plate"], lot.tick(90), "abandoned", entry_record_id=owes,
                      entered_at=car["at"], total_fen=700, due_fen=700)
    lot.publish(away, "exit", lot.clock)
    # the latest uploads never went out (the webhook was down when this version stopped), one was refused
    for _ in range(4):
        lot.visit(lot.plate(), lot.rng.uniform(30, 300), fee_fen=500, outbox="pending")
    lot.conn.execute("UPDATE outbox SET attempts=3, last_error='HTTP 503' WHERE status='pending'")
    dead = lot.visit(lot.plate(), 45, fee_fen=500)
    lot.conn.execute("UPDATE outbox SET status='dead', last_error='HTTP 400 bad plate', attempts=1 WHERE key=?",
                     (f"exit:{dead}",))
    # a command the process died with (requested, never acknowledged): the next start marks it interrupted
    lot.barrier(ENTRY, newer, "open", lot.tick(1), status="requested", authority="rules", reason="temporary")
    lot.barrier(EXIT, "", "close", lot.tick(3), status="interrupted", reason="pass_timeout")
    for n in range(3):
        at = lot.tick(5)
        lot.insert("inbox", {"provider": "bolink", "trade_no": f"BL{at.strftime('%Y%m%d%H%M%S')}{n}",
                             "received_at": at.isoformat(),
                             "payload": json.dumps({"order_id": f"o{n}", "money": "5.00", "pay_type": "wechat"})})
    lot.lane_state(ENTRY)
    lot.lane_state(EXIT)


def fill_v2(lot: Lot) -> None:
    """Stored-value balances: opening figures from the YAML, operator top-ups, debits at the exit."""
    for plate, opening in (("粤B8S888", 50000), ("京AD12345", 12000), ("沪C7Q210", 300)):
        lot.plates_used.add(plate)
        lot.move(plate, opening, "opening", reference="configuration")
    lot.move("粤B8S888", 20000, "topup", reference="王五: 微信转账充值")
    for plate, fee in (("粤B8S888", 1500), ("京AD12345", 700), ("粤B8S888", 500)):
        exit_id = lot.visit(plate, lot.rng.uniform(60, 300), fee_fen=fee, method="stored_value")
        lot.move(plate, -fee, "debit", record_id=exit_id)


def _exit_order(lot: Lot, exit_id: str) -> str:
    """The StartSettlement effect as JSON, with the fields it had when v3 shipped."""
    r = lot.conn.execute("SELECT * FROM records WHERE record_id=?", (exit_id,)).fetchone()
    return json.dumps({"record_id": exit_id, "lane_id": EXIT, "plate": r["plate"], "color": r["color"],
                       "due_fen": r["due_fen"], "total_fen": r["total_fen"], "left_at": r["at"],
                       "entered_at": r["entered_at"], "entry_record_id": r["entry_record_id"],
                       "vehicle_class": r["vehicle_class"]}, ensure_ascii=False)


def fill_v3(lot: Lot) -> None:
    """Settlements through payment platforms: paid, released after a failed charge, one still open (the car
    waits at the exit), one abandoned with a charge still pending at the platform; sign-free marks."""
    def settled(plate: str, status: str, outcome: str, attempt: str, provider: str = "xft") -> str:
        exit_id = lot.visit(plate, lot.rng.uniform(40, 400), fee_fen=0 if status != "paid" else 1200,
                            method=f"{provider}:wechat")
        lot.patch(exit_id, lot.clock, status=status, due_fen=1200, total_fen=1200,
                  paid_fen=1200 if status == "paid" else 0)
        at = lot.clock
        lot.insert("settlements", {"record_id": exit_id, "lane_id": EXIT, "exit_order": _exit_order(lot, exit_id),
                                   "status": "closed", "outcome": outcome, "created_at": at.isoformat(),
                                   "closed_at": (at + timedelta(seconds=20)).isoformat()})
        trade = f"42000{lot.rng.randrange(10**9):09d}" if attempt == "paid" else ""
        lot.insert("payment_attempts", {
            "record_id": exit_id, "lane_id": EXIT, "provider": provider, "order_ref": exit_id, "amount_fen": 1200,
            "status": attempt, "trade_no": trade, "paid_fen": 1200 if attempt == "paid" else 0,
            "method": "wechat" if attempt == "paid" else "", "delivered": int(attempt == "paid"),
            "detail": "" if attempt != "failed" else "NO_CONTRACT", "created_at": at.isoformat(),
            "created_ts": at.timestamp(), "updated_at": (at + timedelta(seconds=5)).isoformat()})
        if attempt == "paid":
            lot.conn.execute("UPDATE payments SET reference=? WHERE record_id=?", (trade, exit_id))
        return exit_id

    settled(lot.plate(), "paid", "paid", "paid")
    settled(lot.plate(energy=True), "paid", "paid", "paid")
    released = settled(lot.plate(), "released", "released", "failed")
    lot.patch(released, lot.clock, operator="张三", reason="manual")
    settled(lot.plate(), "abandoned", "abandoned", "pending", provider="bolink")
    # a payment that came after the car had left: kept with a flag for refund review
    late = lot.conn.execute("SELECT record_id FROM records WHERE status='paid' ORDER BY ts LIMIT 1").fetchone()[0]
    lot.pay(late, EXIT, 1200, "xft:wechat", lot.tick(30), reference="4200000000000000001", flag="late")
    # the car at the exit now: owes 15 yuan, its settlement written ahead, no charge sent yet
    plate = lot.plate()
    entry = lot.arrive(plate)
    entered = lot.conn.execute("SELECT at FROM records WHERE record_id=?", (entry,)).fetchone()["at"]
    left = lot.tick(185)
    waiting = lot.record(EXIT, "exit", plate, left, "awaiting_payment", vehicle_class="temporary",
                         entry_record_id=entry, entered_at=entered, total_fen=1500, due_fen=1500,
                         detail=["停车3小时5分", "应收15.00元"])
    lot.publish(waiting, "exit", left, status="pending")
    lot.insert("settlements", {"record_id": waiting, "lane_id": EXIT, "exit_order": _exit_order(lot, waiting),
                               "status": "open", "created_at": left.isoformat()})
    lot.lane_state(EXIT, "awaiting_payment", {"plate": plate, "color": "blue", "record_id": waiting,
                                              "vehicle_class": "temporary", "reason": "temporary",
                                              "entry_record_id": entry, "due_fen": 1500, "passage": "waiting",
                                              "paid_fen": 0})
    for plate in ("粤B8S888", "京AD12345"):
        lot.insert("provider_marks", {"provider": "bolink", "plate": plate, "name": "signfree", "value": "1",
                                      "updated_at": lot.tick(1).isoformat()})


def fill_v4(lot: Lot) -> None:
    """Monthly cards renewed on the platform."""
    for n, (plate, end) in enumerate((("粤B8S888", "2026-12-31"), ("沪C7Q210", "2027-01-31"))):
        at = lot.tick(60)
        lot.insert("card_renewals", {"provider": "bolink", "trade_no": f"RN{at.strftime('%Y%m%d')}{n:04d}",
                                     "card_id": f"M{100 + n}", "plate": plate, "start": "", "end": end,
                                     "amount_fen": 30000, "received_at": at.isoformat()})


def fill_v5(lot: Lot) -> None:
    """Money paid ahead inside the lot, against the entry record of a car still inside."""
    entry = lot.arrive(lot.plate())
    paid_at = lot.tick(70)
    lot.insert("prepayments", {"provider": "bolink", "trade_no": f"PP{paid_at.strftime('%Y%m%d%H%M%S')}",
                               "entry_record_id": entry, "amount_fen": 800, "paid_at": paid_at.isoformat(),
                               "received_at": paid_at.isoformat()})
    lot.pay(entry, ENTRY, 800, "bolink:prepay", paid_at, reference=f"PP{paid_at.strftime('%Y%m%d%H%M%S')}")


def fill_v6(lot: Lot) -> None:
    """Records point at the camera's picture."""
    for _ in range(3):
        day = lot.clock.strftime("%Y%m%d")
        lot.visit(lot.plate(), lot.rng.uniform(20, 200), fee_fen=500,
                  entry_extra={"image": f"images/{ENTRY}/{day}/{lot.rng.randrange(10**6):06d}.jpg"},
                  exit_extra={"image": f"images/{EXIT}/{day}/{lot.rng.randrange(10**6):06d}.jpg"})
    lot.arrive(lot.plate(), image=f"images/{ENTRY}/{lot.clock.strftime('%Y%m%d')}/inside.jpg")


def fill_v7(lot: Lot) -> None:
    """The barrier audit tells confirmed (the limit agreed) from unconfirmed."""
    exit_id = lot.visit(lot.plate(), 75, fee_fen=500)
    lot.conn.execute("UPDATE barrier_actions SET status='confirmed' WHERE record_id=?", (exit_id,))
    entry = lot.arrive(lot.plate())
    lot.conn.execute("UPDATE barrier_actions SET status='unconfirmed', error='no up limit within 5 s' "
                     "WHERE record_id=? AND command='open'", (entry,))


def fill_v8(lot: Lot) -> None:
    """Releases by a known operator (the control socket caller's uid), short of what the car owed."""
    entry = lot.arrive(lot.plate())
    car = lot.conn.execute("SELECT plate, at FROM records WHERE record_id=?", (entry,)).fetchone()
    at = lot.tick(130)
    exit_id = lot.record(EXIT, "exit", car["plate"], at, "released", entry_record_id=entry, entered_at=car["at"],
                         total_fen=900, due_fen=900, paid_fen=600, operator="赵六", operator_uid=1001,
                         short_fen=300, reason="manual", detail=["现金不足，差3.00元"])
    lot.pay(exit_id, EXIT, 600, "cash", at)
    lot.patch(entry, at, status="exited")
    lot.barrier(EXIT, exit_id, "open", at, authority="operator", reason="manual", operator="赵六",
                operator_uid=1001)
    lot.publish(exit_id, "exit", at, status="pending")
    lot.move("沪C7Q210", 5000, "topup", reference="赵六: 现金充值", operator_uid=1001)


def fill_v10(lot: Lot) -> None:
    """Housekeeping's last runs (the schedule that survives a restart)."""
    lot.visit(lot.plate(), 50, fee_fen=500)
    for job, hh_mm, result in (("backup", "03:30", {"file": "/var/lib/lanectl/backups/lanectl-x.db", "records": 40}),
                               ("report", "00:10", {"day": "2026-12-01", "entries": 12})):
        fire = lot.clock.replace(hour=int(hh_mm[:2]), minute=int(hh_mm[3:]), second=0, microsecond=0)
        lot.insert("housekeeping_runs", {"job": job, "fire_time": fire.isoformat(),
                                         "ran_at": (fire + timedelta(seconds=4)).isoformat(), "ok": 1,
                                         "result": json.dumps(result, ensure_ascii=False)})


# Columns a step rewrites on purpose (step version -> {table: columns}), e.g. a data fix: left out of the "every
# old row unchanged" comparison for databases older than that step, and proven by that step's own test. None yet.
REWRITES: dict[int, dict[str, frozenset[str]]] = {}

FILLS: dict[int, Callable[[Lot], None]] = {1: fill_v1, 2: fill_v2, 3: fill_v3, 4: fill_v4, 5: fill_v5, 6: fill_v6,
                                           7: fill_v7, 8: fill_v8, 10: fill_v10}
SEED = 20261207


def build_fixture(path: Path, version: int) -> Path:
    """The database lanectl of schema `version` left after running every version up to it (deterministic)."""
    conn = create_at(path, version)
    lot = Lot(conn, random.Random(SEED), datetime(2026, 3, 2, 7, 30, tzinfo=LOT_TZ))
    try:
        for era in range(1, version + 1):
            lot.clock = datetime(2026, 3, 2, 7, 30, tzinfo=LOT_TZ) + timedelta(days=20 * era)
            lot.rng.seed(SEED + era)
            conn.execute("BEGIN")
            FILLS.get(era, lambda _lot: None)(lot)
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path


# --- what an upgrade must keep ---------------------------------------------------------------------------------
def tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                       "AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def columns(conn: sqlite3.Connection, table: str) -> dict[str, Any]:
    """Column name -> its declared default (SQL text, None when it has none)."""
    return {r[1]: r[4] for r in conn.execute(f"PRAGMA table_info({table})")}


def rewritten(since: int, table: str) -> frozenset[str]:
    """The columns of `table` that the steps after version `since` rewrite on purpose (REWRITES)."""
    return frozenset().union(*(REWRITES.get(step, {}).get(table, frozenset())
                               for step in range(since + 1, len(MIGRATIONS) + 1)))


def snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as (column, value) pairs sorted: what an upgrade must not change."""
    conn = sqlite3.connect(path)
    try:
        out = {}
        for table in tables(conn):
            names = list(columns(conn, table))
            rows = conn.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall()
            out[table] = sorted((tuple(zip(names, row)) for row in rows), key=repr)
        return out
    finally:
        conn.close()


def open_business(path: Path) -> dict[str, Any]:
    """What a restarted daemon must pick up, read straight from the file (any schema version)."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    have = set(tables(conn))
    try:
        return {
            "records": {r["record_id"]: (r["kind"], r["plate"], r["status"], r["total_fen"], r["paid_fen"])
                        for r in conn.execute("SELECT * FROM records")},
            "pending_outbox": [(r["id"], r["destination"], r["key"]) for r in conn.execute(
                "SELECT * FROM outbox WHERE status='pending' ORDER BY id")],
            "inside": {r["plate"]: r["record_id"] for r in conn.execute(
                "SELECT plate, record_id FROM records WHERE kind='entry' AND status='inside' AND plate != ''")},
            "balances": {r["plate"]: r["balance_fen"] for r in conn.execute("SELECT * FROM balances")}
            if "balances" in have else {},
            "open_settlements": [r["record_id"] for r in conn.execute(
                "SELECT record_id FROM settlements WHERE status='open'")] if "settlements" in have else [],
            "prepaid": {r["entry_record_id"]: r["amount_fen"] for r in conn.execute("SELECT * FROM prepayments")}
            if "prepayments" in have else {},
        }
    finally:
        conn.close()
