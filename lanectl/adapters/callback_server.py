"""The HTTP listener that cameras and payment platforms reach (site `http.listen`).

Today it answers `GET /healthz` for monitoring; camera pushes and platform callbacks register their routes
here. Bodies are bounded (`http.max_body_kb`). The operator CLI never comes through this listener: it uses
the local control socket.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web

log = logging.getLogger("lanectl.http")

Health = Callable[[], Awaitable[dict[str, Any]]]


class CallbackServer:
    def __init__(self, host: str, port: int, *, max_body_kb: int, health: Health) -> None:
        self.host, self.port = host, port
        self.app = web.Application(client_max_size=max_body_kb * 1024)
        self.app.router.add_get("/healthz", self._healthz)
        self._health = health
        self._runner: Optional[web.AppRunner] = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
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
