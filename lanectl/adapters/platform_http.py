"""One HTTP transport for the payment platforms' clients: calls spaced under the platform's rate limit, a
signed body POSTed once, and "no usable answer" (timeout, network error, non-200) turned into
ProviderUnavailable — the settlement treats it as pending, never as paid. Logs once when the platform stops
answering and once when it answers again."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from lanectl.service.settlement import ProviderUnavailable

log = logging.getLogger("lanectl.platforms")


class PlatformTransport:
    def __init__(self, name: str, session: aiohttp.ClientSession, *, rate_per_s: float, timeout_s: float,
                 content_type: str = "application/json;charset=utf-8") -> None:
        self.name, self._session = name, session
        self.timeout_s, self._content_type = timeout_s, content_type
        self._spacing = 1.0 / rate_per_s
        self._next_slot = 0.0
        self._lock = asyncio.Lock()
        self.failing = ""  # why the platform stopped answering; "" while it answers

    async def post(self, url: str, body: bytes, what: str, *, timeout_s: float | None = None) -> bytes:
        """The raw answer body of one POST answered HTTP 200; ProviderUnavailable otherwise."""
        limit = self.timeout_s if timeout_s is None else timeout_s
        await self._wait_slot()
        try:
            async with self._session.post(url, data=body, timeout=aiohttp.ClientTimeout(total=limit),
                                          headers={"Content-Type": self._content_type}) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    self._down(f"{self.name} {what}: HTTP {resp.status}")
        except asyncio.TimeoutError:
            self._down(f"{self.name} {what}: no answer within {limit:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            self._down(f"{self.name} {what}: {type(exc).__name__}: {exc}")
        if self.failing:
            log.info("%s platform answers again (was: %s)", self.name, self.failing)
            self.failing = ""
        return raw

    def _down(self, why: str) -> None:
        if not self.failing:
            log.warning("%s platform not answering: %s", self.name, why)
        self.failing = why
        raise ProviderUnavailable(why) from None

    async def _wait_slot(self) -> None:
        async with self._lock:
            now = time.monotonic()
            wait = self._next_slot - now
            self._next_slot = max(now, self._next_slot) + self._spacing
        if wait > 0:
            await asyncio.sleep(wait)
