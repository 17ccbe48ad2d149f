"""A Vzenith (臻识) camera publishing its recognitions (`ivs_result`) to the lot's MQTT broker: a lane PlateSource.

The camera subscribes, on the site bus, to exactly its configured topic (device/<serialno>/message/up/ivs_result
by default). Each message is read by the MQTT codec (lanectl/protocols/vzenith_mqtt.py, which hands the
AlarmInfoPlate to the HTTP push's codec) and then treated like an HTTP push (adapters/camera_http.py, whose
plate path this reuses): the picture is saved, the plate goes to the lane as a PlateRead; offline resends,
reads under `min_confidence` and recognitions older than `max_age_s` by the camera's clock (a backlog the broker
kept for this booth's session, a retained message) are counted, never emitted. A message from another camera (its `sn` is not
`serialno`) is counted as `wrong_camera` and skipped; garbage is counted (`bad`) and skipped, logged once per
streak. The handler never raises: it runs in the bus's dispatch loop.

Who may publish to the topic is the broker's job: each camera has its own user, allowed to write its own topic
only (docs/site-bus.md "Cameras over MQTT"). There is no reply channel, so nothing is ever sent back: the
barrier is a Modbus module (the config refuses relay_barrier and display.via_camera for this kind).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from lanectl.adapters.camera_http import THREAD_PARSE_BYTES, CameraCounters, VzenithCamera
from lanectl.adapters.log_tally import DEFAULT_INTERVAL_S
from lanectl.config.devices import VzenithMqttCameraConfig
from lanectl.protocols.vzenith_http import Heartbeat, PlateResult, VzenithError
from lanectl.protocols.vzenith_mqtt import parse_ivs_result
from lanectl.service.ports import Clock
from lanectl.service.site_bus import SiteBus

log = logging.getLogger(__name__)


@dataclass
class MqttCameraCounters(CameraCounters):
    messages: int = 0  # every message on the camera's topic, whatever it held
    wrong_camera: int = 0  # plate messages whose sn is not this lane's camera (skipped)
    stale: int = 0  # plates older than max_age_s by the camera's clock (skipped)


class VzenithMqttCamera(VzenithCamera):
    def __init__(self, lane_id: str, cfg: VzenithMqttCameraConfig, images_dir: Path, clock: Clock, bus: SiteBus, *,
                 name: str = "", report_interval_s: float = DEFAULT_INTERVAL_S,
                 special_prefixes: Optional[Sequence[str]] = None) -> None:
        super().__init__(lane_id, cfg, images_dir, clock, name=name, report_interval_s=report_interval_s,
                         special_prefixes=special_prefixes)
        self.counters = MqttCameraCounters()
        self.topic = cfg.topic_name
        self.serialno = cfg.serialno
        self.max_age_s = cfg.max_age_s
        self._stale_streak = 0
        bus.subscribe(self.topic, self.on_message)  # before the bus runs: App builds the lanes first

    async def on_message(self, topic: str, payload: bytes) -> None:
        """One message from the broker. Never raises (counted and skipped instead)."""
        self.counters.messages += 1
        self._last_contact = self._clock.monotonic()
        try:
            if topic != self.topic:  # the subscription is exact: only a bus bug brings another topic here
                raise VzenithError(f"message on {topic!r}, not this camera's topic {self.topic!r}")
            msg = await self._parse_message(payload)
            if self._bad_streak:
                log.info("%s: camera messages are readable again after %d bad ones", self.name, self._bad_streak)
                self._bad_streak = 0
            if isinstance(msg, Heartbeat):
                self.counters.heartbeats += 1
                return
            if self.serialno is not None and msg.serialno != self.serialno:
                self.counters.wrong_camera += 1
                log.warning("%s: a plate from camera %r on %s is not this lane's (%s): skipped", self.name,
                            msg.serialno, topic, self.serialno)
                return
            if self._stale(msg):
                return
            await self._push(msg, None, self._clock.monotonic())  # no reply to wait for
        except VzenithError as exc:
            self._bad(exc)
        except Exception:  # a bug here must not end the bus's dispatch for every other subscriber
            self.counters.bad += 1
            log.exception("%s: camera message on %s could not be handled; skipped", self.name, topic)

    def _stale(self, msg: PlateResult) -> bool:
        """A recognition older than max_age_s by the camera's clock: a broker backlog or a retained message."""
        max_age = self.max_age_s
        if max_age is None or msg.time_sec is None:
            return False
        age = self._clock.now().timestamp() - (msg.time_sec + msg.time_usec / 1e6)
        if age <= max_age:
            self._stale_streak = 0
            return False
        self.counters.stale += 1
        self._stale_streak += 1
        if self._stale_streak == 1:  # a backlog comes in a burst: once per burst
            log.warning("%s: plate %s recognised %.0f s ago (over max_age_s %g) not sent to the lane: a backlog "
                        "from the broker, a retained message, or the camera's clock is wrong", self.name,
                        msg.plate or "无牌车", age, max_age)
        return True

    async def _parse_message(self, payload: bytes) -> PlateResult | Heartbeat:
        if len(payload) > self.max_body_bytes:
            raise VzenithError(f"message of {len(payload)} bytes is over {self.max_body_bytes}", 413)
        if len(payload) > THREAD_PARSE_BYTES:  # pictures: parsed off the loop
            return await asyncio.to_thread(parse_ivs_result, payload, max_image_bytes=self.max_image_bytes,
                                           special_prefixes=self.special_prefixes)
        return parse_ivs_result(payload, max_image_bytes=self.max_image_bytes, special_prefixes=self.special_prefixes)

    def _bad(self, exc: VzenithError) -> None:
        self.counters.bad += 1
        self._bad_streak += 1
        if self._bad_streak == 1:  # once when it starts; the recovery is logged too
            log.warning("%s: camera message on %s skipped: %s", self.name, self.topic, exc)

    def status(self) -> dict[str, object]:
        out = super().status()
        for http_only in ("open_pending", "serial_pending", "opens_sent", "serial_frames_sent", "serial_expired",
                          "refused_credentials", "refused_source"):
            out.pop(http_only, None)
        out["topic"] = self.topic
        return out
