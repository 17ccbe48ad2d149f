"""Bolink SDK "HTTP mode" downlink: the lane PC behind NAT fetches the platform's messages itself.

    login (upload.do, no token) -> token
    loop: download.do {"token"} (the server holds ~30 s) -> a signed message or "no message"
          message -> handle(msg) (the same BolinkInbound handlers as the callback URL) -> reply uploaded

One task owns the token and the loop; messages are handled one at a time, in the order they arrive.
The client never hammers: a "no message" that comes back early is paced, and failures (transport, 5xx,
refused login) back off exponentially with jitter. Logs say once when the downlink starts failing and once
when it recovers. A reply that cannot be uploaded is given up after a few tries: the platform re-delivers an
unanswered message, and the handlers are idempotent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any, Awaitable, Callable, Optional

import aiohttp

from lanectl.providers.bolink.client import SdkLogin
from lanectl.providers.bolink.config import BolinkConfig
from lanectl.providers.bolink import codec as bl
from lanectl.service.ports import StorageUnavailable
from lanectl.service.settlement import ProviderUnavailable

log = logging.getLogger("lanectl.bolink")

Handler = Callable[[bl.SignedMessage], Awaitable[Optional[bytes]]]
_HEADERS = {"Content-Type": "application/json;charset=utf-8"}


class _TokenRejected(Exception):
    """The platform no longer knows our token (token无效 / 车场没有登录)."""


def _token_error(errmsg: str) -> bool:
    return bl.ERR_TOKEN in errmsg or bl.ERR_NOT_LOGGED_IN in errmsg


def _rejects_token(body: bytes) -> bool:
    """A download answer that carries no message but says the token is not (or no longer) valid."""
    try:
        d = json.loads(body.decode("utf-8").lstrip("\ufeff"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    if not isinstance(d, dict):
        return False
    errmsg = d.get("errmsg")
    return isinstance(errmsg, str) and _token_error(errmsg)


class BolinkDownlink:
    def __init__(self, cfg: BolinkConfig, key: str, session: aiohttp.ClientSession, handle: Handler, *,
                 poll_timeout_s: float = 40.0, min_poll_interval_s: float = 1.0, backoff_initial_s: float = 1.0,
                 backoff_max_s: float = 60.0, upload_attempts: int = 3, upload_retry_s: float = 0.5,
                 login: Optional[SdkLogin] = None) -> None:
        """`login`: the lot connection's login shared with the SDK uplink (bolink.uplink: sdk), so the two use
        one token and never log each other out."""
        self.cfg, self._key, self._session, self._handle = cfg, key, session, handle
        self._shared = login
        # longer than the server's hold, so a held poll ends with the server's answer, not our timeout
        self.poll_timeout_s = max(poll_timeout_s, cfg.timeout_s)
        self.min_poll_interval_s = min_poll_interval_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.upload_attempts, self.upload_retry_s = max(1, upload_attempts), upload_retry_s
        self._token: Optional[str] = None
        self._polled_since_login = False
        self._failing = False
        self._backoff_step = 0
        self._last_error: Optional[str] = None
        self.counts = {"messages": 0, "replies": 0, "failures": 0, "bad_signature": 0, "malformed": 0,
                       "logins": 0, "polls": 0}

    # ------------------------------------------------------------------------------------------ public
    def status(self) -> dict[str, Any]:
        return {"logged_in": self._token is not None, "failing": self._failing, "last_error": self._last_error,
                **self.counts}

    async def run(self) -> None:
        """Log in, poll, handle, reply — until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._shared is not None and self._shared.token not in (None, self._token):
                    self._token = self._shared.token  # the uplink logged in again meanwhile
                if self._token is None:
                    try:
                        await self._login()
                    except ProviderUnavailable as exc:
                        await self._fail_and_wait(str(exc))
                        continue
                started = loop.time()
                try:
                    body = await self._download()
                except ProviderUnavailable as exc:
                    await self._fail_and_wait(str(exc))
                    continue
                except _TokenRejected:
                    self._forget_token()
                    if not self._polled_since_login:
                        # a token refused right after login: do not spin login -> poll -> login
                        await self._fail_and_wait("download.do refused a fresh token")
                    else:
                        log.info("bolink downlink: token no longer valid, logging in again")
                    continue
                self._polled_since_login = True
                self._recovered()
                msg = self._parse(body)
                if msg is None:
                    # the server should hold "no message" ~30 s; one that answers at once is not hammered
                    rest = self.min_poll_interval_s - (loop.time() - started)
                    if rest > 0:
                        await asyncio.sleep(rest)
                    continue
                await self._deliver(msg)
        finally:
            self._token = None

    # ------------------------------------------------------------------------------------------ steps
    def _forget_token(self) -> None:
        if self._shared is not None:
            self._shared.invalidate(self._token)
        self._token = None

    async def _login(self) -> None:
        cfg = self.cfg
        if self._shared is not None:
            fresh = self._shared.token is None or self._shared.token == self._token
            self._token = await self._shared.login(stale=self._token)
            self._polled_since_login = False
            if fresh:
                self.counts["logins"] += 1
            return
        try:
            body = bl.encode_upload("login", bl.login_data(cfg.union_id, cfg.park_id, cfg.local_id or cfg.park_id),
                                    self._key)
            token = bl.parse_login_answer(await self._post(bl.HTTP_MODE_PATHS["upload"], body, cfg.timeout_s))
        except bl.Refused as exc:
            raise ProviderUnavailable(f"bolink login refused: {exc.errmsg or '(no errmsg)'}") from None
        except bl.BolinkError as exc:
            raise ProviderUnavailable(f"bolink login: {exc}") from None
        self._token = token
        self._polled_since_login = False
        self.counts["logins"] += 1
        log.info("bolink downlink: logged in as park %s", cfg.park_id)

    async def _download(self) -> bytes:
        assert self._token is not None
        self.counts["polls"] += 1
        body = await self._post(bl.HTTP_MODE_PATHS["download"], bl.compact({"token": self._token}),
                                self.poll_timeout_s)
        if _rejects_token(body):
            raise _TokenRejected()
        return body

    def _parse(self, body: bytes) -> Optional[bl.SignedMessage]:
        try:
            msg = bl.parse_download(body, self._key)
        except bl.BadSignature as exc:
            self.counts["bad_signature"] += 1
            log.warning("bolink downlink: message refused, %s (not handled, not answered)", exc)
            return None
        except bl.BolinkError as exc:
            self.counts["malformed"] += 1
            log.warning("bolink downlink: malformed message dropped: %s", exc)
            return None
        if msg is not None:
            self.counts["messages"] += 1
        return msg

    async def _deliver(self, msg: bl.SignedMessage) -> None:
        try:
            reply = await self._handle(msg)
        except StorageUnavailable:  # not stored: left unanswered, so it comes again (the store logged the fault)
            self._count_failure(f"handler for {msg.service_name or '?'}: storage unavailable")
            return
        except Exception as exc:  # a handler bug must not stop the downlink; unanswered, it comes again
            self._count_failure(f"handler for {msg.service_name or '?'}: {type(exc).__name__}: {exc}")
            log.exception("bolink downlink: handling %s failed", msg.service_name or "a message")
            return
        if reply is not None:
            await self._reply(msg, reply)

    async def _reply(self, msg: bl.SignedMessage, reply: bytes) -> bool:
        """Upload the handler's reply: its exact text is the signed data, service_name from it (or the
        message's). data_target is left out, as seed 003 says for HTTP mode."""
        try:
            text = reply.decode("utf-8")
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (UnicodeDecodeError, ValueError) as exc:
            self._count_failure(f"reply to {msg.service_name}: unusable ({exc})")
            log.error("bolink downlink: reply to %s is not a JSON object: %s", msg.service_name, exc)
            return False
        name = data.get("service_name") if isinstance(data.get("service_name"), str) else ""
        name = name or msg.service_name
        error = ""
        for attempt in range(1, self.upload_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.upload_retry_s * (attempt - 1))
            try:
                if self._token is None:
                    await self._login()
                assert self._token is not None
                body = bl.encode_upload(name, text, self._key, self._token)
                answer = bl.parse_answer(await self._post(bl.HTTP_MODE_PATHS["upload"], body, self.cfg.timeout_s))
            except ProviderUnavailable as exc:
                error = str(exc)
                continue
            except bl.BolinkError as exc:
                error = f"upload answer unreadable: {exc}"
                continue
            if answer.state == 1 or answer.duplicate:
                self.counts["replies"] += 1
                return True
            error = f"upload refused: {answer.errmsg or answer.state}"
            if _token_error(answer.errmsg):
                self._forget_token()  # log in again, then retry
            elif not answer.rate_limited:
                break  # a bad signature or a refusal: the same bytes would be refused again
        self._count_failure(f"reply to {name}: {error}")
        log.warning("bolink downlink: reply to %s not delivered (%s); the platform will ask again", name, error)
        return False

    async def _post(self, path: str, body: bytes, timeout_s: float) -> bytes:
        url = self.cfg.base_url + path
        try:
            async with self._session.post(url, data=body, headers=_HEADERS,
                                          timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise ProviderUnavailable(f"bolink {path}: HTTP {resp.status}")
                return raw
        except asyncio.TimeoutError:
            raise ProviderUnavailable(f"bolink {path}: no answer within {timeout_s:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ProviderUnavailable(f"bolink {path}: {type(exc).__name__}: {exc}") from None

    # ------------------------------------------------------------------------------------------ health
    def _count_failure(self, error: str) -> None:
        self.counts["failures"] += 1
        self._last_error = error

    async def _fail_and_wait(self, error: str) -> None:
        self._count_failure(error)
        if not self._failing:
            self._failing = True
            log.warning("bolink downlink failing: %s (retrying with backoff)", error)
        delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** self._backoff_step)
        self._backoff_step = min(self._backoff_step + 1, 30)  # past the cap anyway; keeps 2**n a small number
        # equal jitter: many booth PCs of a lot do not come back in step after an outage
        await asyncio.sleep(delay / 2 + random.random() * delay / 2)

    def _recovered(self) -> None:
        self._backoff_step = 0
        if self._failing:
            self._failing = False
            log.warning("bolink downlink recovered (last error: %s)", self._last_error)
