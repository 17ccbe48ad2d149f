"""The lane card's routes on aiohttp's test server: a record's picture only for a session, by record id (never a
path from the client; a stored path outside the images folder, a pruned file or a record without one is 404);
the stored-value top-up for a supervisor only (CSRF first), audited as console:<user>, its refusals in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lanectl.adapters.console.accounts import Accounts, User, hash_password, write_users
from lanectl.adapters.console.pictures import picture_file
from lanectl.adapters.console.live import LiveFeed
from lanectl.adapters.console.server import ConsoleServer
from lanectl.adapters.console.sessions import LoginLimiter, Sessions
from lanectl.adapters.control_socket import ControlError
from lanectl.service.ports import StorageUnavailable

JPEG = b"\xff\xd8\xff\xe0" + b"picture" * 10


class Lanes:
    """The App's side: records with pictures, and stored-value top-ups."""

    def __init__(self, images: Path, outside: Path) -> None:
        self.images: dict[str, Optional[str]] = {
            "out1_20261207080000_1": str(images / "out1" / "20261207-080000-000000_1.jpg"),
            "in1_20261207050000_1": "",  # the camera sent none
            "pruned_1": str(images / "in1" / "gone.jpg"),
            "escape_1": str(images / ".." / outside.name / "secret.jpg"),
            "notjpg_1": str(images / "out1" / "x.png"),
        }
        self.topups: list[dict[str, Any]] = []
        self.storage_down = False

    def view(self, lane: str) -> dict[str, Any]:
        return {"lane": lane, "phase": "idle", "car": None}

    async def record_image(self, record_id: str) -> Optional[str]:
        if self.storage_down:
            raise StorageUnavailable("disk full")
        return self.images.get(record_id)

    async def topup(self, *, plate: str, amount_fen: int, operator: str, reason: str) -> dict[str, Any]:
        if plate != "粤B12345":
            raise ControlError("not_stored_value", f"{plate} is not a stored-value car", 404)
        if self.storage_down:
            raise ControlError("storage_unavailable", "top-up not recorded, nothing changed", 503)
        self.topups.append({"plate": plate, "amount_fen": amount_fen, "operator": operator, "reason": reason})
        return {"plate": plate, "amount_fen": amount_fen, "balance_fen": 5000 + amount_fen, "operator": operator}


@pytest.fixture
async def console(tmp_path: Path):
    users = tmp_path / "users.yaml"
    write_users(users, {"wang": User("wang", "operator", hash_password("wang-pass-1", n=2 ** 10)),
                        "li": User("li", "supervisor", hash_password("li-pass-11", n=2 ** 10))})
    images, outside = tmp_path / "images", tmp_path / "elsewhere"
    for d in (images / "out1", images / "in1", outside):
        d.mkdir(parents=True)
    (images / "out1" / "20261207-080000-000000_1.jpg").write_bytes(JPEG)
    (images / "out1" / "x.png").write_bytes(JPEG)
    (outside / "secret.jpg").write_bytes(b"not for the booth")
    lanes, now = Lanes(images, outside), lambda: 1000.0
    server = ConsoleServer(Accounts(users), Sessions(15 * 60, now), LoginLimiter(5, 60, now),
                           LiveFeed(["out1"], lanes.view), lanes, images=images)
    app = web.Application()
    server.add_routes(app.router)
    async with TestClient(TestServer(app)) as client:
        yield client, lanes


async def login(client: TestClient, user: str, password: str) -> str:
    r = await client.post("/console/login", json={"user": user, "password": password})
    assert r.status == 200
    return (await r.json())["csrf"]


async def test_a_picture_is_served_by_record_id_to_a_session_only(console):
    client, _ = console
    path = "/console/images/out1_20261207080000_1"
    assert (await client.get(path)).status == 401
    await login(client, "wang", "wang-pass-1")
    r = await client.get(path)
    assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg" and await r.read() == JPEG


@pytest.mark.parametrize("record_id", ["in1_20261207050000_1", "pruned_1", "escape_1", "notjpg_1", "unknown_1",
                                       "..%2F..%2Fetc%2Fpasswd", "a" * 49])
async def test_no_picture_is_a_404_json_whatever_the_record_says(console, record_id):
    client, _ = console
    await login(client, "wang", "wang-pass-1")
    r = await client.get(f"/console/images/{record_id}")
    assert r.status == 404 and (await r.json())["error"] == "no_picture"


async def test_storage_down_is_a_503_not_a_traceback(console):
    client, lanes = console
    await login(client, "wang", "wang-pass-1")
    lanes.storage_down = True
    r = await client.get("/console/images/out1_20261207080000_1")
    assert r.status == 503 and (await r.json())["error"] == "storage_unavailable"


def test_picture_file_takes_only_kept_jpgs_under_the_images_folder(tmp_path: Path):
    (tmp_path / "images" / "out1").mkdir(parents=True)
    kept = tmp_path / "images" / "out1" / "a.jpg"
    kept.write_bytes(JPEG)
    (tmp_path / "b.jpg").write_bytes(JPEG)
    assert picture_file(tmp_path / "images", str(kept)) == kept.resolve()
    assert picture_file(tmp_path / "images", str(tmp_path / "images" / ".." / "b.jpg")) is None
    assert picture_file(tmp_path / "images", "") is None and picture_file(None, str(kept)) is None


async def test_an_operator_cannot_top_up_and_a_supervisor_needs_the_csrf_token(console):
    client, lanes = console
    body = {"plate": "粤B12345", "amount_fen": 5000, "reason": "充值 50 元"}
    csrf = await login(client, "wang", "wang-pass-1")
    r = await client.post("/console/topup", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status == 403 and (await r.json())["error"] == "forbidden" and not lanes.topups
    csrf = await login(client, "li", "li-pass-11")
    assert (await client.post("/console/topup", json=body)).status == 403  # no CSRF header
    r = await client.post("/console/topup", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status == 200 and (await r.json())["balance_fen"] == 10000
    assert lanes.topups == [{"plate": "粤B12345", "amount_fen": 5000, "operator": "console:li",
                             "reason": "充值 50 元"}]


@pytest.mark.parametrize("body,status,error", [
    ({"plate": "粤B99999", "amount_fen": 100, "reason": "x"}, 404, "not_stored_value"),
    ({"plate": "粤B12345", "amount_fen": 0, "reason": "x"}, 400, "bad_amount"),
    ({"plate": "粤B12345", "amount_fen": 1.5, "reason": "x"}, 400, None),
    ({"plate": "粤B12345", "amount_fen": 100}, 400, None),
    ({"plate": "粤B12345", "amount_fen": 100, "reason": "x", "operator": "boss"}, 400, "bad_request"),
])
async def test_a_refused_top_up_says_why(console, body, status, error):
    client, lanes = console
    csrf = await login(client, "li", "li-pass-11")
    r = await client.post("/console/topup", json=body, headers={"X-CSRF-Token": csrf})
    answer = await r.json()
    assert r.status == status and answer["message"] and not lanes.topups
    if error:
        assert answer["error"] == error


async def test_a_top_up_with_storage_down_is_refused_in_words(console):
    client, lanes = console
    csrf = await login(client, "li", "li-pass-11")
    lanes.storage_down = True
    r = await client.post("/console/topup", json={"plate": "粤B12345", "amount_fen": 100, "reason": "x"},
                          headers={"X-CSRF-Token": csrf})
    assert r.status == 503 and "nothing changed" in (await r.json())["message"]
