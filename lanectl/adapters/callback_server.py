"""An HTTP listener: the daemon runs two of them, its two faces.

- public (site `http.listen`): what the payment platforms reach from outside — their callbacks, /images (the
  pictures they fetch), /healthz;
- LAN (site `lan.listen`): the booth LAN — the cameras' pushes (POST /camera/<lane id>), /metrics, /healthz. It
  opens when a lane has an HTTP camera or metrics are enabled; a camera push or /metrics on the public face is a 404.

Both get the same protections: a connection gate, bounded bodies, idle and body timeouts, counted (not logged
one by one) floods and malformed requests, and (`on_request`) each answer counted by route pattern and status.
Each answers `GET /healthz` for monitoring; platform callbacks register their routes with `add_post`. Bodies are bounded (`max_body_kb` of the face). A handler gets the raw
body bytes (signatures are checked over them) and returns the answer; an exception in it is logged and answered
500 without details.
A callback that cannot be stored now (StorageUnavailable) is answered 503 without details and without a
traceback (the store has logged the fault once): it is not acknowledged, so the platform sends it again.
The operator CLI never comes through this listener: it uses the local control socket.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web

from lanectl.adapters.connection_gate import ConnectionGate, GatedSite
from lanectl.adapters.log_tally import CLIENT_FAULTS, DEFAULT_INTERVAL_S, ServerLog, Tally
from lanectl.service.ports import StorageUnavailable
from lanectl.startup import EX_CONFIG, EX_TEMPFAIL, StartupError

log = logging.getLogger("lanectl.http")

Health = Callable[[], Awaitable[dict[str, Any]]]
# (raw body, request content type) -> (answer body, answer content type)
BodyHandler = Callable[[bytes, str], Awaitable[tuple[bytes, str]]]
# (face, route pattern, status): each answered request, for /metrics (adapters/metrics.py)
RequestCounter = Callable[[str, str, int], None]


class CallbackServer:
    """``max_connections`` open at a time (more are closed at once, counted in the log); a connection with no
    complete request for ``idle_timeout_s`` (idle keep-alive, or a client that sends nothing or dribbles) is
    closed; malformed requests are counted, not logged one by one (adapters/log_tally.py)."""

    def __init__(self, host: str, port: int, *, max_body_kb: int, health: Health, max_connections: int = 256,
                 idle_timeout_s: float = 15.0, body_timeout_s: float = 30.0,
                 report_interval_s: float = DEFAULT_INTERVAL_S, face: str = "public",
                 key: str = "http.listen", on_request: Optional[RequestCounter] = None) -> None:
        self.host, self.port = host, port
        self._on_request = on_request
        self.face, self.key = face, key  # which face, and the site key that configures it (for messages)
        self.app = web.Application(client_max_size=max_body_kb * 1024,
                                   middlewares=[self._count, self._bad_body, self._body_deadline])
        self.body_timeout_s = body_timeout_s
        self.app.router.add_get("/healthz", self._healthz)
        self._health = health
        self._runner: Optional[web.AppRunner] = None
        self.idle_timeout_s = idle_timeout_s
        self._interval = report_interval_s
        self.gate = ConnectionGate(max_connections, Tally(log, self._what, "connections refused",
                                                          interval_s=report_interval_s))
        self._server_log: Optional[ServerLog] = None
        self.slow_bodies = Tally(log, self._what, "slow request bodies cut off", interval_s=report_interval_s)

    @property
    def _what(self) -> str:
        return f"http listener {self.host}:{self.port} ({self.face})"

    @property
    def listening(self) -> bool:
        return self._runner is not None

    def add_post(self, path: str, handler: BodyHandler) -> None:
        async def route(request: web.Request) -> web.Response:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return web.Response(status=413, text="body too large")
            try:
                answer, content_type = await handler(body, request.content_type)
            except StorageUnavailable:
                log.debug("POST %s: not stored (storage unavailable): answered 503", path)
                return web.Response(status=503, text="service unavailable")
            except Exception:
                log.exception("POST %s: handler failed", path)
                return web.Response(status=500, text="internal error")
            return web.Response(body=answer, content_type=content_type.split(";")[0],
                                charset="utf-8" if "json" in content_type or "text" in content_type else None)
        self.app.router.add_post(path, route)

    def add_get(self, path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.app.router.add_get(path, handler)

    def describe(self) -> dict[str, Any]:
        """Where it listens and every route it serves (`lanectl status`: what monitoring and the HTTP fuzzer,
        hil/fuzz_http.py, reach). Read from the router itself, so a route added anywhere is listed."""
        routes = [{"method": r.method, "path": r.resource.canonical} for r in self.app.router.routes()
                  if r.resource is not None and r.method != "HEAD"]  # aiohttp adds HEAD to every GET
        return {"face": self.face, "host": self.host, "port": self.port, "routes": routes}

    async def start(self) -> None:
        # in-flight platform calls get 2 s to finish on stop (a held request must not delay a restart)
        self._server_log = ServerLog(log, self._what, self._interval)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0, handle_signals=False,
                                     keepalive_timeout=self.idle_timeout_s, logger=self._server_log)
        await self._runner.setup()
        site = GatedSite(self._runner, self.gate, host=self.host, port=self.port)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise listen_error(self.host, self.port, exc, face=self.face, key=self.key) from None
        if site.sockets:
            self.port = site.sockets[0].getsockname()[1]  # the real port when 0 was asked for
        for tally in (self.gate.tally, self._server_log.bad_requests, self.slow_bodies):
            tally.what = self._what  # with the real port
        log.info("%s http listener on %s:%d (at most %d connections, idle ones closed after %g s)", self.face,
                 self.host, self.port, self.gate.limit, self.idle_timeout_s)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.gate.tally.close()
        self.slow_bodies.close()
        if self._server_log is not None:
            self._server_log.close()

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every answer counted by route pattern and status (a 404 for an unknown path too, as `unmatched`)."""
        if self._on_request is None:
            return await handler(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self._on_request(self.face, route_of(request), status)

    @web.middleware
    async def _body_deadline(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """A request body must have arrived ``body_timeout_s`` after its headers: a client that dribbles it
        (slowloris on the body) is cut off instead of holding a connection and a handler forever. Whatever the
        handler does once the body is in is not bounded here."""
        if request.content.is_eof():
            return await handler(request)
        timer = asyncio.get_running_loop().call_later(self.body_timeout_s, self._cut_slow_body, request)
        try:
            return await handler(request)
        finally:
            timer.cancel()

    @web.middleware
    async def _bad_body(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """A body that cannot be read (bad chunking, bad gzip/deflate, the client gone mid-body) is the client's
        fault: 400 and counted with the malformed requests — not 500 and a traceback, whichever route read it."""
        try:
            return await handler(request)
        except CLIENT_FAULTS as exc:
            if self._server_log is not None:
                self._server_log.note(exc)
            return web.Response(status=400, text="bad request body")

    def _cut_slow_body(self, request: web.Request) -> None:
        if not request.content.is_eof() and request.transport is not None:
            self.slow_bodies.note(f"body not received within {self.body_timeout_s:g} s")
            request.transport.abort()

    async def _healthz(self, request: web.Request) -> web.Response:
        body = await self._health()
        ok = body.get("ok", False)
        return web.json_response(body, status=200 if ok else 503, dumps=_dumps)


def listen_error(host: str, port: int, exc: OSError, *, face: str = "public", key: str = "http.listen"
                 ) -> StartupError:
    """Why the listener could not open, as a StartupError naming the face and its address (site `key`)."""
    thing = f"http listener {host}:{port} ({face} face, site {key})"
    if exc.errno == errno.EADDRINUSE:
        # usually the old instance still stopping, or a second daemon: worth retrying (systemd restarts on 75)
        return StartupError(thing, "port already in use by another process", EX_TEMPFAIL)
    if exc.errno == errno.EADDRNOTAVAIL:
        # the address is not (yet) on this machine: an interface still coming up is retried as well
        return StartupError(thing, "address not available on this machine", EX_TEMPFAIL)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StartupError(thing, "permission denied (ports below 1024 need privileges)", EX_CONFIG)
    if isinstance(exc, socket.gaierror):
        return StartupError(thing, f"host not found: {exc.strerror}", EX_CONFIG)
    reason = exc.strerror or str(exc)
    return StartupError(thing, reason[:1].lower() + reason[1:], EX_TEMPFAIL)


def _dumps(value: Any) -> str:
    import json
    return json.dumps(value, ensure_ascii=False, default=str)


def route_of(request: web.Request) -> str:
    """For /metrics (adapters/metrics.py, loaded only when it is on): the route's pattern (e.g. /camera/{lane}), never
    the raw path: a scanner's random paths add no series."""
    resource = request.match_info.route.resource if request.match_info is not None else None
    canonical: Optional[str] = resource.canonical if resource is not None else None
    return canonical or "unmatched"
