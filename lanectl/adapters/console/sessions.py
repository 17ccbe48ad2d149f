"""Console sessions and login rate limiting, in memory (a restart logs everybody out).

Time comes from the injected monotonic clock, so idle logout and lockouts are tested by moving a fake clock."""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass, field
from typing import Callable, Optional

log = logging.getLogger("lanectl.console")
MAX_TRACKED = 10_000  # sources / names with recent failures kept; the oldest are forgotten past this


@dataclass
class Session:
    token: str
    user: str
    role: str
    csrf: str
    source: str
    last_seen: float

    def csrf_ok(self, given: Optional[str]) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class Sessions:
    def __init__(self, idle_s: float, monotonic: Callable[[], float]) -> None:
        self.idle_s = idle_s
        self._now = monotonic
        self._by_token: dict[str, Session] = {}

    def open(self, user: str, role: str, source: str) -> Session:
        s = Session(secrets.token_urlsafe(32), user, role, secrets.token_urlsafe(32), source, self._now())
        self._by_token[s.token] = s
        return s

    def get(self, token: Optional[str]) -> Optional[Session]:
        """The live session of `token`; one idle past `idle_s` is ended here (idle logout)."""
        s = self._by_token.get(token) if token else None
        if s is not None and self._now() - s.last_seen > self.idle_s:
            del self._by_token[s.token]
            log.info("console: %s logged out after %d min without activity", s.user, self.idle_s // 60)
            return None
        return s

    def touch(self, s: Session) -> None:
        s.last_seen = self._now()

    def close(self, token: str) -> None:
        self._by_token.pop(token, None)

    def all(self) -> list[Session]:
        return [s for s in list(self._by_token.values()) if self.get(s.token) is not None]


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    last: float = 0.0


@dataclass
class LoginLimiter:
    """`max_failures` failed logins from one source or for one name lock it out for `lockout_s` (logged once per
    lockout); failures are forgotten after a success or a quiet quarter of an hour."""

    max_failures: int
    lockout_s: float
    monotonic: Callable[[], float]
    _keys: dict[str, _Failures] = field(default_factory=dict)

    def locked_for(self, *keys: str) -> float:
        """Seconds the longest lockout among `keys` still runs; 0 when none is locked."""
        now = self.monotonic()
        return max((f.locked_until - now for k in keys if (f := self._keys.get(k)) is not None), default=0.0) \
            if keys else 0.0

    def failed(self, *keys: str) -> None:
        now = self.monotonic()
        locked = []
        for key in keys:
            f = self._keys.setdefault(key, _Failures())
            if now - f.last > 900 or (f.locked_until and now >= f.locked_until):
                f.count, f.locked_until = 0, 0.0  # a new series
            f.count, f.last = f.count + 1, now
            if f.count == self.max_failures:
                f.locked_until = now + self.lockout_s
                locked.append(key)
        if locked:  # one line per lockout, not one per refused attempt
            log.warning("console: %d failed logins: %s locked out for %g s", self.max_failures, " and ".join(locked),
                        self.lockout_s)
        while len(self._keys) > MAX_TRACKED:
            del self._keys[next(iter(self._keys))]

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._keys.pop(key, None)
