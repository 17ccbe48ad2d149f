"""Links the payment platforms fetch the cameras' pictures by (Bolink inpark_img / outpark_img, tdzn enterPic /
leavePic: all take a URL, none takes the file).

The pictures stay on the lane PC under `<state>/images/<lane>/<name>.jpg`; the public listener serves them at
`GET /images/<lane>/<name>.jpg?t=<token>`. The token is an HMAC of the path under a key kept in the state
directory (made on first start), so a link is only known to whoever we sent it to: names carry a time and
cannot be guessed past. A wrong token and a missing (pruned) file get the same 404.

`site.images.public_url` is how a platform reaches that listener from outside (the lot's public address or a
reverse proxy in front of it); without it pictures are never linked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections import Counter
from pathlib import Path
from typing import Awaitable, Callable, Optional

from aiohttp import web

log = logging.getLogger("lanectl.images")

ROUTE = "/images/{lane}/{name}"
LinkFn = Callable[[Optional[str]], Optional[str]]  # a record's picture path -> the link platforms fetch, or None
KEY_FILE = "image-links.key"
_NAME = re.compile(r"[0-9A-Za-z_.-]{1,120}\.jpg")
_LANE = re.compile(r"[0-9A-Za-z_]{1,64}")  # lane ids (config.LANE_ID is stricter)
TOKEN_HEX = 32  # 128 bits of the HMAC


class ImageLinks:
    def __init__(self, root: Path, public_url: str, key: bytes) -> None:
        self.root = Path(root).resolve()
        self.base = public_url.rstrip("/")
        self._key = key
        self.counts: Counter[str] = Counter()

    @classmethod
    def open(cls, root: Path, public_url: str, state_dir: Path) -> "ImageLinks":
        """With the key kept in `state_dir` (written 0600 on first use, so links survive restarts)."""
        return cls(root, public_url, load_or_make_key(Path(state_dir) / KEY_FILE))

    def url(self, image: Optional[str]) -> Optional[str]:
        """The link for a picture a record points at; None when pictures are not linked or it is not ours."""
        if not self.base or not image:
            return None
        try:
            lane, name = Path(image).resolve().relative_to(self.root).parts
        except ValueError:  # outside the images folder, or not lane/name
            return None
        if not (_LANE.fullmatch(lane) and _NAME.fullmatch(name)):
            return None
        return f"{self.base}/{lane}/{name}?t={self.token(lane, name)}"

    def token(self, lane: str, name: str) -> str:
        return hmac.new(self._key, f"{lane}/{name}".encode(), hashlib.sha256).hexdigest()[:TOKEN_HEX]

    def resolve(self, lane: str, name: str, token: str) -> Optional[Path]:
        """The file a link names, if the token is right and the file is still kept."""
        if not (_LANE.fullmatch(lane) and _NAME.fullmatch(name)):
            return None
        if not hmac.compare_digest(token.encode(), self.token(lane, name).encode()):
            return None
        path = self.root / lane / name
        return path if path.is_file() else None

    def route(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The GET handler for ROUTE on the public listener."""
        async def handler(request: web.Request) -> web.StreamResponse:
            lane, name = request.match_info["lane"], request.match_info["name"]
            path = self.resolve(lane, name, request.query.get("t", ""))
            if path is None:
                self.counts["refused"] += 1
                return web.Response(status=404, text="no such picture")
            self.counts["served"] += 1
            return web.FileResponse(path, headers={"Content-Type": "image/jpeg", "Cache-Control": "private"})
        return handler


def no_links(image: Optional[str]) -> Optional[str]:
    """Pictures are not linked (no public URL configured)."""
    return None


def load_or_make_key(path: Path) -> bytes:
    """32 random bytes kept in `path`; made (atomically, 0600) when missing or unreadable as a key."""
    try:
        key = bytes.fromhex(path.read_text().strip())
        if len(key) >= 16:
            return key
        log.warning("%s holds no usable key; making a new one (earlier picture links stop working)", path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s); making a new key (earlier picture links stop working)", path, exc)
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return key
