"""The console's routes, added to the LAN listener's router only (the public face answers 404 for them).

    GET  /console/                 the page; /console/static/<file> its script and style (lanectl/data/console/)
    POST /console/login            {user, password} -> session cookie + {user, role, csrf}; 401 / 429 locked out
    GET  /console/session          who is logged in (+ csrf) or 401
    POST /console/logout | /console/touch   end the session | mark the operator active (idle logout)
    GET  /console/events           SSE: a snapshot of every lane, then each lane's changes (ids: the feed's seq)
    POST /console/lanes/<id>/release   {reason, amount_fen?, record_id?}: a lane request audited as console:<user>
    POST /console/lanes/<id>/refuse|correct|admit   the booth's other actions (console/booth.py)
    GET  /console/sessions         supervisor: who is logged in
    GET  /console/images/<record>  POST /console/topup: the lane card's (card_routes.py)
    GET  /console/records, /shift, /settlements, /outbox (+ .csv)   the records and shift tab (records.py)

Every route but the page, its assets and login needs a session (401 JSON); every POST but login needs the
session's CSRF token in the X-CSRF-Token header (403 JSON). Errors are JSON with `error` and `message`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Protocol

from aiohttp import web

from lanectl.adapters.console.accounts import AccountError, Accounts
from lanectl.adapters.console.card_routes import add_card_routes
from lanectl.adapters.console.booth import add_booth_routes
from lanectl.adapters.console.live import LiveFeed
from lanectl.adapters.console.sessions import LoginLimiter, Session, Sessions
from lanectl.adapters.control_socket import ControlError

log = logging.getLogger("lanectl.console")
COOKIE = "lanectl_console"
ASSETS = Path(__file__).resolve().parents[2] / "data" / "console"
HEARTBEAT_S = 15.0  # an SSE comment this often: proxies keep the stream, a dead client is noticed
MAX_REASON = 200
MAX_AMOUNT_FEN = 10_000_000  # 100 000 yuan: anything above is a typing slip


class ConsoleActions(Protocol):
    async def open_barrier(self, *, lane: str, operator: str, reason: str,
                           amount_fen: Optional[int]) -> dict[str, Any]: ...

    async def record_image(self, record_id: str) -> Optional[str]: ...

    async def topup(self, *, plate: str, amount_fen: int, operator: str, reason: str) -> dict[str, Any]: ...
    async def booth_action(self, action: str, *, lane: str, operator: str, reason: str = "", plate: str = "",
                           record_id: str = "") -> dict[str, Any]: ...


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status)


Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


class ConsoleServer:
    records: Optional[Any] = None  # the records and shift tab's routes (records.py), set by App._console

    def __init__(self, accounts: Accounts, sessions: Sessions, limiter: LoginLimiter, feed: LiveFeed,
                 actions: ConsoleActions, assets: Path = ASSETS, images: Optional[Path] = None) -> None:
        self.accounts, self.sessions, self.limiter, self.feed = accounts, sessions, limiter, feed
        self.actions = actions
        self.assets = assets
        self.images = images  # the cameras' pictures (served by record id, only from under this folder)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/console", self._to_page)
        router.add_get("/console/", self._page)
        router.add_get("/console/static/{name}", self._static)
        router.add_post("/console/login", self._login)
        router.add_get("/console/session", self._authed(self._session, post=False))
        router.add_post("/console/logout", self._authed(self._logout))
        router.add_post("/console/touch", self._authed(self._touch))
        router.add_get("/console/events", self._authed(self._events, post=False, activity=False))
        router.add_post("/console/lanes/{lane}/release", self._authed(self._release))
        router.add_get("/console/sessions", self._authed(self._list_sessions, post=False, role="supervisor"))
        add_card_routes(self, router)
        if self.records is not None:
            self.records.add_routes(router, self._authed)  # GET /console/records..., /shift, /settlements, /outbox
        add_booth_routes(self, router)  # refuse / correct / admit (console/booth.py)

    # --- the page ------------------------------------------------------------------------------------------
    async def _to_page(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/console/")

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "index.html" or "/" in name or name.startswith("."):
            raise web.HTTPNotFound()
        return self._file(name)

    def _file(self, name: str) -> web.StreamResponse:
        path = self.assets / name
        if not path.is_file():
            raise web.HTTPNotFound()
        types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        return web.Response(body=path.read_bytes(), content_type=types.get(path.suffix, "application/octet-stream"),
                            charset="utf-8" if path.suffix != ".png" else None,
                            headers={"Cache-Control": "no-cache", "X-Frame-Options": "DENY",
                                     "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"})

    # --- sessions ------------------------------------------------------------------------------------------
    def _authed(self, handler: Handler, *, post: bool = True, role: Optional[str] = None,
                activity: bool = True) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def route(request: web.Request) -> web.StreamResponse:
            session = self.sessions.get(request.cookies.get(COOKIE))
            if session is None:
                return _error(401, "no_session", "log in first")
            try:
                user = self.accounts.user(session.user)
            except AccountError as exc:
                log.error("console: %s", exc)
                return _error(503, "accounts_unreadable", "the accounts file cannot be read; see the daemon's log")
            if user is None:  # removed since: its sessions end
                self.sessions.close(session.token)
                return _error(401, "no_session", "this account no longer exists")
            session.role = user.role
            if post and not session.csrf_ok(request.headers.get("X-CSRF-Token")):
                return _error(403, "csrf", "missing or wrong X-CSRF-Token header")
            if role is not None and session.role != role:
                return _error(403, "forbidden", f"only a {role} may do this")
            if activity:
                self.sessions.touch(session)
            return await handler(request, session)
        return route

    async def _login(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        if body is None or not isinstance(body.get("user"), str) or not isinstance(body.get("password"), str):
            return _error(400, "bad_request", "expected JSON {user, password}")
        name, source = body["user"].strip()[:64], request.remote or "?"
        keys = (f"source {source}", f"user {name}")
        wait = self.limiter.locked_for(*keys)
        if wait > 0:
            return _error(429, "locked_out", "too many failed logins; try again later", retry_after_s=int(wait) + 1)
        try:
            user = await asyncio.get_running_loop().run_in_executor(None, self.accounts.check, name,
                                                                    body["password"])
        except AccountError as exc:
            log.error("console: %s", exc)
            return _error(503, "accounts_unreadable", "the accounts file cannot be read; see the daemon's log")
        if user is None:
            self.limiter.failed(*keys)
            return _error(401, "bad_credentials", "wrong user name or password")
        self.limiter.succeeded(*keys)
        session = self.sessions.open(user.name, user.role, source)
        log.info("console: %s (%s) logged in from %s", user.name, user.role, source)
        answer = web.json_response(self._who(session))
        answer.set_cookie(COOKIE, session.token, path="/console", httponly=True, samesite="Strict")
        return answer

    def _who(self, session: Session) -> dict[str, Any]:
        return {"user": session.user, "role": session.role, "csrf": session.csrf,
                "idle_logout_s": self.sessions.idle_s}

    async def _session(self, request: web.Request, session: Session) -> web.StreamResponse:
        return web.json_response(self._who(session))

    async def _logout(self, request: web.Request, session: Session) -> web.StreamResponse:
        self.sessions.close(session.token)
        log.info("console: %s logged out", session.user)
        answer = web.json_response({"logged_out": True})
        answer.del_cookie(COOKIE, path="/console")
        return answer

    async def _touch(self, request: web.Request, session: Session) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def _list_sessions(self, request: web.Request, session: Session) -> web.StreamResponse:
        return web.json_response({"sessions": [{"user": s.user, "role": s.role, "source": s.source}
                                               for s in self.sessions.all()]})

    # --- live ----------------------------------------------------------------------------------------------
    async def _events(self, request: web.Request, session: Session) -> web.StreamResponse:
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                             "X-Accel-Buffering": "no"})
        await stream.prepare(request)
        resumed = request.headers.get("Last-Event-ID")
        # a (re)connect always starts from the current snapshot: whatever was missed is in it
        sent = self.feed.seq
        snapshot = {"lanes": [self.feed.views[lane] for lane in self.feed.views], "resumed": resumed is not None}
        await stream.write(_sse("snapshot", sent, snapshot))
        while True:
            await self.feed.wait(sent, HEARTBEAT_S)
            if self.feed.closed:
                return stream
            if self.sessions.get(session.token) is None:  # idle logout or logout elsewhere: the page is told
                await stream.write(_sse("logout", sent, {"reason": "session ended"}))
                return stream
            changes = self.feed.since(sent)
            if not changes:
                await stream.write(b": keep-alive\n\n")
            for seq, view in changes:
                await stream.write(_sse("lane", seq, view))
                sent = max(sent, seq)

    # --- actions -------------------------------------------------------------------------------------------
    async def _release(self, request: web.Request, session: Session) -> web.StreamResponse:
        body = await _json(request)
        reason = body.get("reason") if body is not None else None
        amount = body.get("amount_fen") if body is not None else None
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
            return _error(400, "bad_request", f"a reason is required (at most {MAX_REASON} characters)")
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)
                                   or not 0 <= amount <= MAX_AMOUNT_FEN):
            return _error(400, "bad_request", "amount_fen must be a whole number of fen between 0 and "
                          f"{MAX_AMOUNT_FEN}")
        record_id = body.get("record_id") if body is not None else None  # the car the page showed, if sent
        if record_id is not None and (not isinstance(record_id, str) or not record_id.isascii()
                                      or not record_id.replace("_", "").isalnum() or len(record_id) > 48):
            return _error(400, "bad_request", "record_id is not a record id")
        lane = request.match_info["lane"]
        operator = f"console:{session.user}"
        try:
            answer = await self.actions.open_barrier(lane=lane, operator=operator, reason=reason.strip(),
                                                     amount_fen=amount, **({"record_id": record_id} if record_id
                                                                           else {}))
        except ControlError as exc:
            return _error(exc.http_status, exc.code, exc.message)
        log.info("console: %s release at lane %s: %s (%s)", operator, lane, answer.get("outcome"),
                 answer.get("message"))
        return web.json_response(answer)


async def _json(request: web.Request) -> Optional[dict[str, Any]]:
    """The request's JSON object, or None for anything else (no form posts: those could come cross-site)."""
    if request.content_type != "application/json":
        return None
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _sse(event: str, seq: int, data: Any) -> bytes:
    return f"event: {event}\nid: {seq}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8")
