"""HIL fixtures: the rig (pty cables, Modbus IO emulator with barrier physics, plate cameras) and the real
daemon as a separate process pointed at it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import AsyncIterator

import pytest

from hil.daemon_process import DaemonProcess
from hil.emulators.backoffice import Backoffice
from hil.emulators.barrier_io import Physics
from hil.emulators.bolink import BolinkPlatform
from hil.rig import Rig, RigLane
from hil.scenario import load_scenario

LANES = [RigLane("in1", "entry", 1), RigLane("out1", "exit", 2)]
BOLINK_KEY = "8403A41ED5EF20BC"  # the published test vector's key: a test key, not a secret
BOLINK_PARK = "21835"
FAST = Physics(rise_s=0.3, fall_s=0.3)


class Bench:
    def __init__(self, rig: Rig, daemon: DaemonProcess, workdir: Path) -> None:
        self.rig, self.daemon, self.workdir = rig, daemon, workdir
        self.scenario = load_scenario("demo")

    @property
    def control(self):
        return self.daemon.client

    async def callback_url(self, path: str) -> str:
        """The daemon's public listener (it binds port 0 on the rig): where a platform emulator pushes."""
        return f"http://127.0.0.1:{(await self.control.status())['http_port']}{path}"


@pytest.fixture
async def bench(request) -> AsyncIterator[Bench]:
    marker = request.node.get_closest_marker("rig")
    opts = dict(marker.kwargs) if marker else {}
    seed = opts.pop("seed", False)
    office = Backoffice() if opts.pop("backoffice", False) else None
    opts.setdefault("site_overrides", {})
    if office is not None:
        await office.start()
        opts["site_overrides"]["uploads"] = {"webhook": {"url": office.url, "rate_per_s": 20}}
    bolink = BolinkPlatform(key=BOLINK_KEY, push_interval_s=0.3) if opts.pop("bolink", False) else None
    if bolink is not None:
        await bolink.start()
        opts["site_overrides"]["payments"] = {
            "settlement": {"poll_interval_s": 0.3, "window_s": opts.pop("window_s", 6.0),
                           "reconcile_interval_s": 0.5},
            "bolink": {"base_url": bolink.url, "union_id": bolink.union_id, "park_id": BOLINK_PARK,
                       "key": {"secret": "bolink_key"}, "timeout_s": 2}}
        opts["lane_extra"] = {"out1": {"payments": ["bolink"], "channel_id": "A1"}, "in1": {"channel_id": "E1"}}
        opts["secrets"] = {"bolink_key": BOLINK_KEY}
    workdir = Path(tempfile.mkdtemp(prefix="lanectl-hil-", dir="/tmp"))
    rig = Rig(workdir, opts.pop("lanes", LANES), baudrate=opts.pop("baudrate", None),
              physics=opts.pop("physics", FAST), **opts)
    await rig.start()
    socket = workdir / "control.sock"
    config = rig.write_config(workdir / "etc", socket)
    if seed:  # True: the demo's cars; or a list of {plate, lane, minutes_ago}
        await rig.seed_inside(workdir / "lanectl.db", load_scenario("demo").inside if seed is True else seed)
    daemon = DaemonProcess(config, socket, workdir / "daemon.log")
    try:
        await daemon.start()
        bench = Bench(rig, daemon, workdir)
        bench.backoffice = office
        bench.bolink = bolink
        if bolink is not None:
            bolink.callback_url = await bench.callback_url("/bolink")
        yield bench
    finally:
        try:
            await daemon.stop()
        finally:
            await rig.stop()
            if office is not None:
                await office.stop()
            if bolink is not None:
                await bolink.stop()
            print(daemon.log()[-5000:])  # pytest shows captured output only when the test failed
            shutil.rmtree(workdir, ignore_errors=True)
