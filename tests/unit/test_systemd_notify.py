"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import tempfile
import uuid

import pytest

from lanectl.adapters.systemd_notify import SystemdNotifier, watchdog_interval, watchdog_loop


@pytest.fixture
def short_dir():
    d = tempfile.mkdtemp(prefix="lc-", dir="/tmp")  # unix socket paths are limited to 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def systemd_socket(short_dir):
    """(NOTIFY_SOCKET value, receiving socket) for a filesystem-path socket."""
    path = os.path.join(short_dir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


@pytest.fixture
def abstract_socket():
    name = f"lanectl-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    yield "@" + name, sock
    sock.close()


def recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def nothing_pending(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(2)
    return False


def test_messages_reach_a_path_socket(systemd_socket):
    path, sock = systemd_socket
    n = SystemdNotifier(env={"NOTIFY_SOCKET": path})
    try:
        assert n.enabled
        assert n.ready()
        assert recv(sock) == "READY=1"
        assert n.watchdog()
        assert recv(sock) == "WATCHDOG=1"
        assert n.status("3 lanes up, outbox 0")
        assert recv(sock) == "STATUS=3 lanes up, outbox 0"
        assert n.stopping()
        assert recv(sock) == "STOPPING=1"
        assert n.ready(status="ready")
        assert recv(sock) == "READY=1\nSTATUS=ready"
        assert n.extend_timeout(5)
        assert recv(sock) == "EXTEND_TIMEOUT_USEC=5000000"
    finally:
        n.close()


def test_status_is_one_line_and_utf8(systemd_socket):
    path, sock = systemd_socket
    n = SystemdNotifier(path)
    try:
        n.status("lane 入口1\nfaulted:  barrier timeout")
        assert recv(sock) == "STATUS=lane 入口1 faulted: barrier timeout"
    finally:
        n.close()


def test_abstract_namespace(abstract_socket):
    name, sock = abstract_socket
    n = SystemdNotifier(env={"NOTIFY_SOCKET": name})
    try:
        assert n.ready()
        assert recv(sock) == "READY=1"
        assert n.watchdog()
        assert recv(sock) == "WATCHDOG=1"
    finally:
        n.close()


def test_reads_environment_by_default(systemd_socket, monkeypatch):
    path, sock = systemd_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = SystemdNotifier()
    try:
        assert n.ready()
        assert recv(sock) == "READY=1"
    finally:
        n.close()


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}])
def test_no_op_outside_systemd(env):
    n = SystemdNotifier(env=env)
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    assert n.status("x") is False
    assert n.stopping() is False
    n.close()


def test_missing_socket_is_logged_once_and_never_raises(short_dir, caplog):
    path = os.path.join(short_dir, "gone")
    n = SystemdNotifier(path)
    with caplog.at_level(logging.WARNING, logger="lanectl.adapters.systemd_notify"):
        assert n.watchdog() is False
        assert n.watchdog() is False
        assert n.ready() is False
    assert len([r for r in caplog.records if "failing" in r.getMessage()]) == 1
    n.close()


def test_bad_assignment_is_a_programming_error(systemd_socket):
    n = SystemdNotifier(systemd_socket[0])
    with pytest.raises(ValueError):
        n.notify("READY")
    with pytest.raises(ValueError):
        n.notify("STATUS=a\nREADY=1")
    n.close()


# ------------------------------------------------------------------------------------------------ watchdog_interval


def test_watchdog_interval_is_half_the_period():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "42"}, pid=42) == 0.5


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WATCHDOG_USEC": ""},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-5"},
        {"WATCHDOG_USEC": "soon"},
        {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},  # meant for another process
        {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"},
    ],
)
def test_watchdog_interval_off(env):
    assert watchdog_interval(env) is None


def test_watchdog_interval_reads_environment(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None


# ----------------------------------------------------------------------------------------------------- watchdog_loop


class ScriptedSleep:
    """Stands in for asyncio.sleep: records intervals, runs a hook per tick, cancels the loop after `ticks`."""

    def __init__(self, ticks: int, on_tick=None) -> None:
        self.ticks = ticks
        self.on_tick = on_tick
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.on_tick:
            self.on_tick(len(self.calls))
        if len(self.calls) >= self.ticks:
            raise asyncio.CancelledError


def drain(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2)
    return out


async def test_watchdog_loop_pings_only_while_healthy(systemd_socket, caplog):
    path, sock = systemd_socket
    n = SystemdNotifier(path)
    healthy = {"ok": True}

    def flip(tick: int) -> None:
        # healthy for ticks 0-1, unhealthy for 2-3, healthy again from 4
        healthy["ok"] = tick not in (2, 3)

    sleep = ScriptedSleep(ticks=6, on_tick=flip)
    with caplog.at_level(logging.INFO, logger="lanectl.adapters.systemd_notify"):
        with pytest.raises(asyncio.CancelledError):
            await watchdog_loop(n, lambda: healthy["ok"], interval=15.0, sleep=sleep)
    n.close()

    assert sleep.calls == [15.0] * 6
    got = drain(sock)
    assert got == [
        "WATCHDOG=1",  # tick 0
        "WATCHDOG=1",  # after sleep 1
        "STATUS=unhealthy: health check failed; watchdog pings withheld",  # after sleep 2
        # after sleep 3: still unhealthy, nothing sent, nothing logged again
        "WATCHDOG=1",  # after sleep 4
        "STATUS=running",
        "WATCHDOG=1",  # after sleep 5
    ]
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("withholding" in m for m in msgs) == 1
    assert sum("resumed" in m for m in msgs) == 1


async def test_watchdog_loop_health_that_raises_counts_as_unhealthy(systemd_socket):
    path, sock = systemd_socket
    n = SystemdNotifier(path)

    def broken() -> bool:
        raise RuntimeError("lane task died")

    with pytest.raises(asyncio.CancelledError):
        await watchdog_loop(n, broken, interval=1.0, sleep=ScriptedSleep(ticks=3))
    n.close()
    got = drain(sock)
    assert "WATCHDOG=1" not in got
    assert got == ["STATUS=unhealthy: health check raised RuntimeError: lane task died; watchdog pings withheld"]


async def test_watchdog_loop_returns_without_watchdog(systemd_socket, monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    n = SystemdNotifier(systemd_socket[0])
    sleep = ScriptedSleep(ticks=1)
    await asyncio.wait_for(watchdog_loop(n, lambda: True, sleep=sleep), 1)
    assert sleep.calls == []
    # and without a notify socket, even with a watchdog period
    await asyncio.wait_for(watchdog_loop(SystemdNotifier(env={}), lambda: True, interval=1, sleep=sleep), 1)
    assert sleep.calls == []
    n.close()
    assert nothing_pending(systemd_socket[1])


async def test_watchdog_loop_uses_environment_interval(abstract_socket, monkeypatch):
    name, sock = abstract_socket
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = SystemdNotifier(env={"NOTIFY_SOCKET": name})
    sleep = ScriptedSleep(ticks=2)
    with pytest.raises(asyncio.CancelledError):
        await watchdog_loop(n, lambda: True, sleep=sleep)
    n.close()
    assert sleep.calls == [15.0, 15.0]
    assert drain(sock) == ["WATCHDOG=1", "WATCHDOG=1"]


async def test_watchdog_loop_with_real_sleep_is_cancellable(systemd_socket):
    path, sock = systemd_socket
    n = SystemdNotifier(path)
    task = asyncio.create_task(watchdog_loop(n, lambda: True, interval=0.01))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    n.close()
    assert len(drain(sock)) >= 2
