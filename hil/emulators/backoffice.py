"""A lot's back office that receives lanectl's record uploads (the `uploads.webhook` destination).

It can be taken down (503) and brought back, so tests and the demo show the outbox holding uploads while the
network is down and delivering them, in order and once each, when it is back.

    python -m hil.emulators.backoffice --port 8790
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from aiohttp import web


@dataclass
class Received:
    key: str
    kind: str
    payload: dict[str, Any]


@dataclass
class Backoffice:
    available: bool = True
    token: Optional[str] = None
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    port: int = 0
    _runner: Optional[web.AppRunner] = None
    _seen: set[str] = field(default_factory=set)  # received keys (a day's backlog: thousands)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/records"

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/records", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def keys(self) -> list[str]:
        return [r.key for r in self.received]

    async def _post(self, request: web.Request) -> web.Response:
        if not self.available:
            self.refused += 1
            return web.Response(status=503, text="back office down")
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401)
        body = await request.json()
        key = request.headers.get("Idempotency-Key", body.get("key", ""))
        if key in self._seen:
            return web.Response(status=409, text="already have it")
        self._seen.add(key)
        self.received.append(Received(key, body.get("kind", ""), body.get("payload", {})))
        return web.json_response({"ok": True})


async def _main(port: int) -> None:
    office = Backoffice()
    await office.start(port)
    print(f"back office listening on {office.url}", flush=True)
    try:
        while True:
            await asyncio.sleep(5)
            print(json.dumps({"received": len(office.received)}), flush=True)
    finally:
        await office.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8790)
    asyncio.run(_main(ap.parse_args().port))
