"""Telemetry for a central screen (issue 17 item 4): what each lane and the booth look like now, retained on
the site bus so a screen that connects later sees it at once.

    lanectl/<park>/<booth>/lanes/<lane>/telemetry   phase, faults, last plate, the car waiting to pay
    lanectl/<park>/<booth>/telemetry                outbox depth, settlement states, storage, the lanes' ids

The daemon's figures are sampled every `interval_s` and a topic is published only when its content changed, so
each topic gets at most one message per interval (a lane flapping between phases is not a message storm). What
could not be published while the bus was down is published when it is back; after a reconnect everything is
published again (a restarted broker without persistence has lost the retained messages). Whether a booth is
alive at all is the `online` topic (its last will), not the age of its telemetry.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable

from lanectl.service.ports import Clock
from lanectl.service.site_bus import BusUnavailable, SiteBus, topic

log = logging.getLogger("lanectl.telemetry")

# what the daemon reports: {"lanes": {lane_id: {...}}, "booth": {...}} (App.telemetry_snapshot)
Snapshot = Callable[[], Awaitable[dict[str, Any]]]


def telemetry_messages(park_id: str, booth_id: str, snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Topic -> content for one snapshot (without a timestamp, so equal content means nothing changed)."""
    lanes = snapshot.get("lanes", {})
    out = {topic(park_id, booth_id, "lanes", lane_id, "telemetry"): {"lane": lane_id, **figures}
           for lane_id, figures in lanes.items()}
    out[topic(park_id, booth_id, "telemetry")] = {"booth": booth_id, "lanes": sorted(lanes),
                                                  **snapshot.get("booth", {})}
    return out


class TelemetryPublisher:
    def __init__(self, bus: SiteBus, park_id: str, booth_id: str, snapshot: Snapshot, clock: Clock,
                 interval_s: float = 1.0) -> None:
        self.bus, self.park_id, self.booth_id = bus, park_id, booth_id
        self.snapshot, self.clock, self.interval_s = snapshot, clock, interval_s
        self.sent: dict[str, str] = {}  # topic -> the content the broker holds as far as we know (canonical JSON)
        self.published = 0
        self._was_connected = False

    async def run(self) -> None:
        while True:
            await self.tick()
            await self.clock.sleep(self.interval_s)

    async def tick(self) -> None:
        """Publish what changed since the last tick (everything after a reconnect)."""
        if not self.bus.connected:
            self._was_connected = False
            return
        if not self._was_connected:
            self.sent.clear()  # a new connection: the broker may have lost what we retained
            self._was_connected = True
        try:
            snapshot = await self.snapshot()
        except Exception:  # telemetry never takes the daemon down; the next tick tries again
            log.exception("telemetry: the daemon's figures could not be read; skipped this round")
            return
        at = self.clock.now().isoformat()
        for name, content in telemetry_messages(self.park_id, self.booth_id, snapshot).items():
            canonical = _json(content)
            if self.sent.get(name) == canonical:
                continue
            payload = _json({**content, "at": at})
            try:
                await self.bus.publish(name, payload.encode(), qos=1, retain=True)
            except BusUnavailable:
                self._was_connected = False  # the rest (and this one) go out after the reconnect
                return
            self.sent[name] = canonical
            self.published += 1


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
