"""The console's live feed: each lane's view as the page shows it, and a number for every change.

The lane runners say when their status changed (`changed(lane_id)`); the view is read then (from the runner's
published status, never from its state) and kept with the feed's sequence number when it differs. An SSE
client waits for the next change and sends each lane changed since what it sent last: a slow client skips
intermediate views but always ends on the current one, and no queue grows."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

View = Callable[[str], dict[str, Any]]


class LiveFeed:
    def __init__(self, lanes: list[str], view: View) -> None:
        self._view = view
        self.seq = 0
        self.views: dict[str, dict[str, Any]] = {}
        self.changed_at: dict[str, int] = {}  # lane -> seq of its last change
        self._wake = asyncio.Event()
        self.closed = False
        for lane in lanes:
            self.changed(lane)

    def changed(self, lane_id: str) -> None:
        view = self._view(lane_id)
        if view == self.views.get(lane_id):
            return
        self.seq += 1
        self.views[lane_id], self.changed_at[lane_id] = view, self.seq
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    def since(self, seq: int) -> list[tuple[int, dict[str, Any]]]:
        """(seq, view) of each lane changed after `seq`, oldest change first."""
        return sorted((at, self.views[lane]) for lane, at in self.changed_at.items() if at > seq)

    async def wait(self, seq: int, timeout: float) -> None:
        """Until something changed after `seq`, the feed closed, or `timeout` s (for heartbeats)."""
        if self.seq > seq or self.closed:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    def close(self) -> None:
        """The daemon stops: every stream ends now (a browser reconnects to the next daemon by itself)."""
        self.closed = True
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()
