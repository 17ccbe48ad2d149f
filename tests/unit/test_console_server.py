"""The console's HTTP surface (issue 18) on aiohttp's test server: no session -> 401, a POST without the CSRF
header -> 403, login lockout per user and per source, idle logout on a fake clock, roles, the SSE snapshot
and its resume, and a release handed to the lane as `console:<user>` with its outcome."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Optional

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lanectl.adapters.console.accounts import Accounts, User, hash_password, write_users
from lanectl.adapters.console.live import LiveFeed
from lanectl.adapters.console.server import COOKIE, ConsoleServer
from lanectl.adapters.console.sessions import LoginLimiter, Sessions
from lanectl.adapters.control_socket import ControlError


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lanes:
    """The App's side: lane views and releases (a second release of the same car finds the arm going up)."""

    def __init__(self) -> None:
        self.views = {"out1": {"lane": "out1", "phase": "awaiting_payment", "car": {"plate": "粤B12345",
                                                                                      "due_fen": 700}}}
        self.released: list[dict[str, Any]] = []

    def view(self, lane: str) -> dict[str, Any]:
        return dict(self.views[lane])

    async def open_barrier(self, *, lane: str, operator: str, reason: str, amount_fen: Optional[int]) -> dict:
        if lane not in self.views:
            raise ControlError("unknown_lane", f"no lane {lane!r}", 404)
        outcome = "already_opening" if self.released else "released"
        self.released.append({"lane": lane, "operator": operator, "reason": reason, "amount_fen": amount_fen})
        return {"lane": lane, "outcome": outcome, "opened": outcome == "released", "message": ""}


@pytest.fixture
async def console(tmp_path: Path):
    path = tmp_path / "users.yaml"
    write_users(path, {"wang": User("wang", "operator", hash_password("wang-pass-1", n=2 ** 10)),
                       "li": User("li", "supervisor", hash_password("li-pass-11", n=2 ** 10))})
    ticks, lanes = Ticks(), Lanes()
    feed = LiveFeed(["out1"], lanes.view)
    server = ConsoleServer(Accounts(path), Sessions(15 * 60, ticks), LoginLimiter(5, 60, ticks), feed, lanes)
    app = web.Application()
    server.add_routes(app.router)
    async with TestClient(TestServer(app)) as client:
        yield client, ticks, lanes, feed, path


async def login(client: TestClient, user: str = "wang", password: str = "wang-pass-1") -> tuple[int, dict]:
    r = await client.post("/console/login", json={"user": user, "password": password})
    return r.status, await r.json()


async def test_nothing_without_a_session(console):
    client, *_ = console
    for method, path in (("GET", "/console/session"), ("GET", "/console/events"), ("POST", "/console/touch"),
                         ("POST", "/console/lanes/out1/release"), ("GET", "/console/sessions")):
        r = await client.request(method, path, json={"reason": "x"})
        assert r.status == 401 and (await r.json())["error"] == "no_session", path
    r = await client.get("/console/")  # the page itself (its login form) is served
    assert r.status == 200 and "text/html" in r.headers["Content-Type"]


async def test_login_sets_a_strict_httponly_cookie_and_every_post_needs_the_csrf_token(console):
    client, _, lanes, *_ = console
    r = await client.post("/console/login", json={"user": "wang", "password": "wang-pass-1"})
    assert r.status == 200
    cookie = r.headers["Set-Cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    csrf = (await r.json())["csrf"]
    r = await client.post("/console/lanes/out1/release", json={"reason": "cash"})
    assert r.status == 403 and (await r.json())["error"] == "csrf"
    r = await client.post("/console/lanes/out1/release", json={"reason": "cash"}, headers={"X-CSRF-Token": "no"})
    assert r.status == 403 and not lanes.released
    r = await client.post("/console/lanes/out1/release", json={"reason": "cash", "amount_fen": 500},
                          headers={"X-CSRF-Token": csrf})
    assert r.status == 200 and (await r.json())["outcome"] == "released"
    assert lanes.released == [{"lane": "out1", "operator": "console:wang", "reason": "cash", "amount_fen": 500}]
    # the second operator on the same car is told the arm is already going up
    r = await client.post("/console/lanes/out1/release", json={"reason": "cash"}, headers={"X-CSRF-Token": csrf})
    assert (await r.json())["outcome"] == "already_opening"


@pytest.mark.parametrize("body,says", [({}, "reason"), ({"reason": "  "}, "reason"),
                                       ({"reason": "x", "amount_fen": -1}, "amount_fen"),
                                       ({"reason": "x", "amount_fen": 12.5}, "amount_fen"),
                                       ({"reason": "x", "amount_fen": True}, "amount_fen")])
async def test_a_bad_release_is_a_400_naming_the_field(console, body, says):
    client, _, lanes, *_ = console
    _, who = await login(client)
    r = await client.post("/console/lanes/out1/release", json=body, headers={"X-CSRF-Token": who["csrf"]})
    assert r.status == 400 and says in (await r.json())["message"] and not lanes.released


async def test_an_unknown_lane_is_a_404_json(console):
    client, *_ = console
    _, who = await login(client)
    r = await client.post("/console/lanes/nope/release", json={"reason": "x"}, headers={"X-CSRF-Token": who["csrf"]})
    assert r.status == 404 and (await r.json())["error"] == "unknown_lane"


async def test_five_failures_lock_the_user_out_for_a_minute_even_with_the_right_password(console, caplog):
    client, ticks, *_ = console
    for _ in range(5):
        assert (await login(client, password="wrong-pass"))[0] == 401
    status, body = await login(client)
    assert status == 429 and body["error"] == "locked_out" and 0 < body["retry_after_s"] <= 61
    said = [r.getMessage() for r in caplog.records if "locked out" in r.getMessage()]
    assert len(said) == 1 and "user wang" in said[0] and "source 127.0.0.1" in said[0], said  # logged once
    assert (await login(client))[0] == 429  # still locked: not logged again
    assert len([r for r in caplog.records if "locked out" in r.getMessage()]) == 1
    ticks.now += 61
    assert (await login(client))[0] == 200


async def test_a_locked_source_cannot_try_other_names(console):
    client, *_ = console
    for n in range(5):
        assert (await login(client, user=f"guess{n}", password="wrong-pass"))[0] == 401
    assert (await login(client, user="li", password="li-pass-11"))[0] == 429


async def test_idle_logout_after_fifteen_minutes_without_activity(console):
    client, ticks, *_ = console
    _, who = await login(client)
    ticks.now += 14 * 60
    assert (await client.post("/console/touch", headers={"X-CSRF-Token": who["csrf"]})).status == 200
    ticks.now += 14 * 60  # 28 min since login, 14 since the last action
    assert (await client.get("/console/session")).status == 200
    ticks.now += 15 * 60 + 1
    r = await client.get("/console/session")
    assert r.status == 401 and (await r.json())["error"] == "no_session"


async def test_only_a_supervisor_lists_the_sessions(console):
    client, *_ = console
    await login(client)
    assert (await client.get("/console/sessions")).status == 403
    await login(client, "li", "li-pass-11")
    r = await client.get("/console/sessions")
    assert r.status == 200 and {s["user"] for s in (await r.json())["sessions"]} == {"wang", "li"}


async def test_a_removed_account_loses_its_session(console):
    client, _, _, _, path = console
    await login(client)
    write_users(path, {})
    assert (await client.get("/console/session")).status == 401


async def read_event(stream: Any) -> tuple[str, int, Any]:
    fields: dict[str, str] = {}
    while True:
        line = (await asyncio.wait_for(stream.readline(), 5)).decode().rstrip("\n")
        if not line:
            if fields:
                return fields["event"], int(fields["id"]), json.loads(fields["data"])
            continue
        if not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value


async def test_events_start_with_a_snapshot_then_stream_changes_and_a_reconnect_resends_the_snapshot(console):
    client, _, lanes, feed, _ = console
    await login(client)
    r = await client.get("/console/events")
    assert r.headers["Content-Type"].startswith("text/event-stream")
    kind, seq, data = await read_event(r.content)
    assert kind == "snapshot" and data["lanes"][0]["car"]["plate"] == "粤B12345" and not data["resumed"]
    lanes.views["out1"] = {"lane": "out1", "phase": "opening", "car": None}
    feed.changed("out1")
    kind, seq2, data = await read_event(r.content)
    assert kind == "lane" and seq2 == seq + 1 and data["phase"] == "opening"
    r.close()
    lanes.views["out1"] = {"lane": "out1", "phase": "idle", "car": None}
    feed.changed("out1")  # missed while away
    r = await client.get("/console/events", headers={"Last-Event-ID": str(seq2)})
    kind, seq3, data = await read_event(r.content)
    assert kind == "snapshot" and data["resumed"] and seq3 == seq2 + 1 and data["lanes"][0]["phase"] == "idle"
    r.close()


async def test_the_stream_says_logout_when_the_session_ends(console):
    client, ticks, lanes, feed, _ = console
    await login(client)
    r = await client.get("/console/events")
    await read_event(r.content)
    ticks.now += 16 * 60
    lanes.views["out1"] = {"lane": "out1", "phase": "idle", "car": None}
    feed.changed("out1")
    kind, _, _ = await read_event(r.content)
    assert kind == "logout"
    r.close()
