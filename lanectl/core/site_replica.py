"""In-park replication (issue 17 item 2): the records one booth publishes to the others, and the replica of the
cars inside at the OTHER booths that each booth keeps from them.

Message (JSON, versioned, one per published change, see docs/site-bus.md "Replication"):
    {"v": 1, "booth": "A", "seq": 17, "kind": "entry" | "exit" | "release" | "correction",
     "record_id": ..., "owner": booth whose record `record_id` is, "plate", "color", "lane_id", "at", "status",
     "reason", "entry_record_id", "entered_at", "total_fen", "due_fen", "paid_fen", "flags": [...],
     "image": picture link, "order_ids": {provider: order ref}, "payments": [...], "prepaid_fen", "prepaid_at",
     "marks": [{provider, name, value, updated_at}] (entries: what platforms said of the plate, e.g. sign-free),
     "caused_by": record id of the exit / entry that made a correction,
     "prepay": {provider, trade_no, amount_fen, paid_at} (a correction: money paid ahead at this booth for the
     owner's car; a correction without a closing status closes nothing, so a booth that does not know `prepay`
     passes it by)}
`seq` counts the publishing booth's messages (1, 2, ...) so a receiver finds a gap; a message is idempotent:
an entry snapshot is kept only if its seq is newer than the one held for that record, and closing a stay
(exit, release, correction) is final, whatever order the messages arrive in.

Partition rule: two booths that recorded the same plate inside while cut off from each other both keep their
entry. A lane sees ONE stay per plate: the latest entry (by entry time, then record id) — the rule a single booth
already follows (a plate's new entry supersedes its stale one). The exit closes that stay, and every other entry
of the plate still inside anywhere is marked superseded (on every booth, by corrections).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lanectl.core.lane import InsideCar

VERSION = 1
CLOSED = ("exited", "superseded", "abandoned", "released")  # an entry's status once its stay is over


class SiteMessageError(ValueError):
    """A site message that cannot be read: not JSON, a newer major version, a missing or mistyped field."""


class SitePayment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    amount_fen: int = Field(ge=0)
    method: str
    reference: str = ""
    at: str = ""
    flag: str = ""


class SiteMark(BaseModel):
    """What a platform told a booth about the plate (e.g. Bolink sign-free membership), newest wins."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    provider: str
    name: str
    value: str
    updated_at: str


class SitePrepay(BaseModel):
    """A platform's prepay notice one booth received for a car another booth recorded: the owner keeps it once,
    by (provider, trade_no), as if the platform had told it."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    provider: str = Field(min_length=1)
    trade_no: str = Field(min_length=1)
    amount_fen: int = Field(ge=0)
    paid_at: str = Field(min_length=1)

    @field_validator("paid_at")
    @classmethod
    def _iso(cls, value: str) -> str:
        datetime.fromisoformat(value)  # a ValueError: refused as a bad message
        return value


class SiteRecord(BaseModel):
    """One published change of a booth's books."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # fields added by a later v1 are skipped, not refused
    v: int = VERSION
    booth: str = Field(min_length=1, max_length=32)
    seq: int = Field(ge=1)
    kind: Literal["entry", "exit", "release", "correction"]
    record_id: str = Field(min_length=1)
    owner: str = ""  # the booth whose record `record_id` is ("" = the publishing booth)
    plate: str = ""
    color: str = ""
    lane_id: str = ""
    at: str = ""
    status: str = ""
    reason: str = ""
    entry_record_id: str = ""
    entered_at: str = ""
    total_fen: int = 0
    due_fen: int = 0
    paid_fen: int = 0
    flags: tuple[str, ...] = ()
    image: str = ""
    order_ids: dict[str, str] = Field(default_factory=dict)
    payments: tuple[SitePayment, ...] = ()
    prepaid_fen: int = Field(0, ge=0)
    prepaid_at: str = ""
    marks: tuple[SiteMark, ...] = ()  # on entries: the platforms' marks of the plate (sign-free ...)
    caused_by: str = ""
    prepay: Optional[SitePrepay] = None  # on a correction: money paid ahead here for the owner's car

    @property
    def owned_by(self) -> str:
        return self.owner or self.booth


def encode(record: SiteRecord) -> bytes:
    return json.dumps(record.model_dump(mode="json", exclude_none=True), ensure_ascii=False, separators=(",", ":"),
                      sort_keys=True).encode()


def decode(payload: bytes | str) -> SiteRecord:
    try:
        raw = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SiteMessageError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SiteMessageError("not a JSON object")
    if raw.get("v") != VERSION:
        raise SiteMessageError(f"unsupported version {raw.get('v')!r} (this lanectl reads v{VERSION})")
    try:
        return SiteRecord.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise SiteMessageError(f"{where}: {first['msg']}") from None


def record_message(booth: str, seq: int, kind: str, row: Mapping[str, Any]) -> SiteRecord:
    """The message for one of our own records as the store holds it (records row + payments, order ids and
    prepayments gathered by the store)."""
    return SiteRecord(
        booth=booth, seq=seq, kind=kind, record_id=row["record_id"], plate=row.get("plate", ""),
        color=row.get("color", ""), lane_id=row.get("lane_id", ""), at=row.get("at", ""),
        status=row.get("status", ""), reason=row.get("reason", ""),
        entry_record_id=row.get("entry_record_id", ""), entered_at=row.get("entered_at", ""),
        total_fen=row.get("total_fen", 0), due_fen=row.get("due_fen", 0), paid_fen=row.get("paid_fen", 0),
        flags=tuple(row.get("detail", ())), image=row.get("image", ""), order_ids=dict(row.get("order_ids", {})),
        payments=tuple(SitePayment.model_validate(p) for p in row.get("payments", ())),
        prepaid_fen=row.get("prepaid_fen", 0), prepaid_at=row.get("prepaid_at", ""),
        marks=tuple(SiteMark.model_validate(m) for m in row.get("marks", ())))


def correction(booth: str, seq: int, record_id: str, owner: str, status: str, caused_by: str) -> SiteRecord:
    """We closed another booth's entry (an exit here, a new entry of the plate here, the partition rule)."""
    return SiteRecord(booth=booth, seq=seq, kind="correction", record_id=record_id, owner=owner, status=status,
                      caused_by=caused_by)


def prepay_notice(booth: str, seq: int, entry: SiteRecord, prepay: SitePrepay) -> SiteRecord:
    """We kept a prepayment for another booth's car: its owner keeps it too and republishes its entry."""
    return SiteRecord(booth=booth, seq=seq, kind="correction", record_id=entry.record_id, owner=entry.owned_by,
                      plate=entry.plate, prepay=prepay)


def with_prepayment(entry: SiteRecord, amount_fen: int, paid_at: str) -> SiteRecord:
    """A replicated entry with money paid ahead here, until its owner's snapshot (which counts it) arrives."""
    latest = max(entry.prepaid_at, paid_at) if entry.prepaid_at else paid_at
    return entry.model_copy(update={"prepaid_fen": entry.prepaid_fen + amount_fen, "prepaid_at": latest})


def counting(record: SiteRecord, forwarded: Iterable[SitePrepay]) -> SiteRecord:
    """An owner's entry snapshot as received, with the prepayments this booth passed on to the owner that it does
    not show yet (sent before the owner kept them): each trade counted once, whatever order messages arrive in."""
    shown = {(p.method, p.reference) for p in record.payments}
    for p in forwarded:
        if (f"{p.provider}:prepay", p.trade_no) not in shown:
            record = with_prepayment(record, p.amount_fen, p.paid_at)
    return record


def closes(record: SiteRecord) -> Optional[tuple[str, str]]:
    """The stay a message ends, as (entry record id, its new status), if it ends one."""
    if record.kind == "correction" and record.status in CLOSED:
        return record.record_id, record.status
    if record.kind in ("exit", "release") and record.entry_record_id:
        return record.entry_record_id, "exited"
    if record.kind == "entry" and record.status in CLOSED:
        return record.record_id, record.status
    return None


def inside_car(record: SiteRecord) -> InsideCar:
    """A remote entry as a lane sees a car inside: its entry time, picture and what was paid ahead for it."""
    return InsideCar(record.record_id, datetime.fromisoformat(record.at), record.lane_id, record.reason,
                     record.color, record.prepaid_fen,
                     datetime.fromisoformat(record.prepaid_at) if record.prepaid_at else None, record.image)


# --- the replica ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteEntry:
    record: SiteRecord  # the newest snapshot received (highest seq of its booth)
    closed: str = ""  # "" while inside; else exited / superseded: final, an older snapshot never reopens it


class RemoteInside:
    """Entries recorded by other booths, by record id; the cars still inside among them by plate."""

    def __init__(self, entries: Iterable[RemoteEntry] = ()) -> None:
        self._entries: dict[str, RemoteEntry] = {e.record.record_id: e for e in entries}

    def entries(self) -> list[RemoteEntry]:
        return list(self._entries.values())

    def entry(self, record_id: str) -> Optional[RemoteEntry]:
        return self._entries.get(record_id)

    def inside(self) -> list[SiteRecord]:
        return [e.record for e in self._entries.values() if not e.closed]

    def plan(self, record: SiteRecord) -> list[RemoteEntry]:
        """What one message changes (nothing is changed yet: `put` them once persisted). Idempotent and
        order-independent: an older snapshot is ignored, a closed stay stays closed."""
        changed: dict[str, RemoteEntry] = {}
        if record.kind == "entry" and record.plate and record.owned_by == record.booth:
            held = self._entries.get(record.record_id)
            if held is None or held.record.seq < record.seq:
                closed = held.closed if held is not None else ""
                if not closed and record.status != "inside":
                    closed = record.status or "refused"  # a refused entry was never inside
                changed[record.record_id] = RemoteEntry(record, closed)
        ended = closes(record)
        if ended is not None:
            rid, status = ended
            held = changed.get(rid) or self._entries.get(rid)
            if held is not None and not held.closed:
                changed[rid] = replace(held, closed=status)
        return list(changed.values())

    def put(self, entries: Iterable[RemoteEntry]) -> None:
        """Keep what was planned and persisted. A stay closed meanwhile (a lane step between the plan and the
        put) stays closed, and an older snapshot does not replace a newer one."""
        for e in entries:
            held = self._entries.get(e.record.record_id)
            if held is not None:
                record = e.record if e.record.seq >= held.record.seq else held.record
                e = RemoteEntry(record, held.closed or e.closed)
            self._entries[e.record.record_id] = e

    def apply(self, record: SiteRecord) -> list[RemoteEntry]:
        changed = self.plan(record)
        self.put(changed)
        return changed

    def close(self, record_id: str, status: str) -> Optional[RemoteEntry]:
        """Our own lane closed this remote stay (exit here, partition rule); None if it was not inside."""
        held = self._entries.get(record_id)
        if held is None or held.closed:
            return None
        return replace(held, closed=status)


# --- sequence numbers: gaps ---------------------------------------------------------------------------------------
@dataclass
class SeqTracker:
    """Per booth: every seq up to `upto` was received; `above` holds the ones received past a gap."""

    upto: dict[str, int] = field(default_factory=dict)
    above: dict[str, set[int]] = field(default_factory=dict)

    def after(self, booth: str, seq: int) -> Optional[tuple[int, frozenset[int]]]:
        """The booth's (upto, above) once `seq` is received; None if it was received before (a re-delivery).
        Nothing changes until `mark` (the caller persists first)."""
        upto = self.upto.get(booth, 0)
        above = set(self.above.get(booth, ()))
        if seq <= upto or seq in above:
            return None
        above.add(seq)
        while upto + 1 in above:
            upto += 1
            above.discard(upto)
        return upto, frozenset(above)

    def mark(self, booth: str, state: tuple[int, frozenset[int]]) -> None:
        self.upto[booth], self.above[booth] = state[0], set(state[1])

    def seen(self, booth: str, seq: int) -> bool:
        """Record `seq` of `booth` as received; False if it was received before."""
        state = self.after(booth, seq)
        if state is not None:
            self.mark(booth, state)
        return state is not None

    def gap(self, booth: str) -> bool:
        """Messages of `booth` were received past one that is missing: ask for what follows `upto`."""
        return bool(self.above.get(booth))


# --- the lane's view: local + remote, one stay per plate --------------------------------------------------------------
def stay_key(car: InsideCar) -> tuple[datetime, str]:
    """The partition rule's order: the latest entry wins, ties by record id."""
    return car.entered_at, car.record_id


class InsideView(Mapping[str, InsideCar]):
    """Live read-only view of the cars inside: this booth's own (core/inside.py) and the replica's, by plate.
    Where a plate is inside at two booths, the latest entry is the car's stay (partition rule)."""

    def __init__(self, local: Mapping[str, InsideCar], remote: "RemoteCars") -> None:
        self._local = local
        self._remote = remote

    def __getitem__(self, plate: str) -> InsideCar:
        candidates = list(self._remote.by_plate(plate))
        own = self._local.get(plate)
        if own is not None:
            candidates.append(own)
        if not candidates:
            raise KeyError(plate)
        return max(candidates, key=stay_key)

    def __iter__(self) -> Iterator[str]:
        yield from self._local
        for plate in self._remote.plates():
            if plate not in self._local:
                yield plate

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, plate: object) -> bool:
        return plate in self._local or self._remote.has(plate)

    def others(self, plate: str) -> list[InsideCar]:
        """Every stay of `plate` inside except the one the view shows (what the partition rule supersedes)."""
        if plate not in self:
            return []
        shown = self[plate]
        every = list(self._remote.by_plate(plate))
        own = self._local.get(plate)
        if own is not None:
            every.append(own)
        return [c for c in every if c.record_id != shown.record_id]


class RemoteCars:
    """The replica's cars inside by plate (several per plate across booths), kept with RemoteInside."""

    def __init__(self) -> None:
        self._by_plate: dict[str, dict[str, InsideCar]] = {}
        self._plate_of: dict[str, str] = {}
        self.view = MappingProxyType(self._by_plate)

    def update(self, entry: RemoteEntry) -> None:
        rid = entry.record.record_id
        plate = self._plate_of.pop(rid, None)
        if plate is not None:
            cars = self._by_plate[plate]
            cars.pop(rid, None)
            if not cars:
                del self._by_plate[plate]
        if not entry.closed and entry.record.plate:
            self._by_plate.setdefault(entry.record.plate, {})[rid] = inside_car(entry.record)
            self._plate_of[rid] = entry.record.plate

    def owner(self, record_id: str) -> bool:
        return record_id in self._plate_of

    def by_plate(self, plate: str) -> Iterable[InsideCar]:
        return self._by_plate.get(plate, {}).values()

    def plates(self) -> Iterable[str]:
        return self._by_plate.keys()

    def has(self, plate: object) -> bool:
        return plate in self._by_plate
