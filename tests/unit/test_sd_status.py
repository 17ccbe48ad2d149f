"""sd_notify STATUS= says how many lanes are faulted and why (issue 19: it said "2 lane(s) running" while both
lanes were faulted), and is kept current while faults come and go."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from lanectl.adapters.systemd_notify import SystemdNotifier, status_loop
from lanectl.bootstrap import build_app
from lanectl.config import load_config


def test_status_line_names_the_faulted_lanes_and_why(example_config: Path):
    app = build_app(load_config(example_config))
    app.runners = {lid: _Runner() for lid in ("east_in", "east_out")}  # type: ignore[assignment]
    assert app.status_line() == "2 lane(s) running"
    app.runners["east_in"].status.barrier_fault = "no answer from unit 1"
    app.runners["east_out"].status.barrier_fault = "arm blocked"
    assert app.status_line() == ("2 lane(s), 2 FAULTED: east_in barrier: no answer from unit 1; "
                                 "east_out barrier: arm blocked")
    app.store.health.failed("disk full")
    assert app.status_line().startswith("2 lane(s), 2 FAULTED: ") and "STORAGE FAULT" in app.status_line()


async def test_status_loop_sends_each_change_once(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    notifier = SystemdNotifier(str(tmp_path / "notify"))
    lines = iter(["2 lane(s) running", "2 lane(s) running", "2 lane(s), 1 FAULTED: east_in barrier: x",
                  "2 lane(s) running"])
    ticks = 0

    async def sleep(_s: float) -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 4:
            raise asyncio.CancelledError

    try:
        await status_loop(notifier, lambda: next(lines), interval=5.0, sleep=sleep)
    except asyncio.CancelledError:
        pass
    got = []
    while True:
        try:
            got.append(sock.recv(4096))
        except BlockingIOError:
            break
    assert got == [b"STATUS=2 lane(s) running", b"STATUS=2 lane(s), 1 FAULTED: east_in barrier: x",
                   b"STATUS=2 lane(s) running"]
    notifier.close()
    sock.close()


class _Runner:
    def __init__(self) -> None:
        from lanectl.service.lane_runner import LaneStatus
        self.status = LaneStatus("x", "entry")


async def test_a_lane_change_is_in_status_at_once_not_at_the_next_look(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    notifier = SystemdNotifier(str(tmp_path / "notify"))
    changed = asyncio.Event()
    line = ["2 lane(s) running"]
    loop = asyncio.create_task(status_loop(notifier, lambda: line[0], interval=3600, changed=changed))
    try:
        assert await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 5) == \
            b"STATUS=2 lane(s) running"
        line[0] = "2 lane(s), 1 FAULTED: east_in barrier: x"
        changed.set()  # what App._lane_changed does when a runner publishes
        got = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 5)  # an hour's look away
        assert got == b"STATUS=2 lane(s), 1 FAULTED: east_in barrier: x"
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        notifier.close()
        sock.close()
