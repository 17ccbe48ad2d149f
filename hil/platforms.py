"""Payment platform emulators on the rig, and the configuration that points the daemon at them.

The demo and the HIL tests share this: start the emulators, write their credentials (test keys only) into
the rig's configuration, and once the daemon listens, tell each emulator where the lane's callback URL is.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Optional

from hil.emulators import tdzn as tdzn_emu
from hil.emulators.bolink import BolinkPlatform
from hil.emulators.xft import XftPlatform

BOLINK_KEY = "8403A41ED5EF20BC"  # the published test vector's key: a test key, not a secret
BOLINK_PARK = "21835"
ETC_CARS = {"粤C55555"}  # cars with an ETC account on the emulated platform
ETC_BOX = "000139"  # the exit lane's ETC box (lane_no)
CHANNELS = {"in1": "E1", "out1": "A1"}  # rig lane -> the platforms' channel id
XFT_KEY = "xft-test-key"  # test key
TDZN_KEY = "45DC1F8604F940829E75D6A76595C299"  # the published test vector's key
TDZN_PID, TDZN_PARK = "123456", "RIG/1P1"
# at the rig's exit: XFT sign-free, Bolink wallet, Bolink ETC, then tdzn (which never refuses outright: last)
PROVIDER_ORDER = ("xft", "bolink", "bolink_etc", "tdzn")


def free_port() -> int:
    """A port for the daemon's public listener, known before it starts (XFT's notify_url names it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Platforms:
    names: tuple[str, ...] = ()
    window_s: float = 6.0  # settlement window on the rig (production default 120 s)
    bolink_downlink: str = "callback"  # or "http_mode": the lane logs in and long-polls (NAT installs)
    bolink_uplink: str = "api"  # or "sdk": entries and exits over upload.do (a lot only on the SDK channel)
    bolink: Optional[BolinkPlatform] = None
    xft: Optional[XftPlatform] = None
    tdzn: Optional[tdzn_emu.TdznPlatform] = None
    http_port: int = 0  # the daemon's listener, fixed in advance when a platform must know it
    started: list[Any] = field(default_factory=list)

    async def start(self) -> "Platforms":
        if self.names:  # platforms call the lane back: a fixed port survives a daemon restart
            self.http_port = free_port()
        if "bolink" in self.names:
            self.bolink = BolinkPlatform(key=BOLINK_KEY, push_interval_s=0.3, etc_plates=set(ETC_CARS),
                                         etc_pending_s=1.0, default_downlink=self.bolink_downlink, hold_s=2.0)
            await self.bolink.start()
            self.started.append(self.bolink)
        if "xft" in self.names:
            self.xft = XftPlatform(key=XFT_KEY, notify_interval_s=0.3)
            await self.xft.start()
            self.started.append(self.xft)
        if "tdzn" in self.names:
            # cars seeded inside never sent enterNotify: the platform takes them anyway; nobody pays unless told
            self.tdzn = tdzn_emu.TdznPlatform(pid=TDZN_PID, key=TDZN_KEY, park_code=TDZN_PARK, require_entry=False,
                                              default=tdzn_emu.never_pay(), notify_interval_s=0.3)
            await self.tdzn.start()
            self.started.append(self.tdzn)
        return self

    async def stop(self) -> None:
        for platform in reversed(self.started):
            await platform.stop()
        self.started.clear()

    def site(self) -> dict[str, Any]:
        """The site YAML `payments:` section for the running emulators."""
        if not self.names:
            return {}
        payments: dict[str, Any] = {"settlement": {"poll_interval_s": 0.3, "window_s": self.window_s,
                                                   "reconcile_interval_s": 0.5}}
        site: dict[str, Any] = {"payments": payments}
        if self.bolink is not None:
            payments["bolink"] = {"base_url": self.bolink.url, "union_id": self.bolink.union_id,
                                  "park_id": BOLINK_PARK, "key": {"secret": "bolink_key"}, "timeout_s": 2,
                                  "downlink": self.bolink_downlink, "uplink": self.bolink_uplink}
        if self.xft is not None:
            payments["xft"] = {"base_url": self.xft.url, "app_id": "rig-app", "merchant_code": "M100",
                               "store_code": "S1", "key": {"secret": "xft_key"}, "timeout_s": 2,
                               "notify_url": f"http://127.0.0.1:{self.http_port}/xft/notify",
                               "relation_cache_s": 0}
        if self.tdzn is not None:
            payments["tdzn"] = {"url": self.tdzn.url, "pid": TDZN_PID, "key": {"secret": "tdzn_key"},
                                "park_code": TDZN_PARK, "timeout_s": 2, "pre_leave_timeout_s": 2, "total_spaces": 100}
        if self.http_port:
            site["http"] = {"listen": f"127.0.0.1:{self.http_port}"}
        return site

    def lane_extra(self, exit_lanes: tuple[str, ...] = ("out1",)) -> dict[str, dict[str, Any]]:
        extra: dict[str, dict[str, Any]] = {lane: {"channel_id": ch} for lane, ch in CHANNELS.items()}
        running = {"xft": self.xft is not None, "bolink": self.bolink is not None,
                   "bolink_etc": self.bolink is not None, "tdzn": self.tdzn is not None}
        for lane in exit_lanes:
            extra.setdefault(lane, {})["payments"] = [p for p in PROVIDER_ORDER if running[p]]
            if self.bolink is not None:
                extra[lane]["etc_lane_no"] = ETC_BOX
        return extra

    def secrets(self) -> dict[str, str]:
        keys = {"bolink_key": BOLINK_KEY} if self.bolink is not None else {}
        keys |= {"xft_key": XFT_KEY} if self.xft is not None else {}
        return keys | ({"tdzn_key": TDZN_KEY} if self.tdzn is not None else {})

    def connect(self, http_port: int) -> None:
        """The daemon listens (on a port it chose): point the emulators' pushes at it."""
        if self.bolink is not None:
            self.bolink.callback_url = f"http://127.0.0.1:{http_port}/bolink"
        if self.tdzn is not None:
            self.tdzn.lane_url = f"http://127.0.0.1:{http_port}/tdzn"
