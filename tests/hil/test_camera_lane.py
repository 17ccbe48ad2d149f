"""HIL: lanes with only a Vzenith-style camera (HTTP push, its relay raising the barrier) and an LED/voice board
behind the camera — the daemon as its own process. A car is let in or out by the relay in the push's reply,
the board shows and says the lane's messages, a refused car gets no relay pulse. The cameras push to the LAN
listener and authenticate (basic auth on one, a token in the URL on the other); the public listener has no
camera route, and a push without credentials changes nothing."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import aiohttp
import pytest
import yaml

from hil.daemon_process import DaemonProcess
from hil.emulators.camera_http import HttpCamera
from hil.emulators.led_board import LedBoard
from hil.platforms import free_port
from hil.rig import RigLane
from hil.scenario import ScenarioPlayer, load_scenario
from tests.hil.checks import no_harm

pytestmark = pytest.mark.hil


PASSWORD, TOKEN = "in1-camera-password", "out1-camera-token-0123456789"
AUTH = {"in1": {"allow_from": ["127.0.0.0/8"], "basic_auth": {"username": "cam-in1", "password": {"secret": "in1_pw"}}},
        "out1": {"token": {"secret": "out1_token"}}}


def lane(lane_id: str, direction: str) -> dict:
    return {"id": lane_id, "direction": direction,
            "devices": {"camera": {"kind": "vzenith_http", "relay_barrier": True, "relay_cycle_s": 1.0,
                                   **AUTH[lane_id]},
                        "display": {"kind": "led_board", "via_camera": True,
                                    "templates": {"welcome": "{message}|{plate}"}}},
            "rules": {"auto_close": True, "duplicate_window_s": 2, "open_confirm_s": 8}}


@pytest.fixture
async def camera_lanes():
    workdir = Path(tempfile.mkdtemp(prefix="lanectl-cam-", dir="/tmp"))
    port = free_port()
    etc = workdir / "etc"
    (etc / "lanes").mkdir(parents=True)
    site = {"park_id": "cam", "database": str(workdir / "lanectl.db"), "http": {"listen": "127.0.0.1:0"},
            "lan": {"listen": f"127.0.0.1:{port}"}, "control": {"socket": str(workdir / "control.sock")},
            "secrets_file": "secrets.yaml",
            "tariffs": {"default": {"free_minutes": 15, "first_minutes": 60, "first_fen": 500}},
            "vehicles": {"blacklist": {"粤B66666": "逃费"}}}
    (etc / "site.yaml").write_text(yaml.safe_dump(site, allow_unicode=True))
    (etc / "secrets.yaml").write_text(yaml.safe_dump({"in1_pw": PASSWORD, "out1_token": TOKEN}))
    (etc / "secrets.yaml").chmod(0o600)
    for doc in (lane("in1", "entry"), lane("out1", "exit")):
        (etc / "lanes" / f"{doc['id']}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    daemon = DaemonProcess(etc, workdir / "control.sock", workdir / "daemon.log")
    boards = {"in1": LedBoard(), "out1": LedBoard()}
    cams = {"in1": HttpCamera(f"http://127.0.0.1:{port}/camera/in1", led_board=boards["in1"], username="cam-in1",
                              password=PASSWORD),
            "out1": HttpCamera(f"http://127.0.0.1:{port}/camera/out1", led_board=boards["out1"], token=TOKEN)}
    try:
        await daemon.start()
        for cam in cams.values():
            await cam.start()
        yield daemon, cams, boards
    finally:
        for cam in cams.values():
            await cam.close()
        await daemon.stop()
        print(daemon.log()[-4000:])
        shutil.rmtree(workdir, ignore_errors=True)


async def test_a_camera_only_lane_lets_cars_in_and_out_through_the_relay_and_shows_them(camera_lanes):
    daemon, cams, boards = camera_lanes
    reply = await cams["in1"].car("粤B12345")
    assert reply.status == 200 and reply.commands.open_gate, "the push's own reply raised the barrier"
    assert cams["in1"].relay_opens == 1 and boards["in1"].sees("粤B12345") and boards["in1"].hears("欢迎光临")
    await asyncio.sleep(1.5)  # the barrier's own cycle: back down

    refused = await cams["in1"].car("粤B66666")
    assert not refused.commands.open_gate and cams["in1"].relay_opens == 1
    for _ in range(5):  # heartbeats never carry an open nobody commanded
        assert not (await cams["in1"].heartbeat()).commands.open_gate
    assert boards["in1"].sees("黑名单")

    out = await cams["out1"].car("粤B12345")  # within the free minutes: free exit
    assert out.commands.open_gate and cams["out1"].relay_opens == 1 and boards["out1"].hears("一路顺风")
    rows = await daemon.client.records(plate="粤B12345")
    assert {(r["kind"], r["status"]) for r in rows} == {("entry", "exited"), ("exit", "leaving")}
    assert all(Path(r["image"]).is_file() for r in rows), "each record points at the camera's picture"
    status = await daemon.client.status()
    assert status["lanes"]["in1"]["camera"]["pushes"] == 2 and not status["lanes"]["in1"]["barrier_fault"]



async def test_cameras_reach_only_the_lan_face_and_only_with_their_credentials(camera_lanes):
    daemon, cams, _ = camera_lanes
    status = await daemon.client.status()
    public, lan = status["http_port"], status["lan_port"]
    assert public and lan and public != lan
    log = daemon.log()
    assert f"public http listener on 127.0.0.1:{public}" in log and f"LAN http listener on 127.0.0.1:{lan}" in log
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{public}/healthz") as r:
            health = await r.json()
        assert health["listeners"] == {"public": True, "lan": True} and health["ok"]
        for path in ("/camera/in1", f"/camera/out1/{TOKEN}"):  # the camera, through the public face: not there
            async with s.post(f"http://127.0.0.1:{public}{path}", data=b'{"heartbeat": {}}') as r:
                assert r.status == 404
    async with HttpCamera(cams["in1"].url) as anonymous, HttpCamera(cams["out1"].url, token="x" * 28) as forged:
        refused = [await anonymous.car("粤B12345"), await forged.car("粤B12345"), await anonymous.heartbeat()]
    assert [r.status for r in refused] == [401, 401, 401] and not any(r.opened for r in refused)
    assert await daemon.client.records(plate="粤B12345") == [], "no record for a push that did not authenticate"
    status = await daemon.client.status()
    assert status["lanes"]["in1"]["camera"]["refused_credentials"] == 2
    assert status["lanes"]["out1"]["camera"]["refused_credentials"] == 1
    assert status["lanes"]["in1"]["camera"]["pushes"] == 0 and status["lanes"]["in1"]["phase"] == "idle"
    assert "in1-camera (127.0.0.1): pushes refused: no credentials (401)" in daemon.log()
    reply = await cams["in1"].car("粤B12345")  # the camera itself, with its credentials: works as before
    assert reply.status == 200 and reply.opened


@pytest.mark.rig(lanes=[RigLane("in1", "entry", 1, camera="http"), RigLane("out1", "exit", 2)])
async def test_an_http_camera_at_the_arming_loop_drives_a_modbus_barrier(bench):
    """The usual lane: the camera pushes when the car reaches the arming loop, the OPEN goes over Modbus, the
    loops see the car through; the record keeps the pushed picture. A blacklisted car gets no OPEN."""
    rig = bench.rig
    car = await rig.car("in1", "粤B12345")
    assert car.opened and car.passed
    assert await rig.wait_down("in1")
    [entry] = [r for r in await bench.control.records(plate="粤B12345") if r["kind"] == "entry"]
    assert entry["status"] == "inside"
    assert Path(entry["image"]).read_bytes() == rig.http_cameras["in1"].sent_images[1]
    assert rig.http_cameras["in1"].relay_opens == 0, "a Modbus lane never opens through the camera relay"
    refused = await rig.car("in1", "粤B66666", wait_open_s=2.0)
    assert not refused.opened
    opens = [e for e in rig.io.events if e.unit == 1 and e.name == "open"]
    assert len(opens) == 1
    out = await rig.car("out1", "粤B00001")  # the serial camera lane beside it (a VIP: free)
    assert out.passed
    no_harm(bench)


CAMERA = load_scenario("camera")


@pytest.mark.rig(lanes=CAMERA.lanes, seed=CAMERA.inside)
async def test_the_camera_scenario_plays_against_the_daemon_process(bench):
    """`lanectl demo --scenario camera`: the HTTP-camera entry lane beside a serial-camera exit lane."""
    player = ScenarioPlayer(bench.rig, bench.control, settle_s=1.5, refuse_wait_s=2.0)
    outcomes = await player.play(CAMERA)
    await player.settle()
    assert [(o.what, o.got) for o in outcomes if not o.ok] == []
    pushed = [r for r in await bench.control.records(lane="in1") if r["plate"] != "粤A88888"]
    assert len(pushed) == 3 and all(Path(r["image"]).is_file() for r in pushed), "each pushed car has its picture"
    no_harm(bench)
