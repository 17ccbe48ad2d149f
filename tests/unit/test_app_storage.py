"""Issue 12: what the daemon says about its storage — /healthz, `lanectl status`, sd_notify STATUS."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from lanectl.adapters.systemd_notify import SystemdNotifier
from lanectl.bootstrap import build_app
from lanectl.config import load_config


async def test_a_storage_fault_shows_in_healthz_status_and_sd_notify(example_config: Path, tmp_path: Path):
    app = build_app(load_config(example_config))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    app.notifier = SystemdNotifier(str(tmp_path / "notify"))
    app._loop = asyncio.get_running_loop()
    app.ready.set()
    assert (await app.health())["ok"] is True and "storage" not in await app.health()

    app.store.health.failed("disk full (SQLITE_FULL: database or disk is full)")
    health = await app.health()
    assert health["ok"] is False and health["storage"].startswith("disk full")
    got = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 2.0)
    assert got.startswith(b"STATUS=0 lane(s) running; STORAGE FAULT since ") and b"disk full" in got
    assert "STORAGE FAULT" in app.status_line()

    app.store.health.succeeded()
    got = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 2.0)
    assert got == b"STATUS=0 lane(s) running"
    assert (await app.health())["ok"] is True
    app.notifier.close()
    sock.close()
