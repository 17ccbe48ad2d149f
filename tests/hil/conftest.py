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
from hil.platforms import Platforms
from hil.rig import Rig, RigLane
from hil.scenario import load_scenario

LANES = [RigLane("in1", "entry", 1), RigLane("out1", "exit", 2)]
FAST = Physics(rise_s=0.3, fall_s=0.3)


class Bench:
    def __init__(self, rig: Rig, daemon: DaemonProcess, workdir: Path) -> None:
        self.rig, self.daemon, self.workdir = rig, daemon, workdir
        self.scenario = load_scenario("demo")

    @property
    def control(self):
        return self.daemon.client


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
    names = tuple(name for name in ("bolink", "xft", "tdzn") if opts.pop(name, False))
    platforms = await Platforms(names, window_s=opts.pop("window_s", 6.0),
                                bolink_downlink=opts.pop("bolink_downlink", "callback"),
                                bolink_uplink=opts.pop("bolink_uplink", "api")).start()
    if platforms.names:
        opts["site_overrides"].update(platforms.site())
        opts["lane_extra"] = platforms.lane_extra()
        opts["secrets"] = platforms.secrets()
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
        bench.bolink = platforms.bolink
        bench.xft = platforms.xft
        bench.tdzn = platforms.tdzn
        bench.platforms = platforms
        platforms.connect((await bench.control.status())["http_port"])
        yield bench
    finally:
        try:
            await daemon.stop()
        finally:
            await rig.stop()
            if office is not None:
                await office.stop()
            await platforms.stop()
            print(daemon.log()[-60000:])  # pytest shows captured output only when the test failed
            shutil.rmtree(workdir, ignore_errors=True)
