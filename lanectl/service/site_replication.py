"""In-park replication over the site bus (issue 17 item 2; the rules are in core/site_replica.py, the topics in
docs/site-bus.md "Replication").

* `SiteBusPublisher` is the outbox relay's publisher for the `site_bus` destination: each queued message (in seq
  order, FIFO) goes out QoS 1 on ``lanectl/<park>/<booth>/records``; an entry's state is also kept retained on
  ``lanectl/<park>/<booth>/inside/<record id>`` (cleared when the stay ends) for central screens. While the bus is
  down it answers RETRY: the rows wait in SQLite and the lanes never wait for the bus.
* `SiteReplicator` takes the other booths' messages into the store's replica, and runs catch-up: it asks
  (``lanectl/<park>/<asker>/catchup``: under its own subtree, as the broker's ACL wants; with the seq it holds of
  every booth) at start, when a gap shows, and every
  `catchup_s`; each booth answers with its own messages past what the asker holds, re-published on its records
  topic (receivers drop what they had: idempotent by booth + seq).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Callable, Optional, Protocol

from lanectl.core import site_replica as sr
from lanectl.service.outbox import OutboxItem, Outcome
from lanectl.service.ports import Clock, StorageUnavailable
from lanectl.service.site_bus import BusUnavailable, SiteBus, topic

log = logging.getLogger(__name__)

DESTINATION = "site_bus"


class ReplicaStore(Protocol):
    async def apply_site(self, record: sr.SiteRecord, now: datetime) -> str: ...

    def site_gaps(self) -> dict[str, int]: ...

    def site_gap(self, booth: str) -> bool: ...

    async def site_since(self, after_seq: int, limit: int = 500) -> list[dict[str, Any]]: ...


class SiteBusPublisher:
    def __init__(self, bus: SiteBus, park_id: str, booth: str) -> None:
        self._bus, self._park, self._booth = bus, park_id, booth

    async def publish(self, item: OutboxItem) -> Outcome:
        try:
            record = sr.SiteRecord.model_validate(item.payload)
        except ValueError as exc:  # our own row unreadable: nothing will make it readable
            return Outcome.reject(f"site message unreadable: {exc}")
        try:
            # the retained state first: it is an overwrite, so when the bus drops between the two and the item is
            # tried again only it is repeated, and the numbered log carries the message once
            if record.kind == "entry":
                state = sr.encode(record) if record.status == "inside" else b""  # empty: clears the retained state
                await self._bus.publish(topic(self._park, self._booth, "inside", record.record_id), state, qos=1,
                                        retain=True)
            await self._bus.publish(topic(self._park, self._booth, "records"), sr.encode(record), qos=1)
        except BusUnavailable as exc:
            return Outcome.retry(f"site bus down: {exc}")
        return Outcome.done()


class SiteReplicator:
    def __init__(self, bus: SiteBus, store: ReplicaStore, clock: Clock, park_id: str, booth: str, *,
                 catchup_s: float = 30.0, page: int = 500, on_queued: Optional[Callable[[], None]] = None,
                 on_back: Optional[Callable[[], None]] = None) -> None:
        self._bus, self._store, self._clock = bus, store, clock
        self._park, self._booth = park_id, booth
        self.catchup_s = catchup_s
        self.page = page
        self._on_queued = on_queued  # a message applied here may queue one of ours (our entry closed): wake the relay
        self._on_back = on_back  # the bus came back: our queued records go now, not after the relay's backoff
        self.counts = dict.fromkeys(("applied", "duplicate", "own", "bad", "answered", "asked"), 0)
        self._asked_at: Optional[float] = None
        self.on_bus = False  # the bus's state as `run` last saw it: a change to connected asks for what was missed
        bus.subscribe(topic(park_id, "+", "records"), self._on_record)
        bus.subscribe(topic(park_id, "+", "catchup"), self._on_catchup)

    async def run(self) -> None:
        """Ask for what was missed once connected, after every reconnect, and every `catchup_s` (a gap at the
        tail: the last messages of a booth lost while this one was off the bus)."""
        asked_at = None
        while True:
            connected = self._bus.connected
            if connected and not self.on_bus and self._on_back is not None:
                self._on_back()
            due = asked_at is None or self._clock.monotonic() - asked_at >= self.catchup_s
            if connected and (not self.on_bus or due) and await self.catch_up():
                asked_at = self._clock.monotonic()
            self.on_bus = connected
            await self._clock.sleep(min(0.2, self.catchup_s))  # reading `connected` costs nothing

    async def catch_up(self) -> bool:
        """Ask every booth for its messages past the ones held here. False if the bus is down."""
        request = {"v": sr.VERSION, "from": self._booth, "have": self._store.site_gaps()}
        try:
            await self._bus.publish(topic(self._park, self._booth, "catchup"), json.dumps(request).encode(), qos=1)
        except BusUnavailable:
            return False
        self.counts["asked"] += 1
        return True

    async def _on_record(self, name: str, payload: bytes) -> None:
        try:
            record = sr.decode(payload)
        except sr.SiteMessageError as exc:
            self.counts["bad"] += 1
            log.warning("site bus: message on %s skipped: %s", name, exc)
            return
        try:
            outcome = await self._store.apply_site(record, self._clock.now())
        except StorageUnavailable as exc:  # not applied, not marked received: the next catch-up brings it again
            log.warning("site bus: %s %s of booth %s not applied (storage): %s", record.kind, record.record_id,
                        record.booth, exc)
            return
        self.counts[outcome] += 1
        if outcome == "applied" and self._on_queued is not None:
            self._on_queued()
        if outcome == "applied" and self._store.site_gap(record.booth) and self._may_ask():
            log.info("site bus: gap in booth %s's messages after %d: asking", record.booth,
                     self._store.site_gaps().get(record.booth, 0))
            self._asked_at = self._clock.monotonic()
            await self.catch_up()

    def _may_ask(self) -> bool:
        # a gap asks once a second at most: a burst of messages past one gap asks once, the answer fills it
        return self._asked_at is None or self._clock.monotonic() - self._asked_at >= 1.0

    async def _on_catchup(self, name: str, payload: bytes) -> None:
        try:
            request = json.loads(payload)
            asker, have = request["from"], request.get("have", {})
            after = int(have.get(self._booth, 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            self.counts["bad"] += 1
            log.warning("site bus: catch-up request on %s skipped: unreadable", name)
            return
        if asker == self._booth:
            return
        try:
            rows = await self._store.site_since(after, self.page)
        except StorageUnavailable:
            return  # the asker asks again
        for row in rows:
            try:
                await self._bus.publish(topic(self._park, self._booth, "records"),
                                        sr.encode(sr.SiteRecord.model_validate(row)), qos=1)
            except BusUnavailable:
                return
            self.counts["answered"] += 1
