"""The control socket over a real unix socket: server routes and validation, socket file life cycle,
permissions, and the client's errors. The app is a fake that records what it was asked."""

from __future__ import annotations

import asyncio
import datetime as dt
import grp
import json
import logging
import os
import pathlib
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap

import aiohttp
import pytest

from lanectl.adapters.control_socket import (
    MAX_SOCKET_PATH_BYTES,
    ControlError,
    ControlServer,
    ControlSocketError,
)
from lanectl.adapters.control_client import (
    ControlClient,
    ControlClientError,
    DaemonNotRunning,
    PermissionDenied,
)
from lanectl.adapters.control_client import ControlError as ClientControlError

CST = dt.timezone(dt.timedelta(hours=8))
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


class FakeApp:
    """Implements ControlHandlers; remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.deadlines: list[float | None] = []
        self.uids: list[int | None] = []  # the caller's uid each open / top-up was handed (from the kernel)
        self.release = asyncio.Event()

    async def status(self) -> dict:
        self.calls.append(("status", {}))
        return {
            "version": "0.1.0",
            "started_at": dt.datetime(2024, 5, 1, 8, 0, tzinfo=CST),
            "lanes": {"IN1": {"state": "idle", "barrier": "closed"}},
        }

    async def records(self, *, plate, lane, since, until, limit) -> list[dict]:
        self.calls.append(("records", dict(plate=plate, lane=lane, since=since, until=until, limit=limit)))
        return [
            {
                "record_id": "IN1_20240501080000_1",
                "plate": "京A12345",
                "lane": "IN1",
                "entered_at": dt.datetime(2024, 5, 1, 8, 0, tzinfo=CST),
                "fee_fen": 500,
            }
        ]

    async def outbox(self, *, limit) -> dict:
        self.calls.append(("outbox", dict(limit=limit)))
        return {"pending": [{"id": 1, "destination": "bolink", "attempts": 3}], "destinations": {"bolink": "down"}}

    async def open_barrier(self, *, lane, operator, reason, amount_fen, deadline=None, operator_uid=None) -> dict:
        self.calls.append(("open_barrier", dict(lane=lane, operator=operator, reason=reason, amount_fen=amount_fen)))
        self.deadlines.append(deadline)
        self.uids.append(operator_uid)
        if lane == "NOPE":
            raise ControlError("unknown_lane", "no lane NOPE on this PC", 404)
        if lane == "F1":
            raise ControlError("lane_faulted", "lane F1 is faulted: barrier does not answer")
        if lane == "BOOM":
            raise RuntimeError("secret internal detail")
        if lane == "SLOW":
            await self.release.wait()
        return {"lane": lane, "queued": True}

    async def balances(self, *, plate, limit) -> dict:
        self.calls.append(("balances", dict(plate=plate, limit=limit)))
        return {"balances": {"粤B77777": 4300}, "moves": []}

    async def topup(self, *, plate, amount_fen, operator, reason, operator_uid=None) -> dict:
        self.calls.append(("topup", dict(plate=plate, amount_fen=amount_fen, operator=operator, reason=reason)))
        self.uids.append(operator_uid)
        return {"plate": plate, "amount_fen": amount_fen, "balance_fen": 4300 + amount_fen}

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


@pytest.fixture
def short_dir():
    d = tempfile.mkdtemp(prefix="lc-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def app() -> FakeApp:
    return FakeApp()


@pytest.fixture
async def server(short_dir, app):
    path = os.path.join(short_dir, "control.sock")
    srv = ControlServer(path, app)
    await srv.start()
    yield srv
    app.release.set()
    await srv.stop()


@pytest.fixture
def client(server) -> ControlClient:
    return ControlClient(server.path, timeout=5)


@pytest.fixture
async def raw(server):
    """A plain aiohttp session on the socket, to look at status codes and bodies as sent."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=server.path)) as session:
        yield session


async def fetch(session: aiohttp.ClientSession, method: str, route: str, **kw) -> tuple[int, dict]:
    async with session.request(method, "http://lanectl" + route, **kw) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


# ----------------------------------------------------------------------------------------------------- routes


async def test_status(client, app):
    answer = await client.status()
    assert answer == {
        "version": "0.1.0",
        "started_at": "2024-05-01T08:00:00+08:00",
        "lanes": {"IN1": {"state": "idle", "barrier": "closed"}},
    }
    assert app.names() == ["status"]


async def test_records_passes_typed_filters(client, app):
    rows = await client.records(
        plate=" 京a·12345 ",
        lane="IN1",
        since=dt.datetime(2024, 5, 1, 0, 0, tzinfo=CST),
        until="2024-05-02T00:00:00Z",
        limit=20,
    )
    assert rows[0]["record_id"] == "IN1_20240501080000_1"
    assert rows[0]["entered_at"] == "2024-05-01T08:00:00+08:00"
    assert rows[0]["plate"] == "京A12345"
    (name, kw), = app.calls
    assert name == "records"
    assert kw["plate"] == "京A12345"  # normalized once, at the edge
    assert kw["lane"] == "IN1"
    assert kw["since"] == dt.datetime(2024, 5, 1, 0, 0, tzinfo=CST)
    assert kw["until"] == dt.datetime(2024, 5, 2, 0, 0, tzinfo=dt.UTC)
    assert kw["until"].tzinfo is not None
    assert kw["limit"] == 20


async def test_records_defaults_and_naive_time_is_local(client, app):
    await client.records()
    await client.records(since=dt.date(2024, 5, 1))
    first, second = (kw for _, kw in app.calls)
    assert first == {"plate": None, "lane": None, "since": None, "until": None, "limit": 50}
    since = second["since"]
    assert since.tzinfo is not None
    assert since == dt.datetime(2024, 5, 1).astimezone()


async def test_records_count_in_wire_answer(raw):
    status, body = await fetch(raw, "GET", "/records", params={"limit": "5"})
    assert status == 200
    assert body["count"] == 1 and len(body["records"]) == 1


async def test_outbox(client, app):
    answer = await client.outbox()
    assert answer["destinations"] == {"bolink": "down"}
    assert answer["pending"][0]["attempts"] == 3
    await client.outbox(limit=7)
    assert [kw for _, kw in app.calls] == [{"limit": 100}, {"limit": 7}]


async def test_open(client, app):
    answer = await client.open_barrier(lane="IN1", operator="  张三 ", reason=" 访客，无牌  ", amount_fen=500)
    assert answer == {"lane": "IN1", "queued": True}
    assert app.calls == [
        ("open_barrier", {"lane": "IN1", "operator": "张三", "reason": "访客，无牌", "amount_fen": 500})
    ]


async def test_open_without_amount_and_zero_amount(client, app):
    await client.open_barrier(lane="IN1", operator="li", reason="stuck ticket")
    await client.open_barrier(lane="IN1", operator="li", reason="free exit", amount_fen=0)
    assert [kw["amount_fen"] for _, kw in app.calls] == [None, 0]


async def test_handler_control_errors_keep_their_status(client, raw, app):
    with pytest.raises(ClientControlError) as info:
        await client.open_barrier(lane="NOPE", operator="li", reason="test")
    assert info.value.code == "unknown_lane"
    assert info.value.http_status == 404
    assert "no lane NOPE" in str(info.value)
    assert isinstance(info.value, ControlError)  # the server-side class catches it too
    assert isinstance(info.value, ControlClientError)

    status, body = await fetch(raw, "POST", "/open", json={"lane": "F1", "operator": "li", "reason": "x"})
    assert status == 409
    assert body == {"error": "lane_faulted", "message": "lane F1 is faulted: barrier does not answer"}


async def test_unexpected_error_is_a_short_500_and_logged(raw, caplog):
    with caplog.at_level(logging.ERROR, logger="lanectl.adapters.control_socket"):
        status, body = await fetch(raw, "POST", "/open", json={"lane": "BOOM", "operator": "li", "reason": "x"})
    assert status == 500
    assert body["error"] == "internal"
    assert "secret" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "secret internal detail" in str(logged[0].exc_info[1])


async def test_unknown_route_and_method_are_json(raw):
    status, body = await fetch(raw, "GET", "/nothing")
    assert (status, body["error"]) == (404, "not_found")
    status, body = await fetch(raw, "GET", "/open")
    assert (status, body["error"]) == (405, "method_not_allowed")
    status, body = await fetch(raw, "DELETE", "/records")
    assert (status, body["error"]) == (405, "method_not_allowed")


# ------------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"since": "yesterday"}, "bad_datetime"),
        ({"until": "2024-13-01"}, "bad_datetime"),
        ({"since": ""}, "bad_datetime"),
        ({"since": "2024-05-02", "until": "2024-05-01"}, "bad_range"),
        ({"limit": "0"}, "bad_limit"),
        ({"limit": "1001"}, "bad_limit"),
        ({"limit": "-1"}, "bad_limit"),
        ({"limit": "ten"}, "bad_limit"),
        ({"limit": "1.5"}, "bad_limit"),
        ({"limit": "１０"}, "bad_limit"),  # full-width digits
        ({"lane": ""}, "bad_lane"),
        ({"lane": "IN-1;drop"}, "bad_lane"),
        ({"plate": ""}, "bad_plate"),
        ({"plate": "无牌车"}, "bad_plate"),
        ({"plate": "A" * 40}, "bad_plate"),
        ({"plates": "京A12345"}, "unknown_field"),
        ([("lane", "IN1"), ("lane", "IN2")], "bad_request"),
    ],
)
async def test_records_validation(raw, app, params, code):
    status, body = await fetch(raw, "GET", "/records", params=params)
    assert status == 400, body
    assert body["error"] == code
    assert body["message"]
    assert app.calls == []


async def test_outbox_and_status_validation(raw, app):
    status, body = await fetch(raw, "GET", "/outbox", params={"limit": "0"})
    assert (status, body["error"]) == (400, "bad_limit")
    status, body = await fetch(raw, "GET", "/outbox", params={"lmit": "5"})
    assert (status, body["error"]) == (400, "unknown_field")
    assert "lmit" in body["message"]
    status, body = await fetch(raw, "GET", "/status", params={"verbose": "1"})
    assert (status, body["error"]) == (400, "unknown_field")
    assert app.calls == []


GOOD = {"lane": "IN1", "operator": "li", "reason": "stuck ticket"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({**GOOD, "operator": ""}, "bad_operator"),
        ({**GOOD, "operator": "   "}, "bad_operator"),
        ({**GOOD, "operator": 7}, "bad_operator"),
        ({**GOOD, "operator": "a" * 65}, "bad_operator"),
        ({**GOOD, "operator": "li\nforged log line"}, "bad_operator"),
        ({**GOOD, "reason": ""}, "bad_reason"),
        ({**GOOD, "reason": " \t "}, "bad_reason"),
        ({"lane": "IN1", "operator": "li"}, "missing_field"),
        ({"operator": "li", "reason": "x"}, "missing_field"),
        ({**GOOD, "lane": ""}, "bad_lane"),
        ({**GOOD, "lane": 1}, "bad_lane"),
        ({**GOOD, "amount_fen": -1}, "bad_amount"),
        ({**GOOD, "amount_fen": 5.0}, "bad_amount"),
        ({**GOOD, "amount_fen": "500"}, "bad_amount"),
        ({**GOOD, "amount_fen": True}, "bad_amount"),
        ({**GOOD, "amount_fen": 10**12}, "bad_amount"),
        ({**GOOD, "force": True}, "unknown_field"),
        ({**GOOD, "amount": 500}, "unknown_field"),
        (["IN1", "li", "x"], "bad_request"),
    ],
)
async def test_open_validation(raw, app, body, code):
    status, answer = await fetch(raw, "POST", "/open", json=body)
    assert status == 400, answer
    assert answer["error"] == code
    assert answer["message"]
    assert app.calls == []


@pytest.mark.parametrize(
    ("data", "headers", "code"),
    [
        (b"{not json", {"Content-Type": "application/json"}, "bad_json"),
        (b"\xff\xfe{}", {"Content-Type": "application/json"}, "bad_json"),
        (b'{"lane": "IN1", "lane": "IN2", "operator": "li", "reason": "x"}',
         {"Content-Type": "application/json"}, "bad_json"),
        (b'{"lane": "IN1", "operator": "li", "reason": "x", "amount_fen": NaN}',
         {"Content-Type": "application/json"}, "bad_amount"),
        (json.dumps(GOOD).encode(), {"Content-Type": "text/plain"}, "bad_request"),
    ],
)
async def test_open_body_validation(raw, app, data, headers, code):
    status, answer = await fetch(raw, "POST", "/open", data=data, headers=headers)
    assert status == 400, answer
    assert answer["error"] == code
    assert app.calls == []


async def test_open_body_too_large(raw, app):
    big = {**GOOD, "reason": "x" * 100_000}
    status, answer = await fetch(raw, "POST", "/open", json=big)
    assert status == 413
    assert answer["error"] == "too_large"
    assert app.calls == []


# ------------------------------------------------------------------------------------------- socket life cycle


async def test_socket_mode_is_0660(server):
    st = os.lstat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


async def test_custom_mode_and_group(short_dir, app):
    gid = os.getegid()
    group = grp.getgrgid(gid).gr_name
    path = os.path.join(short_dir, "c.sock")
    async with ControlServer(path, app, mode=0o600, group=group):
        st = os.lstat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_gid == gid
    assert not os.path.exists(path)


async def test_unknown_group_is_refused(short_dir, app):
    path = os.path.join(short_dir, "c.sock")
    with pytest.raises(ControlSocketError, match="does not exist") as err:
        await ControlServer(path, app, group="no-such-group-lanectl").start()
    assert not os.path.exists(path)
    assert err.value.exit_code == 78  # EX_CONFIG: site control.group names no group


async def test_parent_directory_is_created_and_socket_removed_on_stop(short_dir, app):
    path = os.path.join(short_dir, "run", "lanectl", "control.sock")
    srv = ControlServer(path, app)
    await srv.start()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert await ControlClient(path).status()
    await srv.stop()
    assert not os.path.exists(path)
    await srv.stop()  # idempotent


async def test_stale_socket_is_replaced(short_dir, app):
    path = os.path.join(short_dir, "control.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # bound, never listening: what a crashed daemon leaves behind
    dead.close()
    async with ControlServer(path, app):
        assert (await ControlClient(path).status())["version"] == "0.1.0"
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660


async def test_second_server_on_a_live_socket_is_refused(server, app):
    second = ControlServer(server.path, FakeApp())
    with pytest.raises(ControlSocketError, match="already listening") as err:
        await second.start()
    assert err.value.exit_code == 75  # EX_TEMPFAIL: the other daemon may be on its way out; systemd retries
    await second.stop()  # must not remove the first server's socket
    assert (await ControlClient(server.path).status())["version"] == "0.1.0"
    assert app.names() == ["status"]


async def test_a_file_that_is_not_a_socket_is_left_alone(short_dir, app):
    path = os.path.join(short_dir, "control.sock")
    pathlib.Path(path).write_text("precious")
    with pytest.raises(ControlSocketError, match="not a socket") as err:
        await ControlServer(path, app).start()
    assert err.value.exit_code == 73 and err.value.line() == f"control socket {path}: exists and is not a " \
        "socket; refusing to replace it"
    assert pathlib.Path(path).read_text() == "precious"


async def test_stop_does_not_remove_a_socket_that_replaced_ours(short_dir, app):
    path = os.path.join(short_dir, "control.sock")
    srv = ControlServer(path, app)
    await srv.start()
    os.unlink(path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(path)
    try:
        await srv.stop()
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        other.close()


def test_too_long_path_is_refused_clearly(app):
    path = "/tmp/" + "d" * 120 + "/control.sock"
    with pytest.raises(ControlSocketError, match="longer than the 107") as err:
        ControlServer(path, app)
    assert err.value.exit_code == 78
    ok = "/tmp/" + "d" * (MAX_SOCKET_PATH_BYTES - len("/tmp/"))
    ControlServer(ok, app)  # exactly at the limit is fine


# ----------------------------------------------------------------------------------------------------- client


async def test_client_missing_socket(short_dir):
    path = os.path.join(short_dir, "control.sock")
    with pytest.raises(DaemonNotRunning) as info:
        await ControlClient(path).status()
    assert str(info.value) == f"is lanectl running? socket {path} not found"
    with pytest.raises(DaemonNotRunning):
        await ControlClient(os.path.join(short_dir, "no", "dir.sock")).records()


async def test_client_socket_nobody_listens(short_dir):
    path = os.path.join(short_dir, "control.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()
    with pytest.raises(DaemonNotRunning, match="is lanectl running"):
        await ControlClient(path).outbox()


async def test_client_too_long_path():
    with pytest.raises(ControlClientError, match="longer than"):
        await ControlClient("/tmp/" + "x" * 200).status()


async def test_client_timeout(server, app):
    slow = ControlClient(server.path, timeout=0.2)
    with pytest.raises(ControlClientError, match="did not answer"):
        await slow.open_barrier(lane="SLOW", operator="li", reason="x")
    app.release.set()


async def test_client_bad_argument_type(client):
    with pytest.raises(TypeError):
        await client.records(since=1714521600)


async def test_call_sync(server, app):
    c = ControlClient(server.path)
    # call_sync runs its own loop, so from async code it has to live in a thread (as in the CLI, no loop runs)
    status = await asyncio.to_thread(c.call_sync, "status")
    assert status["lanes"]["IN1"]["state"] == "idle"
    rows = await asyncio.to_thread(c.call_sync, "records", plate="京A12345", limit=3)
    assert rows[0]["plate"] == "京A12345"
    answer = await asyncio.to_thread(c.call_sync, "open", lane="IN1", operator="li", reason="x", amount_fen=1)
    assert answer["queued"] is True
    with pytest.raises(ClientControlError) as info:
        await asyncio.to_thread(c.call_sync, "open_barrier", lane="F1", operator="li", reason="x")
    assert info.value.code == "lane_faulted"
    with pytest.raises(ValueError, match="unknown control call"):
        c.call_sync("reboot")
    assert app.names() == ["status", "records", "open_barrier", "open_barrier"]


def test_call_sync_missing_socket_from_plain_code(short_dir):
    with pytest.raises(DaemonNotRunning):
        ControlClient(os.path.join(short_dir, "control.sock")).call_sync("status")


# ------------------------------------------------------------------------------------------------ permissions

# A child process imports the client, then drops to an unprivileged uid/gid and calls the daemon. Run as root
# (a lane PC's installer, CI containers) this exercises the kernel's real check of the socket mode and group.
_CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from lanectl.adapters.control_client import ControlClient, ControlClientError
    path, uid, gid = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    try:  # warm up every lazy import while still privileged
        ControlClient(path + ".absent").call_sync("status")
    except ControlClientError:
        pass
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    try:
        ControlClient(path).call_sync("status")
        print("OK")
    except ControlClientError as exc:
        print(type(exc).__name__, exc)
    """
)


def run_as(path: str, uid: int, gid: int) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(REPO_ROOT), path, str(uid), str(gid)],
        capture_output=True, text=True, timeout=30, cwd="/",
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_group_members_may_connect_others_are_denied(short_dir, app):
    try:
        nogroup = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no 'nogroup' group on this system")
    other_gid = 1  # 'daemon'
    os.chmod(short_dir, 0o755)  # like /run/lanectl, the directory must be traversable
    path = os.path.join(short_dir, "control.sock")
    async with ControlServer(path, app, group="nogroup"):
        member = await asyncio.to_thread(run_as, path, 65534, nogroup)
        outsider = await asyncio.to_thread(run_as, path, 65534, other_gid)
    assert member == "OK"
    assert outsider.startswith("PermissionDenied")
    assert "lanectl' group" in outsider
    assert app.names() == ["status"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file modes")
async def test_permission_denied_for_non_root(short_dir, app):
    path = os.path.join(short_dir, "control.sock")
    async with ControlServer(path, app, mode=0o000):
        with pytest.raises(PermissionDenied, match="lanectl' group"):
            await ControlClient(path).status()
    assert app.calls == []


async def test_balances_and_topup(client, app):
    assert (await client.balances(plate="粤b77777"))["balances"] == {"粤B77777": 4300}
    assert app.calls[-1] == ("balances", {"plate": "粤B77777", "limit": 50})
    answer = await client.topup(plate="粤B77777", amount_fen=1000, operator="王", reason="cash")
    assert answer["balance_fen"] == 5300
    assert app.calls[-1] == ("topup", {"plate": "粤B77777", "amount_fen": 1000, "operator": "王", "reason": "cash"})


@pytest.mark.parametrize("body, code", [
    ({"plate": "粤B77777", "amount_fen": 0, "operator": "王", "reason": "cash"}, "bad_amount"),
    ({"plate": "粤B77777", "amount_fen": 10.5, "operator": "王", "reason": "cash"}, "bad_amount"),
    ({"plate": "粤B77777", "operator": "王", "reason": "cash"}, "missing_field"),
    ({"plate": "粤B77777", "amount_fen": 100, "operator": "王"}, "missing_field"),
    ({"plate": "粤B77777", "amount_fen": 100, "operator": "王", "reason": "cash", "x": 1}, "unknown_field"),
])
async def test_topup_validation(raw, app, body, code):
    status, answer = await fetch(raw, "POST", "/topup", json=body)
    assert (status, answer["error"]) == (400, code)
    assert "topup" not in app.names()
