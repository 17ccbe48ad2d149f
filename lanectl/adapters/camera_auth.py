"""Who may push to a camera's URL: the checks a real Vzenith camera can pass, made before the body is read.

A camera's push settings take a URL (so a per-camera secret can ride in its path: /camera/<lane>/<token>) and
HTTP basic auth (user name + password). `CameraAuth.check` answers None (let it in) or a Refusal:
403 when the source address is not on the camera's `allow_from` list, 401 when the credentials are missing or
wrong. Secrets are compared in constant time (hmac.compare_digest), every one of them whatever the first gave,
so the answer's timing does not say which part was wrong.

`allow_from` alone is not authentication: on a LAN a source address is easily spoofed, so the config loader
asks for basic auth or a token as well, or an explicit `insecure: true`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import string
from dataclasses import dataclass
from typing import Callable, Optional

from lanectl.config.base import SecretRef
from lanectl.config.devices import IpNetwork, VzenithCameraConfig

TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-_.~")  # URL path safe without escaping
MIN_TOKEN_LEN = 16
_MAX_HEADER = 1024  # an Authorization header longer than any camera's is refused unread


class CredentialError(ValueError):
    """A configured credential the camera could not send (too short, characters a URL or header cannot
    carry). The message names where it is configured."""


@dataclass(frozen=True)
class Refusal:
    status: int  # 401 credentials missing or wrong, 403 source not allowed
    reason: str  # for the log and the camera status: never a secret


NO_CREDENTIALS = Refusal(401, "no credentials")
WRONG_CREDENTIALS = Refusal(401, "wrong credentials")
SOURCE_NOT_ALLOWED = Refusal(403, "source address not allowed")


@dataclass(frozen=True, repr=False)
class CameraAuth:
    allow_from: tuple[IpNetwork, ...] = ()
    username: Optional[str] = None  # basic auth, with password
    password: Optional[str] = None
    token: Optional[str] = None  # the last segment of the push URL

    @property
    def basic(self) -> bool:
        return self.username is not None

    def check(self, peer: Optional[str], authorization: Optional[str], token: Optional[str]) -> Optional[Refusal]:
        """peer: the connection's source address; authorization: the header as sent; token: the path segment
        after /camera/<lane>/ (None when the camera posted to /camera/<lane>)."""
        if self.allow_from and not _allowed(peer, self.allow_from):
            return SOURCE_NOT_ALLOWED
        given = False
        ok = True
        if self.token is not None:
            given |= token is not None
            ok &= _same(token or "", self.token)
        elif token is not None:  # a URL with a token where none is configured: not this camera's URL
            given, ok = True, False
        if self.basic:
            user, password = _basic(authorization)
            given |= authorization is not None
            ok &= _same(user, self.username or "") & _same(password, self.password or "")
        if ok:
            return None
        return WRONG_CREDENTIALS if given else NO_CREDENTIALS


def camera_auth(cfg: VzenithCameraConfig, secret: Callable[[SecretRef, str], str], where: str) -> CameraAuth:
    """The camera's checks with its secrets resolved (`secret` is Config.secret: ConfigError when one is
    missing). CredentialError for a credential the camera could not send."""
    username = password = token = None
    if cfg.basic_auth is not None:
        username = cfg.basic_auth.username
        password = secret(cfg.basic_auth.password, f"{where}.basic_auth.password")
        if not password or not password.isprintable():
            raise CredentialError(f"{where}.basic_auth.password: empty or with control characters")
    if cfg.token is not None:
        token = secret(cfg.token, f"{where}.token")
        if len(token) < MIN_TOKEN_LEN or not set(token) <= TOKEN_CHARS:
            raise CredentialError(f"{where}.token: the secret must be at least {MIN_TOKEN_LEN} characters of "
                                  "A-Z a-z 0-9 - _ . ~ (it is part of the camera's push URL)")
    return CameraAuth(cfg.allow_from, username, password, token)


def _allowed(peer: Optional[str], networks: tuple[IpNetwork, ...]) -> bool:
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])  # fe80::1%eth0
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener sees IPv4 cameras as ::ffff:a.b.c.d
    return any(address.version == net.version and address in net for net in networks)


def _basic(header: Optional[str]) -> tuple[str, str]:
    """(user, password) of a Basic Authorization header; ("", "") when absent or unreadable."""
    if not header or len(header) > _MAX_HEADER:
        return "", ""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return "", ""
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else ("", "")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
