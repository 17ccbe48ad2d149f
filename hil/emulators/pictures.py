"""What a payment platform does with a picture link it is sent (Bolink inpark_img / outpark_img, tdzn enterPic /
leavePic): fetch it once and keep what came back, so tests can compare it with what the camera pushed."""

from __future__ import annotations

import asyncio
from typing import Optional

import aiohttp

PENDING = (0, b"")  # being fetched
Fetched = dict[str, tuple[int, bytes]]  # link -> (HTTP status, body); -1: no answer


def wants(images: Fetched, url: object) -> bool:
    """A link not fetched yet (marked pending on the spot, so a repeated upload fetches it once)."""
    if not isinstance(url, str) or not url or url in images:
        return False
    images[url] = PENDING
    return True


async def fetch(session: Optional[aiohttp.ClientSession], url: str, images: Fetched) -> None:
    if session is None:
        images[url] = (-1, b"emulator not started")
        return
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
            images[url] = (r.status, await r.read())
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        images[url] = (-1, repr(exc).encode())
