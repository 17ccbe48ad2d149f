"""The demo's booth operator, two ways other than the control socket (`python -m hil.demo --booth ...`):

    ConsoleBooth        the console's HTTP API as the page uses it: POST /console/login (session cookie + CSRF
                        token), then POST /console/lanes/<id>/release with the X-CSRF-Token header. The record
                        names `console:<user>`, whatever name the scenario step gives.
    PersonAtTheConsole  a person at the console in a browser: the demo says what the booth case is and waits for
                        the lane's OPEN coil on the rig (the person released the car) — no API call at all.

Both answer `open_barrier(lane=, operator=, reason=, amount_fen=)` like lanectl's ControlClient, so the scenario
player takes any of the three. Only the demo and tests use this (the emulators import nothing from lanectl, and
neither does this module).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import aiohttp


class ConsoleBoothError(RuntimeError):
    """The console refused the login or could not be reached; the message says which and why."""


class ConsoleBooth:
    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")  # http://host:port (the LAN face)
        self.user, self.password = user, password
        self.name = f"console:{user}"  # as the records name the operator
        self.csrf = ""
        self._http: Optional[aiohttp.ClientSession] = None

    async def __aenter__(self) -> "ConsoleBooth":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            # unsafe: keep cookies from an IP address host (the rig's 127.0.0.1), as a browser does
            self._http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                               timeout=aiohttp.ClientTimeout(total=20))
        return self._http

    async def login(self) -> dict[str, Any]:
        """Log in; returns {user, role, csrf, idle_logout_s}. ConsoleBoothError on a refusal (with its reason)."""
        try:
            async with self._session().post(f"{self.base_url}/console/login",
                                            json={"user": self.user, "password": self.password}) as r:
                body = await _json(r)
        except aiohttp.ClientError as exc:
            raise ConsoleBoothError(f"console at {self.base_url} unreachable: {exc}") from None
        if r.status != 200:
            raise ConsoleBoothError(f"console login as {self.user!r} refused ({r.status} {body.get('error')}: "
                                    f"{body.get('message')})")
        self.csrf = str(body["csrf"])
        return body

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST an action with the session's CSRF token; logs in first (and again once if the session ended)."""
        if not self.csrf:
            await self.login()
        for attempt in (1, 2):
            async with self._session().post(f"{self.base_url}{path}", json=body,
                                            headers={"X-CSRF-Token": self.csrf}) as r:
                answer = await _json(r)
            if r.status == 401 and attempt == 1:  # idle logout or a daemon restart: log in again, once
                await self.login()
                continue
            return r.status, answer
        raise AssertionError("unreachable")

    async def open_barrier(self, *, lane: str, reason: str, operator: Optional[str] = None,
                           amount_fen: Optional[int] = None) -> dict[str, Any]:
        """A release (cash when `amount_fen` is given) through the console. `operator` is not sent: the console
        records the logged-in account. A refusal comes back as {opened: False, error, message}."""
        body: dict[str, Any] = {"reason": reason}
        if amount_fen is not None:
            body["amount_fen"] = amount_fen
        status, answer = await self.post(f"/console/lanes/{lane}/release", body)
        if status != 200:
            return {"lane": lane, "opened": False, "error": answer.get("error", str(status)),
                    "message": answer.get("message", "")}
        return answer


class PersonAtTheConsole:
    """The booth case handed to a person: `say` tells them what to do, then the demo waits (as long as it takes)
    for the OPEN coil of that lane on the rig's IO emulator. `wait_open(lane, after)` is the rig's."""

    def __init__(self, say: Callable[[str, str], None], wait_open: Callable[[str, float], Any], url: str) -> None:
        self.say, self.wait_open, self.url = say, wait_open, url
        self.name = "the person at the console"

    async def open_barrier(self, *, lane: str, reason: str, operator: Optional[str] = None,
                           amount_fen: Optional[int] = None) -> dict[str, Any]:
        after = time.monotonic()
        cash = f"take {amount_fen // 100}.{amount_fen % 100:02d} 元 cash and " if amount_fen is not None else ""
        self.say(lane, f">>> YOUR TURN at {self.url} : lane {lane}: {cash}release the car (reason: {reason}) "
                       f"— the demo waits for the barrier")
        await self.wait_open(lane, after)
        return {"lane": lane, "opened": True, "outcome": "released", "message": "released in the console"}


async def _json(r: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await r.json(content_type=None)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
