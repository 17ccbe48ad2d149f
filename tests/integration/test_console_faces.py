"""The console is served on the LAN face only: a daemon (fakes for devices and clock, real listeners) with
`console.enabled` answers its page and 401 on the LAN face, and 404 for every console path on the public one;
with the console off, the LAN face has no console either."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from lanectl.config import load_config
from tests.daemon import fake_device_daemon
from tests.fakes import FakeClock, FakeLaneDevices
from tests.minimal_site import write_minimal_config

PATHS = ("/console/", "/console/static/console.js", "/console/events", "/console/session")


async def statuses(enabled: bool, tmp_path: Path) -> tuple[dict[str, int], dict[str, int]]:
    config = load_config(write_minimal_config(tmp_path, console={"enabled": enabled},
                                              housekeeping={"enabled": False}))
    async with fake_device_daemon(config, FakeClock(), FakeLaneDevices()) as app:
        assert app.lan is not None
        faces = {}
        async with aiohttp.ClientSession() as http:
            for face, port in (("public", app.http.port), ("lan", app.lan.port)):
                faces[face] = {}
                for path in PATHS:
                    async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                        faces[face][path] = r.status
        return faces["public"], faces["lan"]


async def test_the_console_is_on_the_lan_face_only(tmp_path):
    public, lan = await statuses(True, tmp_path)
    assert set(public.values()) == {404}, public
    assert lan == {"/console/": 200, "/console/static/console.js": 200, "/console/events": 401,
                   "/console/session": 401}


async def test_with_the_console_off_no_face_serves_it(tmp_path):
    public, lan = await statuses(False, tmp_path)
    assert set(public.values()) == {404} and set(lan.values()) == {404}, (public, lan)


async def test_the_live_stream_outlives_the_listeners_idle_timeout(tmp_path):
    """The LAN face closes idle keep-alive connections after idle_timeout_s; a stream being answered is not idle."""
    from lanectl.adapters.console.accounts import User, hash_password, write_users
    from lanectl.core.events import PlateRead
    etc = write_minimal_config(tmp_path, console={"enabled": True}, housekeeping={"enabled": False},
                               lan={"listen": "127.0.0.1:0", "idle_timeout_s": 0.3})
    write_users(etc / "console-users.yaml", {"wang": User("wang", "operator", hash_password("wang-pass-1", n=1024))})
    async with fake_device_daemon(load_config(etc), FakeClock(), FakeLaneDevices()) as app:
        lan = f"http://127.0.0.1:{app.lan.port}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # an IP address
            async with http.post(f"{lan}/console/login", json={"user": "wang", "password": "wang-pass-1"}) as r:
                assert r.status == 200
            async with http.get(f"{lan}/console/events") as stream:
                assert (await stream.content.readline()).startswith(b"event: snapshot")
                await asyncio.sleep(1.0)  # real time: over three idle timeouts of the listener
                app.runners["in1"].emit(PlateRead("粤B12345", "blue", 95, "in1-camera"))
                lines = []
                while not any(b"event: lane" in line for line in lines):
                    lines.append(await asyncio.wait_for(stream.content.readline(), 5))
                    assert lines[-1], f"the stream was closed: {lines}"
