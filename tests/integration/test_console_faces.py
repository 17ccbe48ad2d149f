"""The console is served on the LAN face only: a daemon (fakes for devices and clock, real listeners) with
`console.enabled` answers its page and 401 on the LAN face, and 404 for every console path on the public one;
with the console off, the LAN face has no console either."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from lanectl.bootstrap import build_app
from lanectl.config import load_config
from tests.fakes import FakeClock, FakeControlServer, FakeLaneDevices, FakeNotifier
from tests.minimal_site import write_minimal_config

PATHS = ("/console/", "/console/static/console.js", "/console/events", "/console/session")


async def statuses(enabled: bool, tmp_path: Path) -> tuple[dict[str, int], dict[str, int]]:
    config = load_config(write_minimal_config(tmp_path, console={"enabled": enabled},
                                              housekeeping={"enabled": False}))
    app = build_app(config, clock=FakeClock(), devices=FakeLaneDevices(), control=FakeControlServer,
                    notifier=FakeNotifier(), raise_nofile=lambda: (4096, 4096))
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    try:
        await asyncio.wait_for(app.ready.wait(), 5)
        assert app.lan is not None
        faces = {}
        async with aiohttp.ClientSession() as http:
            for face, port in (("public", app.http.port), ("lan", app.lan.port)):
                faces[face] = {}
                for path in PATHS:
                    async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                        faces[face][path] = r.status
        return faces["public"], faces["lan"]
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 10)


async def test_the_console_is_on_the_lan_face_only(tmp_path):
    public, lan = await statuses(True, tmp_path)
    assert set(public.values()) == {404}, public
    assert lan == {"/console/": 200, "/console/static/console.js": 200, "/console/events": 401,
                   "/console/session": 401}


async def test_with_the_console_off_no_face_serves_it(tmp_path):
    public, lan = await statuses(False, tmp_path)
    assert set(public.values()) == {404} and set(lan.values()) == {404}, (public, lan)
