"""Payment platform emulators on the rig, and the configuration that points the daemon at them.

The demo and the HIL tests share this: start the emulators, write their credentials (test keys only) into
the rig's configuration, and once the daemon listens, tell each emulator where the lane's callback URL is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hil.emulators.bolink import BolinkPlatform

BOLINK_KEY = "8403A41ED5EF20BC"  # the published test vector's key: a test key, not a secret
BOLINK_PARK = "21835"
ETC_CARS = {"粤C55555"}  # cars with an ETC account on the emulated platform
ETC_BOX = "000139"  # the exit lane's ETC box (lane_no)
CHANNELS = {"in1": "E1", "out1": "A1"}  # rig lane -> the platforms' channel id


@dataclass
class Platforms:
    names: tuple[str, ...] = ()
    window_s: float = 6.0  # settlement window on the rig (production default 120 s)
    bolink: Optional[BolinkPlatform] = None
    started: list[Any] = field(default_factory=list)

    async def start(self) -> "Platforms":
        if "bolink" in self.names:
            self.bolink = BolinkPlatform(key=BOLINK_KEY, push_interval_s=0.3, etc_plates=set(ETC_CARS),
                                         etc_pending_s=1.0)
            await self.bolink.start()
            self.started.append(self.bolink)
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
        if self.bolink is not None:
            payments["bolink"] = {"base_url": self.bolink.url, "union_id": self.bolink.union_id,
                                  "park_id": BOLINK_PARK, "key": {"secret": "bolink_key"}, "timeout_s": 2}
        return {"payments": payments}

    def lane_extra(self, exit_lanes: tuple[str, ...] = ("out1",)) -> dict[str, dict[str, Any]]:
        extra: dict[str, dict[str, Any]] = {lane: {"channel_id": ch} for lane, ch in CHANNELS.items()}
        for lane in exit_lanes:
            if self.bolink is not None:  # the wallet of sign-free members first, then ETC
                extra.setdefault(lane, {}).update(payments=["bolink", "bolink_etc"], etc_lane_no=ETC_BOX)
        return extra

    def secrets(self) -> dict[str, str]:
        return {"bolink_key": BOLINK_KEY} if self.bolink is not None else {}

    def connect(self, http_port: int) -> None:
        """The daemon listens (on a port it chose): point the emulators' pushes at it."""
        if self.bolink is not None:
            self.bolink.callback_url = f"http://127.0.0.1:{http_port}/bolink"
