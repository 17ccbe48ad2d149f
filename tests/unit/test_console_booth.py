"""The console's refuse / correct / admit routes (console/booth.py) on aiohttp's test server: a session and its
CSRF token are needed (any role), the action reaches the app as console:<user> with the car the page showed,
the lane's outcome comes back as JSON (also when it did nothing), bad input is a 400 JSON, never a 500; a
release may name its car too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lanectl.adapters.console.accounts import Accounts, User, hash_password, write_users
from lanectl.adapters.console.live import LiveFeed
from lanectl.adapters.console.server import ConsoleServer
from lanectl.adapters.console.sessions import LoginLimiter, Sessions
from lanectl.adapters.control_socket import ControlError
from tests.unit.test_console_server import Ticks


class Lanes:
    """The App's side: the first action on a car does it, the next is told another operator was first."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def view(self, lane: str) -> dict[str, Any]:
        return {"lane": lane, "phase": "awaiting_payment", "car": {"record_id": "out1_1", "plate": "粤B8234S"}}

    async def open_barrier(self, **kw: Any) -> dict:
        self.asked.append({"action": "release", **kw})
        return {"lane": kw["lane"], "outcome": "car_gone", "opened": False,
                "message": "that car was already refused by console:wang"}

    async def booth_action(self, action: str, **kw: Any) -> dict:
        if kw["lane"] != "out1":
            raise ControlError("unknown_lane", f"no lane {kw['lane']!r}", 404)
        if kw.get("plate") == "hello":
            raise ControlError("invalid", "not a plate: 'hello'", 400)
        first = not self.asked
        self.asked.append({"action": action, **kw})
        return {"lane": "out1", "action": action, "outcome": "refused" if first else "car_gone", "done": first,
                "message": "" if first else "that car was already refused by console:wang"}


@pytest.fixture
async def console(tmp_path: Path):
    path = tmp_path / "users.yaml"
    write_users(path, {"wang": User("wang", "operator", hash_password("wang-pass-1", n=2 ** 10))})
    ticks, lanes = Ticks(), Lanes()
    server = ConsoleServer(Accounts(path), Sessions(15 * 60, ticks), LoginLimiter(5, 60, ticks),
                           LiveFeed(["out1"], lanes.view), lanes)
    app = web.Application()
    server.add_routes(app.router)
    async with TestClient(TestServer(app)) as client:
        r = await client.post("/console/login", json={"user": "wang", "password": "wang-pass-1"})
        yield client, (await r.json())["csrf"], lanes


async def post(client: TestClient, path: str, body: Any, csrf: str | None) -> tuple[int, dict]:
    r = await client.post(path, json=body, headers={"X-CSRF-Token": csrf} if csrf else {})
    return r.status, await r.json()


@pytest.mark.parametrize("action, body", [("refuse", {"reason": "逃费"}), ("correct", {"plate": "粤B82345"}),
                                          ("admit", {"reason": "访客", "plate": "粤B82345"})])
async def test_each_action_needs_a_session_and_the_csrf_token(console, action, body):
    client, csrf, lanes = console
    path = f"/console/lanes/out1/{action}"
    status, data = await post(client, path, body, None)
    assert status == 403 and data["error"] == "csrf" and not lanes.asked
    client.session.cookie_jar.clear()
    status, data = await post(client, path, body, csrf)
    assert status == 401 and not lanes.asked


async def test_a_refusal_reaches_the_lane_as_the_console_user_and_a_second_one_is_told_why(console):
    client, csrf, lanes = console
    body = {"reason": " 逃费嫌疑 ", "record_id": "out1_1"}
    status, data = await post(client, "/console/lanes/out1/refuse", body, csrf)
    assert status == 200 and data["outcome"] == "refused" and data["done"] is True
    assert lanes.asked == [{"action": "refuse", "lane": "out1", "operator": "console:wang", "reason": "逃费嫌疑",
                            "record_id": "out1_1"}]
    status, data = await post(client, "/console/lanes/out1/refuse", body, csrf)
    assert status == 200 and data["outcome"] == "car_gone" and "console:wang" in data["message"]


async def test_a_correction_and_an_admit_pass_their_plate(console):
    client, csrf, lanes = console
    await post(client, "/console/lanes/out1/correct", {"plate": "粤B82345"}, csrf)
    await post(client, "/console/lanes/out1/admit", {"reason": "访客", "plate": ""}, csrf)
    assert lanes.asked == [{"action": "correct", "lane": "out1", "operator": "console:wang", "plate": "粤B82345"},
                           {"action": "admit", "lane": "out1", "operator": "console:wang", "reason": "访客"}]


@pytest.mark.parametrize("action, body, says", [
    ("refuse", {}, "reason is required"),
    ("refuse", {"reason": "   "}, "reason must be text"),
    ("refuse", {"reason": "x" * 201}, "reason must be text of 1 to 200"),
    ("refuse", {"reason": "x", "plate": "粤B1"}, "unknown field(s) plate"),
    ("correct", {"plate": 12345}, "plate must be text"),
    ("correct", {"reason": "x"}, "unknown field"),
    ("correct", {"plate": "粤B1\n"}, "control characters"),
    ("admit", {"reason": "x", "record_id": "../etc"}, "record_id is not a record id"),
    ("admit", [1, 2], "expected a JSON object"),
])
async def test_bad_input_is_a_400_json(console, action, body, says):
    client, csrf, lanes = console
    status, data = await post(client, f"/console/lanes/out1/{action}", body, csrf)
    assert status == 400 and data["error"] == "bad_request" and says in data["message"] and not lanes.asked


async def test_what_the_app_refuses_keeps_its_status_and_code(console):
    client, csrf, lanes = console
    status, data = await post(client, "/console/lanes/out1/correct", {"plate": "hello"}, csrf)
    assert (status, data["error"]) == (400, "invalid")
    status, data = await post(client, "/console/lanes/nope/refuse", {"reason": "x"}, csrf)
    assert (status, data["error"]) == (404, "unknown_lane")


async def test_a_release_may_name_the_car_the_page_showed(console):
    client, csrf, lanes = console
    status, data = await post(client, "/console/lanes/out1/release", {"reason": "cash", "record_id": "out1_1"},
                              csrf)
    assert status == 200 and data["outcome"] == "car_gone"
    assert lanes.asked[0]["record_id"] == "out1_1"
    status, data = await post(client, "/console/lanes/out1/release", {"reason": "cash", "record_id": "a b"}, csrf)
    assert status == 400 and len(lanes.asked) == 1
