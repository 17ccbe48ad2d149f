"""Failures that come in floods are counted, not logged one by one (ARCHITECTURE rule 8).

A :class:`Tally` logs the first occurrence at once, then at most one line per interval with the count
("http listener: 1234 connections refused in the last 60 s: too many open files"), and one line when a whole
interval passed without any ("... stopped"). Nothing is ever logged per event after the first, and never a
traceback: these are the outside world misbehaving, not bugs.

Two flood sources are routed here at start (App.run):

- asyncio's loop exception handler, which otherwise prints a traceback for every failed accept
  ("socket.accept() out of system resource", EMFILE/ENFILE/ENOBUFS/ENOMEM): :func:`install_loop_handler`
  counts those and passes every other context to the previous (default) handler;
- aiohttp's server logger, which logs every malformed request with its traceback: :class:`ServerLog` is the
  ``logger=`` given to the aiohttp runners; it counts "Error handling request" and passes the rest on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from typing import Any, Callable, Optional

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

DEFAULT_INTERVAL_S = 60.0
_MAX_REASONS = 4  # distinct reasons shown in one line; the rest are summed as "other"
_MAX_REASON_LEN = 120
_MAX_KEPT = 32  # distinct reasons counted in one interval


class Tally:
    """Counts one kind of repeated failure of one thing (``what``, e.g. "http listener") and logs it sparingly.

    ``note(reason)`` is called from the event loop for each occurrence."""

    def __init__(self, logger: logging.Logger, what: str, noun: str, *,
                 interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.logger, self.what, self.noun, self.interval_s = logger, what, noun, interval_s
        self.total = 0
        self._window: Counter[str] = Counter()
        self._timer: Optional[asyncio.TimerHandle] = None

    @property
    def active(self) -> bool:
        return self._timer is not None

    def note(self, reason: str, n: int = 1) -> None:
        reason = " ".join(reason.split())[:_MAX_REASON_LEN] or "unknown"
        if reason not in self._window and len(self._window) >= _MAX_KEPT:
            reason = "other"  # garbage that differs every time must not grow memory
        self.total += n
        if self._timer is None:  # it starts (again): say so once, then count
            self.logger.warning("%s: %s: %s (counted from now on, one line every %g s while it lasts)",
                                self.what, self.noun, reason, self.interval_s)
            self._schedule()
            if n > 1:
                self._window[reason] += n - 1
            return
        self._window[reason] += n

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if not self._window:
            self.logger.warning("%s: no more %s for %g s (%d in all)", self.what, self.noun, self.interval_s,
                                self.total)
            self.total = 0
            return
        count = sum(self._window.values())
        shown = self._window.most_common(_MAX_REASONS)
        other = count - sum(n for _, n in shown)
        reasons = shown[0][0] if len(shown) == 1 else ", ".join(f"{r} ({n})" for r, n in shown)
        if other:
            reasons += f", other ({other})"
        self.logger.warning("%s: %d %s in the last %g s: %s", self.what, count, self.noun, self.interval_s, reasons)
        self._window.clear()
        self._schedule()

    def close(self) -> None:
        """Stop counting (on shutdown); what was counted but not yet logged is logged now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            if self._window:
                self.logger.warning("%s: %d %s since the last report", self.what, sum(self._window.values()),
                                    self.noun)
        self._window.clear()


# --- asyncio: failed accepts ---------------------------------------------------------------------------------
_ACCEPT_MESSAGE = "socket.accept() out of system resource"


class LoopHandler:
    """The loop's exception handler: accept failures are counted per listener, anything else is passed on."""

    def __init__(self, logger: logging.Logger, previous: Optional[Callable[..., Any]],
                 interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.logger, self.previous, self.interval_s = logger, previous, interval_s
        self.tallies: dict[str, Tally] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_MESSAGE and isinstance(context.get("exception"), OSError):
            exc: OSError = context["exception"]
            name = _listener_name(context.get("socket"))
            tally = self.tallies.get(name)
            if tally is None:
                tally = self.tallies[name] = Tally(self.logger, name, "connections refused",
                                                   interval_s=self.interval_s)
            reason = exc.strerror or type(exc).__name__
            tally.note(reason[:1].lower() + reason[1:])
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def close(self) -> None:
        for tally in self.tallies.values():
            tally.close()


def _listener_name(sock: Any) -> str:
    try:
        family, address = sock.family, sock.getsockname()
    except (AttributeError, OSError):
        return "listener"
    if family == socket.AF_UNIX:
        return f"control socket {address}"
    return f"http listener {address[0]}:{address[1]}" if isinstance(address, tuple) else "listener"


def install_loop_handler(loop: asyncio.AbstractEventLoop, logger: logging.Logger,
                         interval_s: float = DEFAULT_INTERVAL_S) -> LoopHandler:
    """Route the loop's accept failures to tallies; returns the handler (``uninstall_loop_handler`` undoes it)."""
    handler = LoopHandler(logger, loop.get_exception_handler(), interval_s)
    loop.set_exception_handler(handler)
    return handler


def uninstall_loop_handler(loop: asyncio.AbstractEventLoop, handler: LoopHandler) -> None:
    if loop.get_exception_handler() is handler:
        loop.set_exception_handler(handler.previous)
    handler.close()


# --- aiohttp: malformed requests -----------------------------------------------------------------------------
class ServerLog:
    """Stands in for aiohttp's server logger (``logger=`` of a web runner). aiohttp reports a malformed request
    as ``logger.exception("Error handling request from %s", ...)`` (``logger.debug`` for a first request with a
    bad method), and a body it could not decode (bad chunking, bad gzip) again as ``"Unhandled exception"``
    while it drains the connection: a traceback each. Here those are counted. Other calls go to ``logger``
    unchanged (an exception a handler raised is a bug and keeps its traceback, under the same messages)."""

    def __init__(self, logger: logging.Logger, what: str, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self._logger = logger
        self.bad_requests = Tally(logger, what, "malformed requests", interval_s=interval_s)

    def exception(self, msg: str, *args: Any, exc_info: Any = True, **kw: Any) -> None:
        if not self.counted(msg, exc_info):
            self._logger.exception(msg, *args, exc_info=exc_info, **kw)

    def debug(self, msg: str, *args: Any, **kw: Any) -> None:
        if not self.counted(msg, kw.get("exc_info")):
            self._logger.debug(msg, *args, **kw)

    def counted(self, msg: Any, exc_info: Any) -> bool:
        """True when this report is the client's fault and was counted instead of logged. aiohttp also says
        "Error handling request" when a handler raised (a 500): that one is a bug and keeps its traceback."""
        exc = exc_info if isinstance(exc_info, BaseException) else None
        bad_request = (isinstance(msg, str) and msg.startswith(("Error handling request", "Unhandled exception"))
                       and (exc is None or is_client_fault(exc)))
        if bad_request:
            self.note(exc)
        return bad_request

    def note(self, exc: Optional[BaseException]) -> None:
        """Count one malformed request (also called by the listener for a body it could not read)."""
        detail = getattr(exc, "message", None) or (str(exc) if exc is not None else "")
        self.bad_requests.note(f"{type(exc).__name__}: {detail}" if exc is not None else "bad request")

    def close(self) -> None:
        self.bad_requests.close()

    def __getattr__(self, name: str) -> Any:  # info, warning, isEnabledFor ...
        return getattr(self._logger, name)


# A request the client got wrong: bad framing or a body that cannot be decoded (aiohttp's parser errors, and
# RequestPayloadError, which wraps them once the handler reads the body), or a client that left mid-body
# (aiohttp fails the body read with ConnectionResetError("Connection lost")).
CLIENT_FAULTS = (HttpProcessingError, RequestPayloadError, ConnectionResetError)


def is_client_fault(exc: Optional[BaseException]) -> bool:
    return isinstance(exc, CLIENT_FAULTS)
