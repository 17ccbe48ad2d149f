"""Publisher for a plain JSON webhook (the lot's own back office): one POST per outbox item.

Body `{"kind", "key", "payload"}`, header `Idempotency-Key: <key>` so a resend after a lost answer is
harmless. Answers map to outcomes:
  2xx, 409 (already have it)                     -> DONE
  401 403 404 408 425 429, 5xx, 1xx/3xx, network -> RETRY  (the destination or our config is wrong, or it is
                                                            busy: keep the item, the relay logs the outage)
  any other 4xx (400, 413, 422 ...)              -> REJECT (this item will never be accepted)
"""

from __future__ import annotations

import asyncio
import json
from typing import Optional

import aiohttp

from lanectl.service.outbox import Outcome, OutboxItem

# 4xx answers that are about the endpoint, the credentials or load — not about the item. Dead-lettering on
# them would throw away every upload while a token is expired or a proxy is misrouted.
RETRY_4XX = frozenset({401, 403, 404, 408, 425, 429})
ERROR_BODY_CHARS = 200


class WebhookPublisher:
    def __init__(self, url: str, session: aiohttp.ClientSession, timeout_s: float = 10.0,
                 token: Optional[str] = None) -> None:
        self._url = url
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._token = token

    async def publish(self, item: OutboxItem) -> Outcome:
        try:
            body = json.dumps({"kind": item.kind, "key": item.key, "payload": item.payload},
                              ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            return Outcome.reject(f"payload is not JSON: {exc}")
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": item.key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            async with self._session.post(self._url, data=body, headers=headers, timeout=self._timeout,
                                          allow_redirects=False) as resp:
                if 200 <= resp.status < 300 or resp.status == 409:
                    return Outcome.done()
                text = (await resp.text(errors="replace"))[:ERROR_BODY_CHARS].strip()
                error = f"HTTP {resp.status}" + (f": {text}" if text else "")
                if 400 <= resp.status < 500 and resp.status not in RETRY_4XX:
                    return Outcome.reject(error)
                return Outcome.retry(error)
        except asyncio.TimeoutError:
            return Outcome.retry(f"timeout after {self._timeout.total:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome.retry(f"{type(exc).__name__}: {exc}")
