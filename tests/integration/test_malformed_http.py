"""Issue 14: every kind of malformed HTTP the listener can meet (hil/fuzz/raw_http.py: bad request lines, bad
headers, bad Content-Length, bad chunking, bad compression, other protocols, garbage) is refused with a 4xx or
a closed connection — never a 5xx — and costs the log at most one line per interval, never a traceback, at
INFO and at DEBUG alike."""

from __future__ import annotations

import logging
import time
from typing import Any, AsyncIterator

import pytest

from hil.fuzz.raw_http import KINDS, send_raw
from lanectl.adapters.callback_server import CallbackServer

INTERVAL_S = 1.0


async def _healthy() -> dict[str, Any]:
    return {"ok": True}


async def _echo(body: bytes, content_type: str) -> tuple[bytes, str]:
    return b'{"state":1}', "application/json"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(logging.Formatter("%(levelname)s %(name)s %(message)s").format(r) for r in self.records)


@pytest.fixture(params=[logging.INFO, logging.DEBUG], ids=["info", "debug"])
async def listener(request) -> AsyncIterator[tuple[CallbackServer, Lines]]:
    lines = Lines()
    roots = [logging.getLogger("lanectl"), logging.getLogger("aiohttp")]
    old = [logger.level for logger in roots]
    for logger in roots:
        logger.addHandler(lines)
        logger.setLevel(request.param)
    server = CallbackServer("127.0.0.1", 0, max_body_kb=64, health=_healthy, report_interval_s=INTERVAL_S,
                            body_timeout_s=2.0)
    server.add_post("/bolink", _echo)
    await server.start()
    try:
        yield server, lines
    finally:
        await server.stop()
        for logger, level in zip(roots, old):
            logger.removeHandler(lines)
            logger.setLevel(level)


async def test_every_kind_of_malformed_request_is_a_4xx_or_a_close_and_at_most_a_line_per_interval(listener):
    server, lines = listener
    lines.records.clear()  # the listener's start line
    started = time.monotonic()
    answers = {kind: await send_raw("127.0.0.1", server.port, build("/bolink"), timeout=4.0)
               for kind, build in KINDS.items()}
    elapsed = time.monotonic() - started
    server_errors = {kind: a for kind, a in answers.items() if a.startswith(("5", "not http", "timeout"))}
    assert not server_errors, f"{server_errors}\n{lines.text()}"
    assert not [r for r in lines.records if r.exc_info or "Traceback" in r.getMessage()], lines.text()
    tallied = [r for r in lines.records if r.levelno >= logging.INFO]
    assert 1 <= len(tallied) <= 1 + int(elapsed / INTERVAL_S) + 1, lines.text()
    assert all("malformed requests" in r.getMessage() for r in tallied), lines.text()


async def test_a_handler_that_raises_is_a_bug_and_keeps_its_traceback(listener):
    server, lines = listener

    async def broken(request):
        raise KeyError("a bug, not the client's fault")

    server.app.router._frozen = False  # a route added after start, for this test only
    server.app.router.add_get("/bug", broken)
    answer = await send_raw("127.0.0.1", server.port, b"GET /bug HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer == "500"
    assert [r for r in lines.records if r.exc_info and r.exc_info[0] is KeyError], lines.text()
    assert server._server_log is not None and server._server_log.bad_requests.total == 0
