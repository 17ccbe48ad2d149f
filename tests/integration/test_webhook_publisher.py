"""WebhookPublisher against a real aiohttp server on 127.0.0.1 (and the relay draining into it)."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lanectl.adapters.clock import SystemClock
from lanectl.adapters.webhook_publisher import WebhookPublisher
from lanectl.service.outbox import Backoff, Outcome, OutboxItem, OutboxRelay, PublishResult
from tests.fakes import MemoryOutboxQueue

TZ = ZoneInfo("Asia/Shanghai")


def item(key: str = "L1_20240301080000_1-entry", payload: dict | None = None) -> OutboxItem:
    return OutboxItem(7, "webhook", "entry", key, payload if payload is not None else
                      {"plate": "粤B12345", "record_id": "L1_20240301080000_1", "fee_fen": 700},
                      0, datetime(2024, 3, 1, 8, tzinfo=TZ))


class Sink:
    """A back office: records requests; answers with the next scripted status (200 when the script is empty)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, dict]] = []  # (headers, json body)
        self.script: list[int | float] = []  # a status, or seconds to stall before answering 200
        self.seen_keys: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.requests.append((dict(request.headers), body))
        step = self.script.pop(0) if self.script else 200
        if isinstance(step, float):
            await asyncio.sleep(step)
            return web.json_response({"ok": True})
        if step == 200 and request.headers.get("Idempotency-Key") in self.seen_keys:
            return web.json_response({"error": "duplicate"}, status=409)
        if step == 200:
            self.seen_keys.add(request.headers["Idempotency-Key"])
        return web.Response(status=step, text=f"status {step} body")


@pytest.fixture
async def sink():
    s = Sink()
    app = web.Application()
    app.router.add_post("/hook", s.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    s.url = str(server.make_url("/hook"))
    yield s
    await server.close()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_posts_json_with_idempotency_key_and_token(sink, session):
    pub = WebhookPublisher(sink.url, session, timeout_s=2.0, token="s3cret")
    assert await pub.publish(item()) == Outcome.done()
    headers, body = sink.requests[0]
    assert body == {"kind": "entry", "key": "L1_20240301080000_1-entry",
                    "payload": {"plate": "粤B12345", "record_id": "L1_20240301080000_1", "fee_fen": 700}}
    assert headers["Idempotency-Key"] == "L1_20240301080000_1-entry"
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["Content-Type"].startswith("application/json")


async def test_no_token_no_authorization_header(sink, session):
    assert (await WebhookPublisher(sink.url, session, 2.0, None).publish(item())).result is PublishResult.DONE
    assert "Authorization" not in sink.requests[0][0]


async def test_a_resend_the_server_already_has_is_done(sink, session):
    pub = WebhookPublisher(sink.url, session, 2.0, None)
    assert await pub.publish(item()) == Outcome.done()
    assert await pub.publish(item()) == Outcome.done()  # answered 409
    assert len(sink.requests) == 2


@pytest.mark.parametrize("status, result", [
    (200, PublishResult.DONE), (201, PublishResult.DONE), (204, PublishResult.DONE), (409, PublishResult.DONE),
    (400, PublishResult.REJECT), (413, PublishResult.REJECT), (422, PublishResult.REJECT),
    (401, PublishResult.RETRY), (403, PublishResult.RETRY), (404, PublishResult.RETRY),
    (408, PublishResult.RETRY), (429, PublishResult.RETRY),
    (500, PublishResult.RETRY), (502, PublishResult.RETRY), (503, PublishResult.RETRY),
    (302, PublishResult.RETRY),
])
async def test_status_mapping(sink, session, status, result):
    sink.script = [status]
    outcome = await WebhookPublisher(sink.url, session, 2.0, None).publish(item())
    assert outcome.result is result
    if result is not PublishResult.DONE:
        assert outcome.error == f"HTTP {status}: status {status} body"


async def test_timeout_is_retry(sink, session):
    sink.script = [1.0]
    outcome = await WebhookPublisher(sink.url, session, timeout_s=0.1).publish(item())
    assert outcome == Outcome.retry("timeout after 0.1 s")


async def test_connection_refused_is_retry(session):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = await WebhookPublisher(f"http://127.0.0.1:{port}/hook", session, 2.0).publish(item())
    assert outcome.result is PublishResult.RETRY and "ClientConnectorError" in outcome.error


async def test_a_payload_that_is_not_json_is_rejected_without_a_request(sink, session):
    outcome = await WebhookPublisher(sink.url, session, 2.0).publish(item(payload={"x": float("nan")}))
    assert outcome.result is PublishResult.REJECT and sink.requests == []


async def test_relay_drains_into_the_webhook_in_order_through_an_outage(sink, session):
    queue = MemoryOutboxQueue()
    keys = [f"L1_20240301080000_{i}-{kind}" for i in range(3) for kind in ("entry", "exit")]
    for k in keys:
        queue.add("webhook", k.rsplit("-", 1)[1], k, {"k": k})
    sink.script = [503, 503]  # the back office is down for the first two tries
    relay = OutboxRelay(queue, {"webhook": WebhookPublisher(sink.url, session, 2.0)}, SystemClock(TZ),
                        rate_per_s={"webhook": 200.0}, backoff=Backoff(base_s=0.02, jitter=0.0))
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(200):
            if queue.pending_count() == 0:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert queue.pending_count() == 0
    sent = [body["key"] for _, body in sink.requests]
    assert sent == [keys[0]] * 3 + keys[1:]
    assert relay.status()["webhook"]["sent"] == 6 and relay.status()["webhook"]["failing_since"] is None
