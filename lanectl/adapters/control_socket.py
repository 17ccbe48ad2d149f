"""Local control socket: the running daemon's answer to `lanectl status|records|outbox|open`.

HTTP over a unix socket (aiohttp), never over the TCP listener that cameras and platforms reach. Access is
controlled by the file mode and group of the socket (0660, group ``lanectl``) and of its directory
(/run/lanectl, 0750): operators in the ``lanectl`` group can use the CLI, nobody else can connect.

This module only parses and validates requests and hands them to the app through :class:`ControlHandlers`
(architecture rule 2): it never touches lane state or writes records. An open request becomes an event the
app enqueues for the lane's runner; the answer is whatever the app returns.

Wire format: JSON bodies, datetimes in ISO 8601, errors as ``{"error": code, "message": text}`` with a 4xx/5xx
status. Unknown query parameters and unknown body fields are refused, so a typo never silently widens a query
or drops an operator's intention.

    GET  /status                                          -> handlers.status()
    GET  /records?plate=&lane=&since=&until=&limit=       -> {"records": [...], "count": n}
         plate is normalized; since/until ISO 8601 (no offset = local time of this PC); limit 1..1000, default 50
    GET  /outbox?limit=                                   -> handlers.outbox()   (limit default 100)
    POST /open {"lane", "operator"?, "reason", "amount_fen"?} -> handlers.open_barrier()
         operator/reason non-empty after strip, no control characters; amount_fen a non-negative integer or null
    POST /topup {"plate", "amount_fen", "operator"?, "reason"}  -> handlers.topup()
    POST /refuse {"lane", "operator"?, "reason", "record_id"?}    -> handlers.booth_action("refuse", ...)
    POST /correct {"lane", "operator"?, "plate", "record_id"?}    -> handlers.booth_action("correct", ...)
    POST /admit {"lane", "operator"?, "reason", "plate"?, "record_id"?} -> handlers.booth_action("admit", ...)
         the booth's other actions (service/booth.py); record_id: the car the operator acted on (0-9 A-Z a-z _),
         so a car gone since is answered `car_gone` instead of acting on the next one; they need the `open` role

Operators: the caller's uid comes from the kernel (SO_PEERCRED), never from the body. The gatekeeper
(adapters/operator_identity.py, from the site's `operators:` section) decides whether that uid may open or top
up, and under which name: a given `operator` must match the uid's mapped name; without one the mapped name (or,
with no section configured, the unix user name) is used. Handlers get the resolved name and the uid.

Deadlines: a client sends ``X-Lanectl-Deadline: <unix time in seconds>``, the moment after which it no longer
waits for the answer. A request read after its deadline is refused (408 ``deadline_passed``) without being
executed, and an open is handed to its lane only while the deadline holds (the lane drops it otherwise), so an
`open` whose operator gave up — e.g. it sat in the listen queue during a flood — never raises the arm later.
A request without the header gets ``DEFAULT_DEADLINE_S`` from when it is read (older clients keep working);
a deadline is never further than ``MAX_DEADLINE_S`` away.

Connections: at most ``max_connections`` at a time (more are closed at once, counted in the log), idle ones are
closed after ``idle_timeout_s``.

Error codes from here (400): unknown_field, bad_request, bad_json, bad_datetime, bad_range, bad_limit, bad_lane,
bad_plate, missing_field, bad_operator, bad_reason, bad_amount, bad_record_id; 403 not_an_operator, not_allowed,
operator_mismatch; 404 not_found, 405 method_not_allowed, 413 too_large, 408 deadline_passed, 500 internal. The app's ControlError keeps its own code and status.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import enum
import errno
import grp
import json
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from lanectl.adapters.connection_gate import ConnectionGate, GatedSite
from lanectl.adapters.log_tally import DEFAULT_INTERVAL_S, ServerLog, Tally
from lanectl.adapters.operator_identity import (AnyMember, Gatekeeper, Operator, OperatorRefused, Peer,
                                                   peer_of)
from lanectl.core.plates import normalize_plate
from lanectl.startup import EX_CANTCREAT, EX_CONFIG, EX_SOFTWARE, EX_TEMPFAIL, StartupError, os_reason

log = logging.getLogger(__name__)

DEFAULT_SOCKET_PATH = "/run/lanectl/control.sock"

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107

RECORDS_DEFAULT_LIMIT = 50
OUTBOX_DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

MAX_OPERATOR_LEN = 64
MAX_REASON_LEN = 500
MAX_PLATE_LEN = 32
# Lane ids end up inside record ids, which allow only [0-9A-Za-z_] (ARCHITECTURE rule 4).
_LANE_RE = re.compile(r"^[0-9A-Za-z_]{1,32}$")
# Largest amount we accept from an operator: 10 million yuan. Anything bigger is a typo.
MAX_AMOUNT_FEN = 1_000_000_000

_CLIENT_MAX_SIZE = 64 * 1024

DEADLINE_HEADER = "X-Lanectl-Deadline"
_DEADLINE = web.RequestKey("deadline", float)  # the request's deadline in loop time
DEFAULT_DEADLINE_S = 10.0  # a request without a deadline: counted from when the daemon reads it
MAX_DEADLINE_S = 60.0
_PROBE_TIMEOUT_S = 1.0

OPEN_FIELDS = frozenset({"lane", "operator", "reason", "amount_fen"})
TOPUP_FIELDS = frozenset({"plate", "amount_fen", "operator", "reason"})
# the booth's other actions: the fields each takes (and requires, besides lane)
BOOTH_FIELDS = {"refuse": ({"lane", "operator", "reason", "record_id"}, ("reason",)),
                "correct": ({"lane", "operator", "plate", "record_id"}, ("plate",)),
                "admit": ({"lane", "operator", "reason", "plate", "record_id"}, ("reason",))}
_RECORD_RE = re.compile(r"^[0-9A-Za-z_]{1,48}$")


class ControlError(Exception):
    """A refusal the app (or this module) explains to the operator: ``code`` is a short machine word
    (``unknown_lane``, ``lane_faulted``, ``bad_request``...), ``message`` a sentence for a human, and
    ``http_status`` the status the control socket answers with (409 unless said otherwise)."""

    def __init__(self, code: str, message: str, http_status: int = 409) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class ControlSocketError(StartupError):
    """The control socket cannot be set up (path too long, another daemon live on it, not a socket...).
    A :class:`StartupError` naming the path, so `lanectl run` ends with one line and a sysexits code."""

    def __init__(self, path: str, reason: str, exit_code: int = EX_CANTCREAT) -> None:
        super().__init__(f"control socket {path}", reason, exit_code)


class ControlHandlers(Protocol):
    """What the app offers to the control socket. Implementations enqueue and ask; they never block the loop."""

    async def status(self) -> dict[str, Any]: ...

    async def records(
        self,
        *,
        plate: str | None,
        lane: str | None,
        since: _dt.datetime | None,
        until: _dt.datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]: ...

    async def outbox(self, *, limit: int) -> dict[str, Any]:
        """``{"pending": [...], "destinations": {...}}``"""
        ...

    async def balances(self, *, plate: str | None, limit: int) -> dict[str, Any]:
        """``{"balances": {plate: fen}, "moves": [...]}`` (stored-value ledger)."""
        ...

    async def topup(self, *, plate: str, amount_fen: int, operator: str, reason: str,
                    operator_uid: int | None = None) -> dict[str, Any]:
        """Credit a stored-value balance (audited in the ledger). Raises :class:`ControlError` for unknown plates.
        ``operator`` is the admitted operator's name, ``operator_uid`` the caller's uid from the kernel."""
        ...

    async def booth_action(
        self, action: str, *, lane: str, operator: str, reason: str = "", plate: str = "", record_id: str = "",
        deadline: float | None = None, operator_uid: int | None = None,
    ) -> dict[str, Any]:
        """Refuse / correct / admit the car at ``lane`` (see the module doc); ControlError as for open."""
        ...

    async def open_barrier(
        self, *, lane: str, operator: str, reason: str, amount_fen: int | None, deadline: float | None = None,
        operator_uid: int | None = None,
    ) -> dict[str, Any]:
        """Enqueue an operator release for ``lane``. Raises :class:`ControlError` (unknown lane, lane faulted,
        ``deadline_passed``). ``deadline`` is in the event loop's time (``loop.time()``): past it the release
        must not be handed to the lane. ``operator``/``operator_uid`` as for :meth:`topup`."""
        ...


# --------------------------------------------------------------------------------------------------- validation


def _bad(code: str, message: str) -> ControlError:
    return ControlError(code, message, 400)


def _single_params(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    query = request.query
    unknown = sorted(set(query.keys()) - allowed)
    if unknown:
        raise _bad(
            "unknown_field",
            f"unknown query parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed)) or 'none'}",
        )
    out: dict[str, str] = {}
    for key in query.keys():
        values = query.getall(key)
        if len(values) != 1:
            raise _bad("bad_request", f"query parameter {key!r} given {len(values)} times")
        out[key] = values[0]
    return out


def parse_datetime(name: str, text: str) -> _dt.datetime:
    """ISO 8601 date or datetime. A value without an offset is the daemon's local time; the result is aware."""
    t = text.strip()
    if not t:
        raise _bad("bad_datetime", f"{name} is empty; expected ISO 8601 such as 2024-05-01T08:00:00+08:00")
    try:
        value = _dt.datetime.fromisoformat(t)
    except ValueError:
        raise _bad(
            "bad_datetime", f"{name}={text!r} is not an ISO 8601 date/time (e.g. 2024-05-01T08:00:00+08:00)"
        ) from None
    if value.tzinfo is None:
        value = value.astimezone()  # naive: interpret as the local time of this PC
    return value


def parse_limit(text: str | None, default: int) -> int:
    if text is None:
        return default
    t = text.strip()
    if not t.isdigit() or not t.isascii():
        raise _bad("bad_limit", f"limit={text!r} is not a whole number between 1 and {MAX_LIMIT}")
    value = int(t)
    if not 1 <= value <= MAX_LIMIT:
        raise _bad("bad_limit", f"limit={value} is out of range 1..{MAX_LIMIT}")
    return value


def parse_lane(value: Any, *, field: str = "lane") -> str:
    if not isinstance(value, str):
        raise _bad("bad_lane", f"{field} must be a string")
    lane = value.strip()
    if not lane:
        raise _bad("bad_lane", f"{field} is empty")
    if not _LANE_RE.match(lane):
        raise _bad("bad_lane", f"{field}={value!r} is not a lane id (1-32 characters of 0-9 A-Z a-z _)")
    return lane


def parse_plate(value: str) -> str:
    if len(value) > MAX_PLATE_LEN:
        raise _bad("bad_plate", f"plate is longer than {MAX_PLATE_LEN} characters")
    plate = normalize_plate(value)
    if not plate:
        raise _bad("bad_plate", f"plate={value!r} is empty after normalization")
    return plate


def _text_field(body: Mapping[str, Any], name: str, max_len: int) -> str:
    if name not in body or body[name] is None:
        raise _bad("missing_field", f"{name} is required")
    value = body[name]
    if not isinstance(value, str):
        raise _bad(f"bad_{name}", f"{name} must be a string")
    text = value.strip()
    if not text:
        raise _bad(f"bad_{name}", f"{name} must not be empty")
    if len(text) > max_len:
        raise _bad(f"bad_{name}", f"{name} is longer than {max_len} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise _bad(f"bad_{name}", f"{name} must not contain control characters")
    return text


def _optional_text(body: Mapping[str, Any], name: str, max_len: int) -> str | None:
    """A text field that may be left out (or null); given, it must be as good as a required one."""
    return None if body.get(name) is None else _text_field(body, name, max_len)


def parse_open_body(body: Any) -> dict[str, Any]:
    """Validate a POST /open body into keyword arguments for :meth:`ControlHandlers.open_barrier`."""
    if not isinstance(body, dict):
        raise _bad("bad_request", "body must be a JSON object")
    unknown = sorted(set(body) - OPEN_FIELDS)
    if unknown:
        raise _bad(
            "unknown_field",
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(OPEN_FIELDS))}",
        )
    if "lane" not in body or body["lane"] is None:
        raise _bad("missing_field", "lane is required")
    lane = parse_lane(body["lane"])
    operator = _optional_text(body, "operator", MAX_OPERATOR_LEN)
    reason = _text_field(body, "reason", MAX_REASON_LEN)
    amount = _amount_fen(body, required=False)
    return {"lane": lane, "operator": operator, "reason": reason, "amount_fen": amount}


def parse_booth_body(action: str, body: Any) -> dict[str, Any]:
    """Validate a POST /refuse|/correct|/admit body into keyword arguments for ControlHandlers.booth_action."""
    if not isinstance(body, dict):
        raise _bad("bad_request", "body must be a JSON object")
    allowed, required = BOOTH_FIELDS[action]
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _bad("unknown_field", f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    if body.get("lane") is None:
        raise _bad("missing_field", "lane is required")
    args: dict[str, Any] = {"lane": parse_lane(body["lane"]),
                            "operator": _optional_text(body, "operator", MAX_OPERATOR_LEN)}
    if "reason" in allowed:
        args["reason"] = _text_field(body, "reason", MAX_REASON_LEN)
    if "plate" in allowed:  # the lane says whether it can be a plate; normalized here like any plate
        text = _text_field(body, "plate", MAX_PLATE_LEN) if "plate" in required else _optional_text(
            body, "plate", MAX_PLATE_LEN)
        args["plate"] = parse_plate(text) if text else ""
    record_id = _optional_text(body, "record_id", 48)
    if record_id is not None and not _RECORD_RE.match(record_id):
        raise _bad("bad_record_id", f"record_id={record_id!r} is not a record id (0-9 A-Z a-z _)")
    args["record_id"] = record_id or ""
    return args


def _amount_fen(body: Mapping[str, Any], *, required: bool) -> int | None:
    amount = body.get("amount_fen")
    if amount is None:
        if required:
            raise _bad("missing_field", "amount_fen is required")
        return None
    # bool is an int subclass; a float has no place on a money path (rule 4).
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise _bad("bad_amount", "amount_fen must be a whole number of fen (integer), e.g. 500 for 5.00 yuan")
    if amount < 0:
        raise _bad("bad_amount", f"amount_fen={amount} is negative")
    if amount > MAX_AMOUNT_FEN:
        raise _bad("bad_amount", f"amount_fen={amount} is implausibly large (max {MAX_AMOUNT_FEN})")
    return amount


def parse_topup_body(body: Any) -> dict[str, Any]:
    """Validate a POST /topup body into keyword arguments for :meth:`ControlHandlers.topup`."""
    if not isinstance(body, dict):
        raise _bad("bad_request", "body must be a JSON object")
    unknown = sorted(set(body) - TOPUP_FIELDS)
    if unknown:
        raise _bad("unknown_field",
                   f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(TOPUP_FIELDS))}")
    plate = parse_plate(_text_field(body, "plate", 16))
    amount = _amount_fen(body, required=True)
    assert amount is not None
    if amount == 0:
        raise _bad("bad_amount", "amount_fen must be more than 0")
    return {"plate": plate, "amount_fen": amount, "operator": _optional_text(body, "operator", MAX_OPERATOR_LEN),
            "reason": _text_field(body, "reason", MAX_REASON_LEN)}


# ------------------------------------------------------------------------------------------------------- JSON


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=False)


def _json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(payload), status=status, content_type="application/json", charset="utf-8")


def _error_response(code: str, message: str, status: int) -> web.Response:
    return _json_response({"error": code, "message": message}, status)


# ----------------------------------------------------------------------------------------------------- server


def _peer(request: web.Request) -> Peer | None:
    """The calling process as the kernel reports it (SO_PEERCRED); None where it cannot tell."""
    return peer_of(request.transport.get_extra_info("socket") if request.transport else None)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlServer:
    """The control socket. ``start()`` binds ``path``, sets its mode/group, then listens; ``stop()`` removes it."""

    def __init__(
        self,
        path: str,
        handlers: ControlHandlers,
        *,
        mode: int = 0o660,
        group: str | None = None,
        max_connections: int = 32,
        idle_timeout_s: float = 10.0,
        report_interval_s: float = DEFAULT_INTERVAL_S,
        operators: Gatekeeper | None = None,
    ) -> None:
        if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
            raise ControlSocketError(
                path, f"the path is {len(os.fsencode(path))} bytes, longer than the "
                f"{MAX_SOCKET_PATH_BYTES} a unix socket allows", EX_CONFIG
            )
        self.path = path
        self._handlers = handlers
        self._mode = mode
        self._group = group
        self._runner: web.AppRunner | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket file we created
        self.idle_timeout_s = idle_timeout_s
        what = f"control socket {path}"
        self.gate = ConnectionGate(max_connections, Tally(log, what, "connections refused",
                                                          interval_s=report_interval_s))
        self.expired = Tally(log, what, "requests refused", interval_s=report_interval_s)
        self._server_log = ServerLog(log, what, report_interval_s)
        self.operators: Gatekeeper = operators if operators is not None else AnyMember()
        self.refused = Tally(log, what, "operator requests refused", interval_s=report_interval_s)

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise ControlSocketError(self.path, "already started", EX_SOFTWARE)
        parent = os.path.dirname(self.path) or "."
        try:
            os.makedirs(parent, mode=0o750, exist_ok=True)
        except OSError as exc:  # read-only file system, no permission, a file where a directory should be
            raise ControlSocketError(self.path, f"its directory {parent} cannot be created: {os_reason(exc)}"
                                     ) from None
        await self._clear_stale()
        gid = self._resolve_group()

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.bind(self.path)
            except OSError as exc:
                raise ControlSocketError(self.path, f"cannot be created: {os_reason(exc)}") from None
            # Permissions are set after bind but BEFORE listen: nobody can connect while the mode is still
            # whatever the umask left.
            try:
                os.chmod(self.path, self._mode)
                if gid is not None:
                    os.chown(self.path, -1, gid)
            except OSError as exc:
                self._unlink_quietly()
                raise ControlSocketError(
                    self.path, f"cannot set mode {self._mode:o}/group {self._group}: {os_reason(exc)}"
                ) from None
            st = os.stat(self.path)
            self._identity = (st.st_dev, st.st_ino)

            app = self._make_app()
            runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0,
                                   keepalive_timeout=self.idle_timeout_s, logger=self._server_log)
            await runner.setup()
            try:
                site = GatedSite(runner, self.gate, sock=sock)
                await site.start()
            except BaseException:
                await runner.cleanup()
                raise
        except BaseException:
            sock.close()
            if self._identity is not None:
                self._unlink_if_ours()
            self._identity = None
            raise
        self._runner = runner
        log.info("control socket listening on %s (mode %04o%s)", self.path, self._mode,
                 f", group {self._group}" if self._group else "")

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._unlink_if_ours()
        self._identity = None
        for tally in (self.gate.tally, self.expired, self.refused, self._server_log):
            tally.close()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- socket file ----------------------------------------------------------------------------------------

    async def _clear_stale(self) -> None:
        """Remove a socket file left by a dead daemon; refuse if a live one answers, or if it is no socket."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(self.path, "exists and is not a socket; refusing to replace it")
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path), _PROBE_TIMEOUT_S
            )
        except (ConnectionRefusedError, FileNotFoundError):
            log.warning("removing stale control socket %s (no daemon listening)", self.path)
            self._unlink_quietly()
            return
        except TimeoutError:
            # A full backlog or a wedged daemon: something owns it. Do not steal the socket.
            raise ControlSocketError(
                self.path, "another process holds it but does not answer; is another lanectl running?", EX_TEMPFAIL
            ) from None
        except PermissionError as exc:
            raise ControlSocketError(self.path, f"cannot probe the existing socket: {os_reason(exc)}") from None
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        raise ControlSocketError(
            self.path, "another lanectl daemon is already listening on it; refusing to start a second one",
            EX_TEMPFAIL)

    def _resolve_group(self) -> int | None:
        if self._group is None:
            return None
        try:
            return grp.getgrnam(self._group).gr_gid
        except KeyError:
            raise ControlSocketError(
                self.path, f"group {self._group!r} (site control.group) does not exist (create it: groupadd "
                f"--system {self._group})", EX_CONFIG
            ) from None

    def _unlink_quietly(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _unlink_if_ours(self) -> None:
        """Remove the socket file only if it is still the one we bound (a newer daemon may have replaced it)."""
        if self._identity is None:
            return
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._identity:
            try:
                os.unlink(self.path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    log.warning("could not remove control socket %s: %s", self.path, exc)

    # -- HTTP -----------------------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=_CLIENT_MAX_SIZE)
        app.router.add_get("/status", self._status)
        app.router.add_get("/records", self._records)
        app.router.add_get("/outbox", self._outbox)
        app.router.add_post("/open", self._open)
        app.router.add_get("/balances", self._balances)
        app.router.add_post("/topup", self._topup)
        for action in BOOTH_FIELDS:
            app.router.add_post(f"/{action}", self._booth(action))
        return app

    def _deadline(self, request: web.Request) -> float:
        """The request's deadline in loop time (see the module doc); ControlError if it has passed already."""
        loop = asyncio.get_running_loop()
        raw = request.headers.get(DEADLINE_HEADER)
        if raw is None:
            return loop.time() + DEFAULT_DEADLINE_S
        try:
            at = float(raw)
        except ValueError:
            raise _bad("bad_deadline", f"{DEADLINE_HEADER}={raw!r} is not a unix time in seconds") from None
        if at != at or at in (float("inf"), float("-inf")):
            raise _bad("bad_deadline", f"{DEADLINE_HEADER}={raw!r} is not a unix time in seconds")
        left = min(at - time.time(), MAX_DEADLINE_S)
        if left <= 0:
            raise ControlError("deadline_passed", f"the request's deadline passed {-left:.1f} s before the daemon "
                               "read it; nothing was done", 408)
        return loop.time() + left

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            request[_DEADLINE] = self._deadline(request)
            return await handler(request)
        except ControlError as exc:
            status = exc.http_status if 400 <= exc.http_status <= 599 else 409
            if status >= 500:
                log.warning("control %s %s failed: %s", request.method, request.path, exc)
            elif exc.code == "deadline_passed":  # a flood of them must not flood the log: counted
                self.expired.note(f"{request.method} {request.path}: deadline passed before it was executed")
            return _error_response(exc.code, exc.message, status)
        except web.HTTPException as exc:
            if exc.status == 404:
                return _error_response("not_found", f"no such command: {request.method} {request.path}", 404)
            if exc.status == 405:
                return _error_response("method_not_allowed", f"{request.method} not allowed on {request.path}", 405)
            if exc.status == 413:
                return _error_response("too_large", f"request body larger than {_CLIENT_MAX_SIZE} bytes", 413)
            return _error_response("http_error", exc.reason, exc.status)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("control %s %s: unexpected error", request.method, request.path)
            return _error_response("internal", "internal error in the daemon; see its log (journalctl -u lanectl)", 500)

    async def _status(self, request: web.Request) -> web.Response:
        _single_params(request, frozenset())
        return _json_response(await self._handlers.status())

    async def _records(self, request: web.Request) -> web.Response:
        q = _single_params(request, frozenset({"plate", "lane", "since", "until", "limit"}))
        plate = parse_plate(q["plate"]) if "plate" in q else None
        lane = parse_lane(q["lane"]) if "lane" in q else None
        since = parse_datetime("since", q["since"]) if "since" in q else None
        until = parse_datetime("until", q["until"]) if "until" in q else None
        if since is not None and until is not None and since > until:
            raise _bad("bad_range", f"since ({since.isoformat()}) is after until ({until.isoformat()})")
        limit = parse_limit(q.get("limit"), RECORDS_DEFAULT_LIMIT)
        rows = await self._handlers.records(plate=plate, lane=lane, since=since, until=until, limit=limit)
        rows = list(rows)
        return _json_response({"records": rows, "count": len(rows)})

    async def _outbox(self, request: web.Request) -> web.Response:
        q = _single_params(request, frozenset({"limit"}))
        limit = parse_limit(q.get("limit"), OUTBOX_DEFAULT_LIMIT)
        return _json_response(await self._handlers.outbox(limit=limit))

    async def _json_body(self, request: web.Request) -> Any:
        _single_params(request, frozenset())
        if request.content_type != "application/json":
            raise _bad("bad_request", "body must be JSON (Content-Type: application/json)")
        raw = await request.read()
        try:
            return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except _DuplicateKey as exc:
            raise _bad("bad_json", f"field {exc.args[0]!r} given twice") from None
        except (UnicodeDecodeError, ValueError):
            raise _bad("bad_json", "body is not valid UTF-8 JSON") from None

    async def _balances(self, request: web.Request) -> web.Response:
        q = _single_params(request, frozenset({"plate", "limit"}))
        plate = parse_plate(q["plate"]) if "plate" in q else None
        return _json_response(await self._handlers.balances(plate=plate, limit=parse_limit(q.get("limit"), 50)))

    def _admit(self, peer: Peer | None, role: str, claimed: str | None) -> Operator:
        """The operator a request acts as (the kernel's uid, the site's map); ControlError 403 if refused."""
        try:
            return self.operators.admit(peer, role, claimed)
        except OperatorRefused as exc:
            if exc.code == "missing_field":
                raise _bad(exc.code, exc.message) from None
            # counted per caller and reason: a script retrying in a loop must not flood the log
            self.refused.note(f"uid {peer.uid if peer else '?'} {role}: {exc.code}")
            raise ControlError(exc.code, exc.message, 403) from None

    async def _topup(self, request: web.Request) -> web.Response:
        args = parse_topup_body(await self._json_body(request))
        peer = _peer(request)
        who = self._admit(peer, "topup", args["operator"])
        log.info("control top-up requested: plate=%s amount_fen=%d operator=%r reason=%r uid=%s pid=%s",
                 args["plate"], args["amount_fen"], who.name, args["reason"], who.uid, peer.pid if peer else "?")
        args.update(operator=who.name, operator_uid=who.uid)
        return _json_response(await self._handlers.topup(**args))

    async def _open(self, request: web.Request) -> web.Response:
        args = parse_open_body(await self._json_body(request))
        peer = _peer(request)
        who = self._admit(peer, "open", args["operator"])
        log.info("control open requested: lane=%s operator=%r reason=%r amount_fen=%s uid=%s pid=%s", args["lane"],
                 who.name, args["reason"], args["amount_fen"], who.uid, peer.pid if peer else "?")
        args.update(operator=who.name, operator_uid=who.uid)
        return _json_response(await self._handlers.open_barrier(**args, deadline=request[_DEADLINE]))

    def _booth(self, action: str) -> Handler:
        async def booth(request: web.Request) -> web.Response:
            args = parse_booth_body(action, await self._json_body(request))
            peer = _peer(request)
            who = self._admit(peer, "open", args["operator"])  # an operator who may open may refuse / correct / admit
            log.info("control %s requested: lane=%s operator=%r uid=%s pid=%s %s", action, args["lane"], who.name,
                     who.uid, peer.pid if peer else "?", {k: v for k, v in args.items() if k in ("reason", "plate")})
            args.update(operator=who.name, operator_uid=who.uid)
            return _json_response(await self._handlers.booth_action(action, **args, deadline=request[_DEADLINE]))
        return booth
