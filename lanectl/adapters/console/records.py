"""The console's records and shift tab (issue 18 item 4): read-only routes behind the session, all GET (they need
no CSRF token and never change anything). Reads go through the store's own reader connection (store/reads.py).

    GET /console/records              search: plate (exact or partial), lane, from/to (lot time), kind, status;
                                      newest first, `limit` (<= 500) per page, `cursor` for the next one
    GET /console/records.csv          the same search as a file (UTF-8 with BOM, yuan with 2 decimals, lot time)
    GET /console/records/<id>/image   the record's picture (only from the lanes' images folder)
    GET /console/shift[.csv]          takings per payment method and per operator, counts, short/over, for a
                                      period: `day` (a date, today, yesterday), or `from`/`to`; default the
                                      lot day so far (00:00 until now)
    GET /console/settlements          provider charges still running, and money kept for refund (late payments)
    GET /console/outbox               per destination: depth, oldest item's age, last error

Times in a query are lot time (the site's zone) unless they carry an offset; a date alone as `to` means the end
of that day. A bad query is a 400 JSON naming the field.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence
from zoneinfo import ZoneInfo

from aiohttp import web

from lanectl.adapters.console.pictures import picture_file
from lanectl.adapters.housekeeping.shift_report import day_span
from lanectl.adapters.store.reads import RecordQuery, StoreReads
from lanectl.core.effects import RecordStatus
from lanectl.core.plates import PLATELESS_WORDS, normalize_plate
from lanectl.service.ports import StorageUnavailable

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
CSV_MAX_ROWS = 10_000  # a file bigger than this is a search to narrow
MAX_SPAN_DAYS = 366
KINDS = ("entry", "exit", "release")
STATUSES = tuple(s.value for s in RecordStatus)
RECORD_ID = re.compile(r"[0-9A-Za-z_]{1,48}")  # the site-unique record id (ARCHITECTURE rule 4)
CURSOR = re.compile(r"(\d{1,12}(?:\.\d{1,9})?(?:e[+-]?\d{1,3})?):(\d{1,19})")
BOM = "\ufeff"  # Excel on a Chinese Windows reads a BOM-less CSV as GBK

Authed = Callable[..., Callable[[web.Request], Awaitable[web.StreamResponse]]]


class QueryError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status)


def yuan(fen: Optional[int]) -> str:
    """Integer fen as yuan with 2 decimals, no float on the way: -150 -> "-1.50"."""
    fen = fen or 0
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


# --- the query ---------------------------------------------------------------------------------------------------
def parse_time(field: str, text: str, tz: ZoneInfo, *, end: bool = False) -> datetime:
    """Lot time: "2026-12-07", "2026-12-07 08:00", "2026-12-07T08:00:30", or ISO 8601 with an offset. A date
    alone is its 00:00, or with `end` the next day's 00:00 (the whole day included)."""
    text = text.strip().replace("/", "-")
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1) if end else day, time(0), tz)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(field, f"{field}: not a date/time: {text[:40]!r} (use 2026-12-07 or "
                                "2026-12-07 08:00, lot time)") from None
    return when.replace(tzinfo=tz) if when.tzinfo is None else when


def plate_filter(text: str, match: str) -> tuple[str, bool]:
    """(normalized plate, partial). Normalized as `lanectl records` does (core/plates.normalize_plate). A partial
    fragment without its province may start anywhere in the plate: only its first character is left as typed
    (it may be the city letter, where O is a real letter), the rest reads O as 0 and I as 1."""
    if len(text) > 16:
        raise QueryError("plate", "plate: at most 16 characters")
    plate = normalize_plate(text)
    if plate == "" and text.strip().upper() not in PLATELESS_WORDS:
        raise QueryError("plate", f"plate: {text[:16]!r} has no letter or digit (无牌 finds the plate-less cars)")
    partial = match == "partial" and plate != ""  # "无牌" and the like: the plate-less cars, exactly
    if partial and plate and plate[0].isascii():
        plate = plate[0] + plate[1:].replace("O", "0").replace("I", "1")
    return plate, partial


@dataclass(frozen=True)
class Search:
    query: RecordQuery
    lang: str


def parse_search(q: Mapping[str, str], tz: ZoneInfo, lanes: Sequence[str], *, paged: bool = True) -> Search:
    known = {"plate", "match", "lane", "from", "to", "kind", "status", "limit", "cursor", "lang"}
    unknown = sorted(set(q) - known)
    if unknown:
        raise QueryError(unknown[0], f"unknown parameter {unknown[0]!r}; expected {', '.join(sorted(known))}")
    match = q.get("match", "partial")
    if match not in ("exact", "partial"):
        raise QueryError("match", "match: exact or partial")
    plate, partial = plate_filter(q["plate"], match) if q.get("plate", "").strip() else (None, False)
    lane = q.get("lane") or None
    if lane is not None and lane not in lanes:
        raise QueryError("lane", f"lane: no lane {lane[:40]!r}; lanes: {', '.join(lanes)}")
    kind = q.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise QueryError("kind", f"kind: one of {', '.join(KINDS)}")
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise QueryError("status", f"status: one of {', '.join(STATUSES)}")
    since = parse_time("from", q["from"], tz) if q.get("from") else None
    until = parse_time("to", q["to"], tz, end=True) if q.get("to") else None
    if since is not None and until is not None and since >= until:
        raise QueryError("to", "to: must be after from")
    limit = DEFAULT_LIMIT
    if paged and q.get("limit"):
        if not q["limit"].isdigit() or not 1 <= int(q["limit"]) <= MAX_LIMIT:
            raise QueryError("limit", f"limit: a whole number from 1 to {MAX_LIMIT}")
        limit = int(q["limit"])
    after = None
    if paged and q.get("cursor"):
        m = CURSOR.fullmatch(q["cursor"])
        if m is None:
            raise QueryError("cursor", "cursor: pass back the `next` of the previous page")
        after = (float(m.group(1)), int(m.group(2)))
    lang = q.get("lang", "zh")
    if lang not in ("zh", "en"):
        raise QueryError("lang", "lang: zh or en")
    return Search(RecordQuery(plate=plate, partial=partial, lane=lane, since=since, until=until, kind=kind,
                              status=status, limit=limit, after=after), lang)


def parse_period(q: Mapping[str, str], tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """[start, end): `day` (a lot day: YYYY-MM-DD, today or yesterday), or `from` (and `to`, default now);
    default: today's lot day so far."""
    unknown = sorted(set(q) - {"day", "from", "to", "lang"})
    if unknown:
        raise QueryError(unknown[0], f"unknown parameter {unknown[0]!r}; expected day, or from and to")
    if q.get("lang", "zh") not in ("zh", "en"):
        raise QueryError("lang", "lang: zh or en")
    now = now.astimezone(tz)
    if q.get("day"):
        if q.get("from") or q.get("to"):
            raise QueryError("day", "day: give a day, or from and to, not both")
        named = {"today": now.date(), "yesterday": now.date() - timedelta(days=1)}  # by the lot's calendar
        try:
            return day_span(named.get(q["day"].strip()) or date.fromisoformat(q["day"].strip()), tz)
        except ValueError:
            raise QueryError("day", f"day: not a date: {q['day'][:40]!r} (use 2026-12-07)") from None
    if q.get("from"):
        start = parse_time("from", q["from"], tz)
        end = parse_time("to", q["to"], tz, end=True) if q.get("to") else now
    elif q.get("to"):
        raise QueryError("from", "from: required with to")
    else:
        start, end = day_span(now.date(), tz)[0], now
    if start >= end:
        raise QueryError("to", "to: must be after from")
    if end - start > timedelta(days=MAX_SPAN_DAYS):
        raise QueryError("to", f"to: a period of at most {MAX_SPAN_DAYS} days")
    return start, end


# --- words for the files -----------------------------------------------------------------------------------------
WORDS = {
    "zh": {"entry": "入场", "exit": "出场", "release": "放行", "inside": "在场", "refused": "拒绝入场",
           "exited": "已出场", "superseded": "被替代", "leaving": "放行离场", "awaiting_payment": "待缴费",
           "paid": "已支付", "released": "人工放行", "abandoned": "已离开未缴"},
    "en": {},
}
# a record's reason in an operator's words (records.js has the page's copy of these)
REASONS = {
    "zh": {"temporary": "临时车", "monthly": "月卡", "whitelist": "白名单", "stored_value": "储值卡扣费",
           "blacklist": "黑名单", "free": "免费", "zero_fee": "零收费", "paid_ahead": "已预付",
           "no_entry_record": "无入场记录", "monthly_spaces_full": "月卡车位已满", "monthly_expired": "月卡已过期",
           "monthly_not_started": "月卡未生效", "monthly_grace": "月卡宽限期", "temporary_not_allowed": "不允许临时车",
           "unreadable_plate": "车牌无法识别", "ambiguous_entry": "多条入场记录，待人工确认", "operator": "人工放行"},
    "en": {"operator": "operator release"},
}
RECORD_COLUMNS = {
    "zh": ("时间", "车道", "车牌", "颜色", "类型", "状态", "车辆类别", "原因", "应收合计(元)", "待缴(元)",
           "实收(元)", "少收(元)", "多收(元)", "操作员", "入场时间", "记录号"),
    "en": ("time", "lane", "plate", "color", "kind", "status", "class", "reason", "total (yuan)", "due (yuan)",
           "paid (yuan)", "short (yuan)", "over (yuan)", "operator", "entered", "record"),
}
SHIFT_COLUMNS = {"zh": ("分类", "项目", "笔数", "金额(元)", "少收(元)", "多收(元)"),
                 "en": ("section", "key", "count", "amount (yuan)", "short (yuan)", "over (yuan)")}
SHIFT_SECTIONS = {"zh": {"period": "时段", "summary": "汇总", "entries": "入场", "exits": "出场",
                         "releases": "人工放行", "money": "收费方式", "operator": "操作员",
                         "short_over": "少收/多收"},
                  "en": {}}


def _word(lang: str, key: str) -> str:
    return WORDS[lang].get(key, key)


def reason_words(lang: str, reason: str) -> str:
    """E.g. operator:现金缴费 -> 人工放行：现金缴费, monthly_expired -> 月卡已过期; unknown ones as they are."""
    head, sep, rest = reason.partition(":")
    said = REASONS[lang].get(head, head.replace("_", " ") if lang == "en" else head)
    return f"{said}{'：' if lang == 'zh' else ': '}{rest}" if sep else said


def _section(lang: str, key: str) -> str:
    return SHIFT_SECTIONS[lang].get(key, key)


def _csv_response(rows: list[Sequence[Any]], filename: str) -> web.Response:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)  # CRLF: what Excel writes and expects
    return web.Response(body=(BOM + out.getvalue()).encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                 "Cache-Control": "no-store"})


def _no_parameters(request: web.Request) -> None:
    if request.query:
        name = sorted(request.query)[0]
        raise QueryError(name, f"unknown parameter {name[:40]!r}: this takes none")


class RecordsRoutes:
    def __init__(self, reads: StoreReads, *, tz: ZoneInfo, lanes: Mapping[str, str], images_dir: Path,
                 now: Callable[[], datetime], relay_status: Callable[[], Mapping[str, Mapping[str, Any]]]) -> None:
        self.reads = reads
        self.tz = tz
        self.lanes = dict(lanes)  # lane id -> its name
        self.images_dir = Path(images_dir)
        self.now = now
        self.relay_status = relay_status

    def add_routes(self, router: web.UrlDispatcher, authed: Authed) -> None:
        for path, handler in (("/console/records", self._records), ("/console/records.csv", self._records_csv),
                              ("/console/shift", self._shift), ("/console/shift.csv", self._shift_csv),
                              ("/console/settlements", self._settlements), ("/console/outbox", self._outbox)):
            router.add_get(path, authed(self._guarded(handler), post=False))
        # pictures load by themselves (thumbnails): not an operator action for the idle logout
        router.add_get("/console/records/{record_id}/image", authed(self._guarded(self._image), post=False,
                                                                     activity=False))

    def _guarded(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        async def route(request: web.Request, session: Any) -> web.StreamResponse:
            try:
                return await handler(request)
            except QueryError as exc:
                return _error(400, "bad_query", exc.message, field=exc.field)
            except StorageUnavailable as exc:
                return _error(503, "storage_unavailable", f"the database cannot be read now: {exc.reason}")
        return route

    # --- times and rows ------------------------------------------------------------------------------------------
    def lot_time(self, stamp: Optional[str]) -> str:
        """An ISO time as the lot's clock shows it ("2026-12-07 08:05:09"); "" for none."""
        if not stamp:
            return ""
        try:
            return datetime.fromisoformat(stamp).astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            return stamp

    def _row(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"record_id": r["record_id"], "at": self.lot_time(r["at"]), "lane": r["lane_id"],
                "lane_name": self.lanes.get(r["lane_id"], r["lane_id"]), "kind": r["kind"], "status": r["status"],
                "plate": r["plate"], "color": r["color"], "vehicle_class": r["vehicle_class"], "reason": r["reason"],
                "total_fen": r["total_fen"], "due_fen": r["due_fen"], "paid_fen": r["paid_fen"],
                "short_fen": r["short_fen"], "over_fen": r["over_fen"], "operator": r["operator"],
                "operator_uid": r["operator_uid"], "entered_at": self.lot_time(r["entered_at"]),
                "image": f"/console/records/{r['record_id']}/image" if r["image"] else None}

    # --- records -------------------------------------------------------------------------------------------------
    async def _records(self, request: web.Request) -> web.StreamResponse:
        search = parse_search(request.query, self.tz, list(self.lanes))
        q = search.query
        rows = await self.reads.search_records(replace(q, limit=q.limit + 1))
        more = len(rows) > q.limit
        rows = rows[:q.limit]
        nxt = f"{rows[-1]['cursor'][0]!r}:{rows[-1]['cursor'][1]}" if more else None
        return web.json_response({"records": [self._row(r) for r in rows], "next": nxt, "lanes": self.lanes})

    async def _records_csv(self, request: web.Request) -> web.StreamResponse:
        search = parse_search(request.query, self.tz, list(self.lanes), paged=False)
        lang = search.lang
        q = replace(search.query, limit=CSV_MAX_ROWS + 1, after=None)
        rows = await self.reads.search_records(q)
        table: list[Sequence[Any]] = [RECORD_COLUMNS[lang]]
        for r in (self._row(r) for r in rows[:CSV_MAX_ROWS]):
            who = r["operator"] or (f"uid {r['operator_uid']}" if r["operator_uid"] is not None else "")
            table.append((r["at"], r["lane_name"], r["plate"], r["color"], _word(lang, r["kind"]),
                          _word(lang, r["status"]), r["vehicle_class"], reason_words(lang, r["reason"]),
                          yuan(r["total_fen"]),
                          yuan(r["due_fen"]), yuan(r["paid_fen"]), yuan(r["short_fen"]), yuan(r["over_fen"]), who,
                          r["entered_at"], r["record_id"]))
        if len(rows) > CSV_MAX_ROWS:
            table.append(("…", "more than 10000 records: narrow the search" if lang == "en"
                          else "超过 10000 条记录，请缩小查询范围"))
        stamp = self.now().astimezone(self.tz).strftime("%Y%m%d-%H%M")
        return _csv_response(table, f"records-{stamp}.csv")

    async def _image(self, request: web.Request) -> web.StreamResponse:
        record_id = request.match_info["record_id"]
        if not RECORD_ID.fullmatch(record_id):
            return _error(404, "no_picture", "no such record")
        image = await self.reads.record_image(record_id)
        path = picture_file(self.images_dir, image)
        if path is None:
            return _error(404, "no_picture", "this record has no picture kept (none taken, or pruned)")
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg", "Cache-Control": "private, max-age=3600",
                                               "X-Content-Type-Options": "nosniff"})

    # --- the shift -------------------------------------------------------------------------------------------------
    async def _figures(self, request: web.Request) -> tuple[datetime, datetime, dict[str, Any]]:
        start, end = parse_period(request.query, self.tz, self.now())
        return start, end, await self.reads.shift(start, end)

    def _shift_json(self, start: datetime, end: datetime, f: dict[str, Any]) -> dict[str, Any]:
        return {"from": self.lot_time(start.isoformat()), "to": self.lot_time(end.isoformat()),
                "entries": sum(f["entries"].values()), "exits": sum(f["exits"].values()),
                "entries_by_lane": f["entries"], "exits_by_lane": f["exits"], "releases": f["releases"],
                "money": [{"method": m, "count": n, "amount_fen": fen} for m, n, fen in f["money"]],
                "money_count": f["money_count"], "money_fen": f["money_fen"],
                "operators": [{"operator": o, "releases": n, "paid_fen": paid or 0, "short_fen": short or 0,
                               "over_fen": over or 0} for o, n, paid, short, over in f["operators"]],
                "short_fen": f["short_fen"] or 0, "over_fen": f["over_fen"] or 0}

    async def _shift(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._shift_json(*await self._figures(request)))

    async def _shift_csv(self, request: web.Request) -> web.StreamResponse:
        start, end, f = await self._figures(request)
        lang = request.query.get("lang", "zh")
        s = self._shift_json(start, end, f)

        def sec(key: str) -> str:
            return _section(lang, key)
        table: list[Sequence[Any]] = [SHIFT_COLUMNS[lang],
                                      (sec("period"), f"{s['from']} – {s['to']}", "", "", "", "")]
        table += [(sec("summary"), sec("entries"), s["entries"], "", "", ""),
                  (sec("summary"), sec("exits"), s["exits"], "", "", ""),
                  (sec("summary"), sec("releases"), s["releases"], "", "", ""),
                  (sec("summary"), sec("money"), s["money_count"], yuan(s["money_fen"]), "", ""),
                  (sec("summary"), sec("short_over"), "", "", yuan(s["short_fen"]), yuan(s["over_fen"]))]
        table += [(sec("entries"), self.lanes.get(lane, lane), n, "", "", "") for lane, n in f["entries"].items()]
        table += [(sec("exits"), self.lanes.get(lane, lane), n, "", "", "") for lane, n in f["exits"].items()]
        table += [(sec("money"), m["method"], m["count"], yuan(m["amount_fen"]), "", "") for m in s["money"]]
        table += [(sec("operator"), o["operator"], o["releases"], yuan(o["paid_fen"]), yuan(o["short_fen"]),
                   yuan(o["over_fen"])) for o in s["operators"]]
        name = f"shift-{start.astimezone(self.tz):%Y%m%d-%H%M}-{end.astimezone(self.tz):%Y%m%d-%H%M}.csv"
        return _csv_response(table, name)

    # --- money still moving, money to give back ------------------------------------------------------------------
    async def _settlements(self, request: web.Request) -> web.StreamResponse:
        _no_parameters(request)
        running = await self.reads.open_settlements()
        refunds = await self.reads.for_refund()
        return web.json_response({
            "settling": [{**{k: r[k] for k in ("record_id", "plate", "provider", "status", "amount_fen", "detail",
                                               "car_waiting")},
                          "lane": r["lane_id"], "lane_name": self.lanes.get(r["lane_id"], r["lane_id"]),
                          "since": self.lot_time(r["since"]), "updated_at": self.lot_time(r["updated_at"])}
                         for r in running],
            "for_refund": [{**{k: r[k] for k in ("record_id", "plate", "provider", "method", "trade_no", "amount_fen",
                                                 "why")},
                            "lane": r["lane_id"], "lane_name": self.lanes.get(r["lane_id"], r["lane_id"]),
                            "at": self.lot_time(r["at"])} for r in refunds]})

    # --- the outbox ------------------------------------------------------------------------------------------------
    async def _outbox(self, request: web.Request) -> web.StreamResponse:
        _no_parameters(request)
        depths = await self.reads.outbox_depths()
        relay = self.relay_status()
        now = self.now()
        out: dict[str, dict[str, Any]] = {}
        for dest in sorted(set(depths) | set(relay)):
            d = depths.get(dest, {"pending": 0, "dead": 0, "oldest_at": None, "last_error": ""})
            st = relay.get(dest, {})
            oldest = d["oldest_at"]
            age = max(0, int((now - datetime.fromisoformat(oldest)).total_seconds())) if oldest else None
            failing = st.get("failing_since")
            out[dest] = {"pending": d["pending"], "dead": d["dead"], "oldest_at": self.lot_time(oldest),
                         "oldest_age_s": age, "last_error": st.get("last_error") or d["last_error"],
                         "failing_since": self.lot_time(failing.isoformat()) if isinstance(failing, datetime) else "",
                         "sent": st.get("sent", 0), "rejected": st.get("rejected", 0)}
        return web.json_response({"destinations": out})

