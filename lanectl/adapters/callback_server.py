"""The HTTP listener that cameras and payment platforms reach (site `http.listen`).

It answers `GET /healthz` for monitoring; platform callbacks (and camera pushes) register their routes with
`add_post`. Bodies are bounded (`http.max_body_kb`). A handler gets the raw body bytes (signatures are
checked over them) and returns the answer; an exception in it is logged and answered 500 without details.
A callback that cannot be stored now (StorageUnavailable) is answered 503 without details and without a
traceback (the store has logged the fault once): it is not acknowledged, so the platform sends it again.
The operator CLI never comes through this listener: it uses the local control socket.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web

from lanectl.service.ports import StorageUnavailable

log = logging.getLogger("lanectl.http")

Health = Callable[[], Awaitable[dict[str, Any]]]
# (raw body, request content type) -> (answer body, answer content type)
BodyHandler = Callable[[bytes, str], Awaitable[tuple[bytes, str]]]


class CallbackServer:
    def __init__(self, host: str, port: int, *, max_body_kb: int, health: Health) -> None:
        self.host, self.port = host, port
        self.app = web.Application(client_max_size=max_body_kb * 1024)
        self.app.router.add_get("/healthz", self._healthz)
        self._health = health
        self._runner: Optional[web.AppRunner] = None

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

    async def start(self) -> None:
        # in-flight platform calls get 2 s to finish on stop (a held request must not delay a restart)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]  # the real port when 0 was asked for
        log.info("http listener on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        body = await self._health()
        ok = body.get("ok", False)
        return web.json_response(body, status=200 if ok else 503, dumps=_dumps)


def _dumps(value: Any) -> str:
    import json
    return json.dumps(value, ensure_ascii=False, default=str)
