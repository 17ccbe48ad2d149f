"""Client of the daemon's local control socket, for `lanectl status|records|outbox|open`.

    client = ControlClient()                       # /run/lanectl/control.sock
    print(client.call_sync("status"))
    rows = client.call_sync("records", plate="京A12345", limit=20)

Errors are typed so the CLI can print one clear line and exit non-zero:
``DaemonNotRunning`` (no socket / nobody listening), ``PermissionDenied`` (not in the ``lanectl`` group),
``ControlError`` (the daemon refused: bad input, unknown lane, lane faulted...; ``.code``/``.message``),
``ControlClientError`` for everything else (timeout, garbled answer). All of them derive from
``ControlClientError``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import time
from typing import Any

import aiohttp

from lanectl.adapters.control_socket import (
    DEADLINE_HEADER,
    DEFAULT_SOCKET_PATH,
    MAX_SOCKET_PATH_BYTES,
    OUTBOX_DEFAULT_LIMIT,
    RECORDS_DEFAULT_LIMIT,
)
from lanectl.adapters.control_socket import ControlError as _ServerControlError

__all__ = [
    "ControlClient",
    "ControlClientError",
    "ControlError",
    "DaemonNotRunning",
    "PermissionDenied",
    "DEFAULT_SOCKET_PATH",
]

DEFAULT_TIMEOUT_S = 15.0
# The host part is ignored on a unix socket; it only shows up in the Host header.
_BASE = "http://lanectl"


class ControlClientError(Exception):
    """Anything that went wrong talking to the daemon."""


class DaemonNotRunning(ControlClientError):
    """The socket is missing, or it exists but nobody listens on it."""


class PermissionDenied(ControlClientError):
    """The socket (or /run/lanectl) is not accessible to this user."""


class ControlError(ControlClientError, _ServerControlError):
    """The daemon answered with an error: ``code``, ``message``, ``http_status``.

    It is both a :class:`ControlClientError` and the server-side ``ControlError``, so ``except ControlError``
    works with either import."""

    def __init__(self, code: str, message: str, http_status: int = 409) -> None:
        _ServerControlError.__init__(self, code, message, http_status)

    def __str__(self) -> str:
        return self.message


def _iso(name: str, value: _dt.datetime | _dt.date | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    raise TypeError(f"{name} must be a datetime, a date or an ISO 8601 string, not {type(value).__name__}")


class ControlClient:
    """Async client; one short-lived HTTP connection per call (the CLI makes one or two calls per run)."""

    def __init__(self, path: str = DEFAULT_SOCKET_PATH, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = path
        self.timeout = timeout

    # -- routes ---------------------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        return await self._request("GET", "/status")

    async def records(
        self,
        *,
        plate: str | None = None,
        lane: str | None = None,
        since: _dt.datetime | _dt.date | str | None = None,
        until: _dt.datetime | _dt.date | str | None = None,
        limit: int = RECORDS_DEFAULT_LIMIT,
    ) -> list[dict[str, Any]]:
        params = {
            "plate": plate,
            "lane": lane,
            "since": _iso("since", since),
            "until": _iso("until", until),
            "limit": str(limit),
        }
        answer = await self._request("GET", "/records", params={k: v for k, v in params.items() if v is not None})
        records = answer.get("records") if isinstance(answer, dict) else None
        if not isinstance(records, list):
            raise ControlClientError("daemon answered /records without a records list")
        return records

    async def outbox(self, *, limit: int = OUTBOX_DEFAULT_LIMIT) -> dict[str, Any]:
        return await self._request("GET", "/outbox", params={"limit": str(limit)})

    async def open_barrier(
        self, *, lane: str, reason: str, operator: str | None = None, amount_fen: int | None = None
    ) -> dict[str, Any]:
        """``operator`` left out: the daemon records the name it knows for the caller's uid."""
        body: dict[str, Any] = {"lane": lane, "reason": reason}
        if operator is not None:
            body["operator"] = operator
        if amount_fen is not None:
            body["amount_fen"] = amount_fen
        return await self._request("POST", "/open", json_body=body)

    async def balances(self, *, plate: str | None = None, limit: int = 50) -> dict[str, Any]:
        params = {"limit": str(limit)} | ({"plate": plate} if plate else {})
        return await self._request("GET", "/balances", params=params)

    async def topup(self, *, plate: str, amount_fen: int, reason: str, operator: str | None = None
                    ) -> dict[str, Any]:
        body: dict[str, Any] = {"plate": plate, "amount_fen": amount_fen, "reason": reason}
        if operator is not None:
            body["operator"] = operator
        return await self._request("POST", "/topup", json_body=body)

    async def booth_action(self, action: str, *, lane: str, operator: str | None = None, **fields: str | None
                           ) -> dict[str, Any]:
        """POST /refuse | /correct | /admit: ``fields`` are reason, plate, record_id (those left None are not sent)."""
        body: dict[str, Any] = {"lane": lane} | {k: v for k, v in fields.items() if v is not None}
        if operator is not None:
            body["operator"] = operator
        return await self._request("POST", f"/{action}", json_body=body)

    # -- sync convenience for the CLI -----------------------------------------------------------------------

    _METHODS = frozenset({"status", "records", "outbox", "open_barrier", "balances", "topup", "booth_action"})

    def call_sync(self, method: str, /, **kwargs: Any) -> Any:
        """Run one call to completion from synchronous code: ``call_sync("open_barrier", lane=..., ...)``.
        ``"open"`` is accepted as an alias of ``"open_barrier"``. Must not be called from a running loop."""
        name = "open_barrier" if method == "open" else method
        if name not in self._METHODS:
            raise ValueError(f"unknown control call {method!r}; one of: {', '.join(sorted(self._METHODS))}")
        return asyncio.run(getattr(self, name)(**kwargs))

    # -- transport ------------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        route: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> Any:
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH_BYTES:
            raise ControlClientError(
                f"control socket path is longer than {MAX_SOCKET_PATH_BYTES} bytes: {self.path}"
            )
        connector = aiohttp.UnixConnector(path=self.path)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        # The daemon drops a request it reads after this moment (e.g. an open stuck in a flooded listen queue):
        # past it we no longer wait, so it must never be executed.
        headers = {DEADLINE_HEADER: f"{time.time() + self.timeout:.3f}"}
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                async with session.request(method, _BASE + route, params=params, json=json_body,
                                           headers=headers) as resp:
                    raw = await resp.read()
                    status = resp.status
        except aiohttp.ClientConnectorError as exc:
            raise self._connect_error(exc.os_error) from None
        except PermissionError as exc:
            raise self._connect_error(exc) from None
        except TimeoutError:
            raise ControlClientError(
                f"lanectl did not answer within {self.timeout:g}s on {self.path}; the daemon may be stuck "
                "(see journalctl -u lanectl)"
            ) from None
        except aiohttp.ClientError as exc:
            raise ControlClientError(f"talking to lanectl over {self.path} failed: {exc}") from None
        return self._decode(status, raw)

    def _connect_error(self, err: OSError) -> ControlClientError:
        if isinstance(err, FileNotFoundError):
            return DaemonNotRunning(f"is lanectl running? socket {self.path} not found")
        if isinstance(err, ConnectionRefusedError):
            return DaemonNotRunning(
                f"is lanectl running? socket {self.path} exists but nobody is listening (left over from a crash?)"
            )
        if isinstance(err, PermissionError):
            return PermissionDenied(
                f"permission denied on {self.path}: operators must be in the 'lanectl' group "
                "(sudo usermod -aG lanectl $USER, then log in again) or run as root"
            )
        return ControlClientError(f"cannot connect to lanectl on {self.path}: {err.strerror or err}")

    @staticmethod
    def _decode(status: int, raw: bytes) -> Any:
        try:
            payload = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            raise ControlClientError(f"daemon sent an answer that is not JSON (HTTP {status})") from None
        if status >= 400:
            if isinstance(payload, dict) and isinstance(payload.get("error"), str):
                raise ControlError(payload["error"], str(payload.get("message", "")), status)
            raise ControlError("http_error", f"daemon answered HTTP {status}", status)
        return payload
