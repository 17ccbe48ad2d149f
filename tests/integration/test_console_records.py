"""The console's records and shift tab (issue 18 item 4) on aiohttp's test server over a real SQLite file, read
through the store's own reader connection: search by plate (partial, normalized), lane, lot-time period, kind and
status, paged by a cursor; the record's picture (only from the images folder); CSV files with a BOM and yuan;
the shift's takings per method and operator; running settlements and late payments flagged for refund; the
outbox per destination. No session: 401. A bad query: 400 JSON naming the field. Reads never wait for the writer.
"""

from __future__ import annotations

import asyncio
import csv
import io
import random
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lanectl.adapters.console.accounts import Accounts, User, hash_password, write_users
from lanectl.adapters.console.live import LiveFeed
from lanectl.adapters.console.records import RecordsRoutes, parse_time, plate_filter, yuan
from lanectl.adapters.console.server import ConsoleServer
from lanectl.adapters.console.sessions import LoginLimiter, Sessions
from lanectl.adapters.store import SqliteStore
from tests.schema_fixtures import ENTRY, EXIT, Lot

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 7, 18, 0, tzinfo=TZ)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60 + b"\xff\xd9"  # served as stored; the browser test shows a real one


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Relay:
    def __init__(self) -> None:
        self.st: dict = {}

    def status(self) -> dict:
        return self.st


@pytest.fixture
async def lot(tmp_path: Path):
    """A store over a real file, and a Lot writing rows into it the way the lanes do (own connection)."""
    store = SqliteStore(tmp_path / "lanectl.db", destinations=["webhook"])
    await store.open()
    conn = sqlite3.connect(tmp_path / "lanectl.db", isolation_level=None)
    conn.row_factory = sqlite3.Row
    lot = Lot(conn, random.Random(3), datetime(2026, 12, 7, 7, 0, tzinfo=TZ))
    try:
        yield store, lot
    finally:
        conn.close()
        await store.close()


@pytest.fixture
async def console(lot, tmp_path: Path):
    store, _ = lot
    users = tmp_path / "users.yaml"
    write_users(users, {"wang": User("wang", "operator", hash_password("wang-pass-1", n=2 ** 10))})
    ticks, relay = Ticks(), Relay()
    server = ConsoleServer(Accounts(users), Sessions(15 * 60, ticks), LoginLimiter(5, 60, ticks),
                           LiveFeed([], lambda lane: {}), actions=None)  # type: ignore[arg-type]
    server.records = RecordsRoutes(store.reads, tz=TZ, lanes={ENTRY: "东门入口", EXIT: "东门出口"},
                                   images_dir=tmp_path / "images", now=lambda: NOW, relay_status=relay.status)
    app = web.Application()
    server.add_routes(app.router)
    async with TestClient(TestServer(app)) as client:
        r = await client.post("/console/login", json={"user": "wang", "password": "wang-pass-1"})
        assert r.status == 200
        yield client, relay


async def get(client: TestClient, path: str, **params) -> tuple[int, dict]:
    r = await client.get(path, params=params)
    return r.status, await r.json()


def write(lot: Lot, fn) -> None:
    lot.conn.execute("BEGIN")
    fn()
    lot.conn.execute("COMMIT")


# --- the query -----------------------------------------------------------------------------------------------------
def test_plates_are_normalized_as_lanectl_records_does_and_fragments_read_o_as_zero_after_their_first_letter():
    assert plate_filter("粤b 12345", "exact") == ("粤B12345", False)
    assert plate_filter("b1o2", "partial") == ("B102", True)
    assert plate_filter("粤o12", "partial") == ("粤O12", True)  # 粤O: the city letter O is real
    assert plate_filter("无牌", "partial") == ("", False)  # the plate-less cars, exactly


def test_query_times_are_lot_time_and_a_date_alone_as_to_takes_the_whole_day():
    assert parse_time("from", "2026-12-07 08:00", TZ) == datetime(2026, 12, 7, 8, 0, tzinfo=TZ)
    assert parse_time("from", "2026-12-07T08:00", TZ) == datetime(2026, 12, 7, 8, 0, tzinfo=TZ)
    assert parse_time("to", "2026-12-07", TZ, end=True) == datetime(2026, 12, 8, 0, 0, tzinfo=TZ)
    assert parse_time("from", "2026-12-07T00:00:00+00:00", TZ).astimezone(TZ).hour == 8
    assert [yuan(f) for f in (0, 5, 700, 123456, -150)] == ["0.00", "0.05", "7.00", "1234.56", "-1.50"]


# --- auth and bad queries ------------------------------------------------------------------------------------------
async def test_nothing_without_a_session(lot, tmp_path):
    store, _ = lot
    server = ConsoleServer(Accounts(tmp_path / "none.yaml"), Sessions(60, Ticks()), LoginLimiter(5, 60, Ticks()),
                           LiveFeed([], lambda lane: {}), actions=None)  # type: ignore[arg-type]
    server.records = RecordsRoutes(store.reads, tz=TZ, lanes={EXIT: EXIT}, images_dir=tmp_path, now=lambda: NOW,
                                   relay_status=dict)
    app = web.Application()
    server.add_routes(app.router)
    async with TestClient(TestServer(app)) as client:
        for path in ("/console/records", "/console/records.csv", "/console/records/x_1/image", "/console/shift",
                     "/console/shift.csv", "/console/settlements", "/console/outbox"):
            r = await client.get(path)
            assert r.status == 401 and (await r.json())["error"] == "no_session", path


@pytest.mark.parametrize("path,params,field", [
    ("/console/records", {"limit": "0"}, "limit"), ("/console/records", {"limit": "501"}, "limit"),
    ("/console/records", {"limit": "ten"}, "limit"), ("/console/records", {"from": "yesterday"}, "from"),
    ("/console/records", {"from": "2026-12-07 10:00", "to": "2026-12-07 09:00"}, "to"),
    ("/console/records", {"lane": "nope"}, "lane"), ("/console/records", {"kind": "parked"}, "kind"),
    ("/console/records", {"status": "gone"}, "status"), ("/console/records", {"cursor": "1;drop"}, "cursor"),
    ("/console/records", {"match": "fuzzy", "plate": "B1"}, "match"),
    ("/console/records", {"plate": "x" * 17}, "plate"), ("/console/records", {"plate": " - "}, "plate"),
    ("/console/records", {"sort": "plate"}, "sort"), ("/console/records.csv", {"lang": "fr"}, "lang"),
    ("/console/shift", {"day": "2026-13-01"}, "day"), ("/console/shift", {"to": "2026-12-07"}, "from"),
    ("/console/shift", {"day": "2026-12-07", "from": "2026-12-07"}, "day"),
    ("/console/shift.csv", {"from": "2024-01-01", "to": "2026-12-07"}, "to"),
    ("/console/outbox", {"x": "1"}, "x")])
async def test_a_bad_query_is_a_400_json_naming_the_field(console, path, params, field):
    client, _ = console
    r = await client.get(path, params=params)
    body = await r.json()
    assert r.status == 400 and body["error"] == "bad_query" and body["field"] == field, body
    assert field in body["message"]


async def test_the_routes_are_get_only(console):
    client, _ = console
    r = await client.post("/console/records", json={})
    assert r.status == 405


# --- records -------------------------------------------------------------------------------------------------------
async def test_search_by_partial_plate_lane_period_kind_and_status_in_lot_time(console, lot):
    client, _ = console
    _, l = lot
    ids: dict[str, str] = {}

    def fill():
        l.clock = datetime(2026, 12, 7, 7, 59, tzinfo=TZ)
        ids["early"] = l.record(ENTRY, "entry", "粤B12345", l.clock, "exited")
        l.clock = datetime(2026, 12, 7, 8, 0, tzinfo=TZ)
        ids["entry"] = l.record(ENTRY, "entry", "粤B12345", l.clock, "inside")
        ids["other"] = l.record(ENTRY, "entry", "京A99999", l.clock + timedelta(minutes=1), "refused",
                                reason="blacklist")
        ids["exit"] = l.record(EXIT, "exit", "粤B12345", datetime(2026, 12, 7, 11, 30, tzinfo=TZ), "released",
                               entered_at=l.clock.isoformat(), total_fen=700, due_fen=700, paid_fen=500,
                               short_fen=200, operator="console:wang", reason="operator:现金缴费")
    write(l, fill)

    status, body = await get(client, "/console/records", plate="b 123", **{"from": "2026-12-07 08:00"})
    assert status == 200 and body["next"] is None
    assert [r["record_id"] for r in body["records"]] == [ids["exit"], ids["entry"]]  # newest first, 07:59 out
    row = body["records"][0]
    assert row["at"] == "2026-12-07 11:30:00" and row["lane_name"] == "东门出口"
    assert (row["total_fen"], row["paid_fen"], row["short_fen"], row["operator"]) == (700, 500, 200, "console:wang")
    assert row["entered_at"] == "2026-12-07 08:00:00" and row["image"] is None
    # an offset given by the client is honoured: 00:00 UTC is 08:00 at the lot
    _, body = await get(client, "/console/records", plate="粤B12345", match="exact", **{"from": "2026-12-07T00:00Z"})
    assert [r["record_id"] for r in body["records"]] == [ids["exit"], ids["entry"]]
    _, body = await get(client, "/console/records", plate="粤B1234", match="exact")
    assert body["records"] == []  # exact is exact
    _, body = await get(client, "/console/records", lane=ENTRY, status="refused")
    assert [(r["record_id"], r["reason"]) for r in body["records"]] == [(ids["other"], "blacklist")]
    _, body = await get(client, "/console/records", kind="exit", to="2026-12-07 11:30")
    assert body["records"] == []  # `to` is exclusive
    _, body = await get(client, "/console/records", kind="exit", to="2026-12-07")  # the whole day
    assert [r["record_id"] for r in body["records"]] == [ids["exit"]]


async def test_pages_follow_the_cursor_without_losing_or_repeating_rows_of_the_same_second(console, lot):
    client, _ = console
    _, l = lot
    at = datetime(2026, 12, 7, 9, 0, tzinfo=TZ)
    write(l, lambda: [l.record(ENTRY, "entry", f"粤B1000{i}", at + timedelta(minutes=i // 3), "inside")
                      for i in range(7)])  # three rows share each minute
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, body = await get(client, "/console/records", **params)
        assert status == 200 and len(body["records"]) <= 2
        seen += [r["plate"] for r in body["records"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 4 and len(seen) == len(set(seen)) == 7
    assert seen[0] == "粤B10006"


async def test_records_csv_is_utf8_with_a_bom_amounts_in_yuan_and_lot_time(console, lot):
    client, _ = console
    _, l = lot
    write(l, lambda: l.record(EXIT, "exit", "粤B12345", datetime(2026, 12, 7, 11, 30, 5, tzinfo=TZ), "released",
                              total_fen=1234, due_fen=1234, paid_fen=1000, short_fen=234, operator="console:wang",
                              reason="operator:现金缴费"))
    r = await client.get("/console/records.csv", params={"plate": "12345"})
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert r.headers["Content-Disposition"] == 'attachment; filename="records-20261207-1800.csv"'
    raw = await r.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["时间", "车道", "车牌"]
    assert rows[1][:6] == ["2026-12-07 11:30:05", "东门出口", "粤B12345", "blue", "出场", "人工放行"]
    assert rows[1][7:14] == ["人工放行：现金缴费", "12.34", "12.34", "10.00", "2.34", "0.00", "console:wang"]
    en = list(csv.reader(io.StringIO((await (await client.get("/console/records.csv",
                                                               params={"lang": "en"})).read()).decode("utf-8-sig"))))
    assert en[0][0] == "time" and en[1][4:6] == ["exit", "released"] and en[1][7] == "operator release: 现金缴费"


async def test_the_picture_is_served_only_from_the_images_folder(console, lot, tmp_path):
    client, _ = console
    _, l = lot
    pictures = tmp_path / "images" / EXIT
    pictures.mkdir(parents=True)
    (pictures / "20261207113000_粤B12345.jpg").write_bytes(JPEG)
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"not for the console")
    ids = {}

    def fill():
        at = datetime(2026, 12, 7, 11, 30, tzinfo=TZ)
        ids["ok"] = l.record(EXIT, "exit", "粤B12345", at, "paid",
                             image=str(pictures / "20261207113000_粤B12345.jpg"))
        ids["outside"] = l.record(EXIT, "exit", "粤B22222", at, "paid", image=str(outside))
        ids["dotdot"] = l.record(EXIT, "exit", "粤B33333", at, "paid",
                                 image=str(pictures / ".." / ".." / "secret.jpg"))
        ids["pruned"] = l.record(EXIT, "exit", "粤B44444", at, "paid", image=str(pictures / "gone.jpg"))
    write(l, fill)
    _, body = await get(client, "/console/records", plate="粤B12345")
    assert body["records"][0]["image"] == f"/console/records/{ids['ok']}/image"
    r = await client.get(body["records"][0]["image"])
    assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg" and await r.read() == JPEG
    for key in ("outside", "dotdot", "pruned"):
        r = await client.get(f"/console/records/{ids[key]}/image")
        assert r.status == 404 and (await r.json())["error"] == "no_picture", key
    for bad in ("..%2F..%2Fsecret.jpg", "x" * 49, "a.b"):
        r = await client.get(f"/console/records/{bad}/image")
        assert r.status == 404, bad


# --- the shift -----------------------------------------------------------------------------------------------------
def fill_day(l: Lot) -> None:
    """07:00 on: 2 cars paid cash 5.00, one paid by xft 8.00, one released short 3.00, one late xft payment."""
    l.visit(l.plate(), 45, fee_fen=500)
    l.visit(l.plate(), 45, fee_fen=500)
    l.visit(l.plate(), 60, fee_fen=800, method="xft:wallet")
    entry = l.arrive("粤B99999")
    at = l.tick(90)
    released = l.record(EXIT, "exit", "粤B99999", at, "released", entry_record_id=entry, total_fen=900,
                        due_fen=900, paid_fen=600, operator="console:wang", short_fen=300, reason="operator:cash")
    l.pay(released, EXIT, 600, "cash", at, reference="console:wang")
    l.pay(released, EXIT, 900, "xft:wallet", at + timedelta(minutes=2), reference="XFT-LATE-1", flag="late")


async def test_the_shift_by_default_is_the_lot_day_so_far_with_takings_per_method_and_operator(console, lot):
    client, _ = console
    _, l = lot
    l.clock = datetime(2026, 12, 6, 23, 15, tzinfo=TZ)
    write(l, lambda: l.visit(l.plate(), 60, fee_fen=300))  # in yesterday before midnight, out and paid today
    l.clock = datetime(2026, 12, 7, 7, 0, tzinfo=TZ)
    write(l, lambda: fill_day(l))
    status, s = await get(client, "/console/shift")
    assert status == 200 and (s["from"], s["to"]) == ("2026-12-07 00:00:00", "2026-12-07 18:00:00")
    assert (s["entries"], s["exits"], s["releases"]) == (4, 5, 1)
    money = {m["method"]: (m["count"], m["amount_fen"]) for m in s["money"]}
    assert money == {"cash": (4, 1900), "xft:wallet": (2, 1700)}
    assert s["operators"] == [{"operator": "console:wang", "releases": 1, "paid_fen": 600, "short_fen": 300,
                               "over_fen": 0}]
    assert (s["short_fen"], s["over_fen"]) == (300, 0)
    _, y = await get(client, "/console/shift", day="2026-12-06")
    assert (y["entries"], y["exits"], y["money_fen"]) == (1, 0, 0)
    _, named = await get(client, "/console/shift", day="yesterday")
    assert named == y and named["to"] == "2026-12-07 00:00:00"
    _, y = await get(client, "/console/shift", **{"from": "2026-12-06 21:00", "to": "2026-12-07 06:00"})
    assert (y["entries"], y["exits"], y["money_fen"]) == (1, 1, 300)

    r = await client.get("/console/shift.csv")
    raw = await r.read()
    assert raw.startswith(b"\xef\xbb\xbf") and "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["分类", "项目", "笔数", "金额(元)", "少收(元)", "多收(元)"]
    assert ["收费方式", "cash", "4", "19.00", "", ""] in rows
    assert ["操作员", "console:wang", "1", "6.00", "3.00", "0.00"] in rows
    assert ["汇总", "少收/多收", "", "", "3.00", "0.00"] in rows


# --- settlements and refunds ---------------------------------------------------------------------------------------
async def test_running_settlements_and_late_payments_flagged_for_refund(console, lot):
    client, _ = console
    _, l = lot
    ids = {}

    def fill():
        at = datetime(2026, 12, 7, 10, 0, tzinfo=TZ)
        ids["waiting"] = l.record(EXIT, "exit", "粤B55555", at, "awaiting_payment", due_fen=700)
        l.insert("settlements", {"record_id": ids["waiting"], "lane_id": EXIT, "exit_order": "{}",
                                 "status": "open", "created_at": at.isoformat()})
        for provider, status in (("bolink", "failed"), ("xft", "pending")):
            l.insert("payment_attempts", {"record_id": ids["waiting"], "lane_id": EXIT, "provider": provider,
                                          "order_ref": f"{provider}-1", "amount_fen": 700, "status": status,
                                          "created_at": at.isoformat(), "created_ts": at.timestamp(),
                                          "updated_at": at.isoformat()})
        # the car left by cash; its bolink charge is still being reconciled
        ids["left"] = l.record(EXIT, "exit", "粤B66666", at, "released", due_fen=500, operator="console:li")
        l.insert("payment_attempts", {"record_id": ids["left"], "lane_id": EXIT, "provider": "bolink",
                                      "order_ref": "bolink-2", "amount_fen": 500, "status": "fallback",
                                      "created_at": at.isoformat(), "created_ts": at.timestamp() + 1,
                                      "updated_at": at.isoformat()})
        # paid after the car left by cash: for refund
        l.pay(ids["left"], EXIT, 500, "cash", at, reference="console:li")
        l.pay(ids["left"], EXIT, 500, "bolink:wallet", at + timedelta(minutes=3), reference="BL-9", flag="late")
        # a second payment for one charge: for refund
        ids["paid"] = l.record(EXIT, "exit", "粤B77777", at, "paid", due_fen=0, paid_fen=800)
        l.pay(ids["paid"], EXIT, 800, "xft:wallet", at, reference="XFT-1")
        l.pay(ids["paid"], EXIT, 800, "xft:wallet", at + timedelta(minutes=5), reference="XFT-2", flag="late")
    write(l, fill)
    status, body = await get(client, "/console/settlements")
    assert status == 200
    running = [(r["plate"], r["provider"], r["status"], r["car_waiting"]) for r in body["settling"]]
    assert running == [("粤B55555", "bolink", "failed", True), ("粤B55555", "xft", "pending", True),
                       ("粤B66666", "bolink", "fallback", False)]
    assert body["settling"][0]["since"] == "2026-12-07 10:00:00" and body["settling"][0]["lane_name"] == "东门出口"
    refunds = [(r["plate"], r["provider"], r["trade_no"], r["amount_fen"], r["why"], r["at"])
               for r in body["for_refund"]]
    assert refunds == [("粤B77777", "xft", "XFT-2", 800, "second_payment", "2026-12-07 10:05:00"),
                       ("粤B66666", "bolink", "BL-9", 500, "after_exit", "2026-12-07 10:03:00")]


# --- the outbox ----------------------------------------------------------------------------------------------------
async def test_the_outbox_per_destination_with_depth_age_and_last_error(console, lot):
    client, relay = console
    _, l = lot

    def fill():
        for i, at in enumerate((NOW - timedelta(minutes=30), NOW - timedelta(minutes=10))):
            l.insert("outbox", {"destination": "webhook", "kind": "exit", "key": f"exit:{i}", "payload": "{}",
                                "created_at": at.isoformat(), "next_at": at.timestamp(), "attempts": 3 - i,
                                "last_error": "HTTP 502" if i == 0 else ""})
        l.insert("outbox", {"destination": "webhook", "kind": "exit", "key": "exit:dead", "payload": "{}",
                            "created_at": NOW.isoformat(), "status": "dead"})
    write(l, fill)
    relay.st = {"webhook": {"sent": 12, "rejected": 1, "last_error": "HTTP 502 Bad Gateway",
                            "failing_since": NOW - timedelta(minutes=29)},
                "bolink": {"sent": 4, "rejected": 0, "last_error": "", "failing_since": None}}
    status, body = await get(client, "/console/outbox")
    assert status == 200
    hook = body["destinations"]["webhook"]
    assert (hook["pending"], hook["dead"], hook["oldest_age_s"]) == (2, 1, 1800)
    assert hook["oldest_at"] == "2026-12-07 17:30:00" and hook["last_error"] == "HTTP 502 Bad Gateway"
    assert hook["failing_since"] == "2026-12-07 17:31:00" and hook["sent"] == 12
    assert body["destinations"]["bolink"] == {"pending": 0, "dead": 0, "oldest_at": "", "oldest_age_s": None,
                                              "last_error": "", "failing_since": "", "sent": 4, "rejected": 0}


# --- the reader path -----------------------------------------------------------------------------------------------
async def test_reads_answer_while_the_writer_thread_is_busy_and_cannot_write(console, lot):
    client, _ = console
    store, l = lot
    write(l, lambda: l.record(ENTRY, "entry", "粤B12345", datetime(2026, 12, 7, 9, 0, tzinfo=TZ), "inside"))
    held, release = threading.Event(), threading.Event()

    def hold_the_writer() -> None:
        held.set()
        release.wait(10)
    writer = asyncio.get_running_loop().run_in_executor(store.uow.pool, hold_the_writer)
    try:
        assert await asyncio.to_thread(held.wait, 5)
        status, body = await asyncio.wait_for(get(client, "/console/records", plate="12345"), 5)
        assert status == 200 and len(body["records"]) == 1
    finally:
        release.set()
        await writer
    # the reader's connection is query-only: a GET can never change a row
    assert await store.reads._run(lambda conn: conn.execute("PRAGMA query_only").fetchone()[0]) == 1


# --- in the daemon -------------------------------------------------------------------------------------------------
async def test_the_daemon_serves_the_tab_on_the_lan_face_only_reading_what_its_lanes_wrote(tmp_path):
    """App._console wires the routes to the store's reader: a car entering through a lane is found, in lot time;
    the public face answers 404 for every route of the tab."""
    import aiohttp

    from lanectl.config import load_config
    from lanectl.core.events import PlateRead
    from tests.daemon import fake_device_daemon
    from tests.fakes import FakeClock, FakeLaneDevices
    from tests.minimal_site import write_minimal_config

    etc = write_minimal_config(tmp_path, console={"enabled": True}, housekeeping={"enabled": False})
    write_users(etc / "console-users.yaml", {"wang": User("wang", "operator", hash_password("wang-pass-1", n=1024))})
    clock, devices = FakeClock(), FakeLaneDevices()
    async with fake_device_daemon(load_config(etc), clock, devices) as app:
        assert app.lan is not None
        lan, public = f"http://127.0.0.1:{app.lan.port}", f"http://127.0.0.1:{app.http.port}"
        app.runners["in1"].emit(PlateRead("粤B12345", "blue", 95, "in1-camera"))
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # an IP address
            for path in ("/console/records", "/console/records.csv", "/console/shift", "/console/outbox"):
                async with http.get(public + path) as r:
                    assert r.status == 404, path
            async with http.post(f"{lan}/console/login", json={"user": "wang", "password": "wang-pass-1"}) as r:
                assert r.status == 200
            for _ in range(100):  # the lane's commit, then the reader sees it (WAL): no fixed sleep
                async with http.get(f"{lan}/console/records", params={"plate": "12345"}) as r:
                    body = await r.json()
                if body["records"]:
                    break
                await asyncio.sleep(0.02)
            (row,) = body["records"]
            assert row["lane"] == "in1" and row["at"] == clock.now().strftime("%Y-%m-%d %H:%M:%S")
            assert body["lanes"] == {lane.id: lane.name or lane.id for lane in app.config.lanes}
            async with http.get(f"{lan}/console/outbox") as r:
                assert r.status == 200 and "destinations" in await r.json()


async def test_a_database_that_cannot_be_read_is_a_503_json_not_a_traceback(console, lot, monkeypatch):
    from lanectl.service.ports import StorageUnavailable
    client, _ = console
    store, _ = lot

    async def unreadable(*args, **kwargs):
        raise StorageUnavailable("disk I/O error")
    monkeypatch.setattr(store.reads, "search_records", unreadable)
    status, body = await get(client, "/console/records")
    assert status == 503 and body["error"] == "storage_unavailable" and "disk I/O error" in body["message"]
