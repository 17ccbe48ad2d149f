"""Remote commands over the site bus (issue 17 item 3): a booth runs the signed open / release / topup another
booth or a console sends it, through the same app operations as the local control socket.

    lanectl/<park>/<booth>/commands                 signed commands for this booth (protocols/site_commands.py)
    lanectl/<park>/<issuer>/replies/<command id>    the signed answer: done (with the result) or refused (code)

Each command is, in order: verified (signature over the raw bytes, key id, canonical form), checked to be for this
booth and within its validity (issued_at .. expires_at, give or take the skew allowance), its operator checked
against the site's `operators:` section when there is one, and its id stored in the SQLite inbox (provider
"site_bus") — a second message with the same id is refused as `replayed`, after a restart too. Only then does
it run. The command's expiry (plus the skew allowance) is the lane request's deadline: a lane that has not
taken the release by then drops it. The operator is recorded as `<operator>@<issuer>` with no uid.

A refusal is published on the reply topic the message claims (issuer and id, unverified: the
refusal carries nothing but its code and reason). Nothing is published for a message that names no
usable issuer and id. Refusals of verified commands are logged one line each (audit); messages refused before
verification (forged, unsigned, garbage) are counted and logged sparingly (adapters/log_tally.py), so a flood
never floods the journal.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, Mapping, Optional, Protocol

from lanectl.adapters.log_tally import Tally
from lanectl.protocols.site_commands import (DEFAULT_SKEW_S, CommandRefused, Expired, RemoteCommand, Replayed,
                                             claimed_origin, decode, encode_reply)
from lanectl.service.ports import Clock, StorageUnavailable
from lanectl.service.site_bus import BusUnavailable, SiteBus, topic

log = logging.getLogger("lanectl.remote")

INBOX_PROVIDER = "site_bus"
# refused before (or without) a valid signature: nobody we know sent them
UNVERIFIED = frozenset({"malformed", "unsigned", "unknown_key", "bad_signature", "busy"})
MAX_RUNNING = 8  # commands being carried out at once; more are refused as `busy` (a flood never piles up)


class RemoteHandlers(Protocol):
    """The app operations a remote command runs (lanectl/app.py App; the control socket calls the same)."""

    async def open_barrier(self, *, lane: str, operator: str, reason: str, amount_fen: Optional[int],
                           deadline: Optional[float] = None, operator_uid: Optional[int] = None
                           ) -> dict[str, Any]: ...

    async def topup(self, *, plate: str, amount_fen: int, operator: str, reason: str,
                    operator_uid: Optional[int] = None) -> dict[str, Any]: ...


# (provider, key, payload, now) -> False when the key was stored before: the store's inbox (adapters/store/inbox.py)
SeenStore = Callable[[str, str, str, Any], Awaitable[bool]]


class Refusal(Exception):
    """A refusal after verification (operator not allowed, replay, the app's own ControlError...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def remote_operators(operators: Any) -> Optional[dict[str, frozenset[str]]]:
    """Who may act remotely, by the name a command carries -> roles, from the site's `operators:` section
    (config/operators.py); None without the section (any name, as on the control socket). Only `users:` entries
    count, under the name a socket release by them is recorded with (their `name:`, else their unix user name):
    a group's members cannot be listed without asking the system, so they act remotely only once listed."""
    if operators is None:
        return None
    names: dict[str, frozenset[str]] = {}
    for key, entry in operators.users.items():
        name = entry.name or (None if key.isdigit() else key)
        if name is not None:
            names[name] = frozenset(entry.roles)
    return names


class RemoteCommands:
    def __init__(self, bus: SiteBus, park_id: str, booth_id: str, keys: Mapping[str, bytes], handlers: RemoteHandlers,
                 seen: SeenStore, clock: Clock, *, reply_key_id: str, skew_s: float = DEFAULT_SKEW_S,
                 operators: Optional[Mapping[str, frozenset[str]]] = None,
                 ready: Optional[asyncio.Event] = None) -> None:
        self.bus, self.park_id, self.booth_id = bus, park_id, booth_id
        self.keys, self.reply_key_id = dict(keys), reply_key_id
        self.handlers, self.seen, self.clock = handlers, seen, clock
        self.skew_s = skew_s
        self.operators = operators
        self.ready = ready  # the daemon's lanes are running: a command that comes earlier waits for it
        self.running: set[asyncio.Task[None]] = set()
        self.counts = {"done": 0, "refused": 0}
        # messages refused before they were verified may be a flood (forged, garbage): counted, not a line each
        self.unverified = Tally(log, f"site bus {self.topic}", "unverified commands refused")

    @property
    def topic(self) -> str:
        return topic(self.park_id, self.booth_id, "commands")

    def attach(self) -> None:
        """Subscribe (before the bus runs)."""
        self.bus.subscribe(self.topic, self.on_message)

    async def aclose(self) -> None:
        """At stop: commands still running are cancelled (a release the lane has not taken is dropped)."""
        for task in list(self.running):
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)

    async def on_message(self, _topic: str, payload: bytes) -> None:
        # the bus's delivery never waits for a barrier: each command runs in its own task
        if len(self.running) >= MAX_RUNNING:
            await self._refuse(payload, None, "busy", f"{MAX_RUNNING} remote commands already running")
            return
        task = asyncio.create_task(self.handle(payload), name="remote-command")
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def handle(self, payload: bytes) -> None:
        command: Optional[RemoteCommand] = None
        if self.ready is not None:
            await self.ready.wait()  # checked (validity included) only once the lanes run
        try:
            command = decode(payload, self.keys, now=self._now(), booth=self.booth_id, skew_s=self.skew_s)
            log.info("remote %s requested: id=%s lane=%s plate=%s operator='%s@%s' reason='%s' amount_fen=%s",
                     command.kind, command.id, command.lane, command.plate, command.operator, command.issuer,
                     command.reason, command.amount_fen)
            self._check_operator(command)
            await self._remember(command, payload)
            result = await self._run(command)
        except CommandRefused as exc:
            await self._refuse(payload, command, exc.code, exc.message)
        except Refusal as exc:
            await self._refuse(payload, command, exc.code, exc.message)
        except Exception as exc:  # a handler's bug is reported as one, never a silent drop
            log.exception("remote command failed")
            await self._refuse(payload, command, "internal", f"{type(exc).__name__}: {exc}")
        else:
            self.counts["done"] += 1
            await self._reply(command.issuer, command.id, {"ok": True, "result": result})

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _check_operator(self, command: RemoteCommand) -> None:
        if self.operators is None:
            return
        role = "topup" if command.kind == "topup" else "open"
        roles = self.operators.get(command.operator)
        if roles is None:
            raise Refusal("not_an_operator", f"{command.operator!r} is not listed under operators.users")
        if role not in roles:
            raise Refusal("not_allowed", f"{command.operator!r} has no {role} role")

    async def _remember(self, command: RemoteCommand, payload: bytes) -> None:
        try:
            first = await self.seen(INBOX_PROVIDER, command.id, payload.decode("utf-8"), self.clock.now())
        except StorageUnavailable as exc:  # without the record of ids seen, a replay could not be told apart
            raise Refusal("storage_unavailable", f"the database cannot be written ({exc.reason})") from None
        if not first:
            raise Replayed(f"command {command.id} was received before")

    async def _run(self, command: RemoteCommand) -> dict[str, Any]:
        operator = f"{command.operator}@{command.issuer}"
        left_s = command.expires_at + self.skew_s - self._now()
        if left_s <= 0:  # it may have waited for the store: expired commands never run
            raise Expired("expired while it was being checked")
        try:
            if command.kind == "topup":
                assert command.plate is not None and command.amount_fen is not None
                return await self.handlers.topup(plate=command.plate, amount_fen=command.amount_fen,
                                                 operator=operator, reason=command.reason, operator_uid=None)
            assert command.lane is not None
            deadline = asyncio.get_running_loop().time() + left_s
            return await self.handlers.open_barrier(lane=command.lane, operator=operator, reason=command.reason,
                                                    amount_fen=command.amount_fen, deadline=deadline,
                                                    operator_uid=None)
        except Exception as exc:
            # the app's refusals (adapters/control_socket.py ControlError: unknown_lane, lane_busy, ...) keep
            # their code; matched by shape so the service layer does not import an adapter
            code, message = getattr(exc, "code", None), getattr(exc, "message", None)
            if isinstance(code, str) and isinstance(message, str):
                raise Refusal(code, message) from None
            raise

    async def _refuse(self, payload: bytes, command: Optional[RemoteCommand], code: str, message: str) -> None:
        self.counts["refused"] += 1
        origin = (command.issuer, command.id) if command is not None else claimed_origin(payload)
        if code in UNVERIFIED:
            self.unverified.note(f"{code} (claimed issuer {origin[0] if origin else '?'})")
        else:  # signed with the site key: audited one line each, like a control-socket refusal
            log.warning("remote command refused: %s (%s) id=%s issuer=%s operator='%s'", code, message,
                        origin[1] if origin else "?", origin[0] if origin else "?",
                        command.operator if command is not None else "?")
        if origin is not None:
            await self._reply(origin[0], origin[1], {"ok": False, "code": code, "message": message})

    async def _reply(self, issuer: str, command_id: str, answer: dict[str, Any]) -> None:
        reply = {"id": command_id, "booth": self.booth_id, "at": int(self._now()), **answer}
        # the result carries datetimes and the like: made plain JSON before the one canonical serialization
        plain = json.loads(json.dumps(reply, default=str, ensure_ascii=False))
        try:
            await self.bus.publish(topic(self.park_id, issuer, "replies", command_id),
                                   encode_reply(plain, self.reply_key_id, self.keys[self.reply_key_id]), qos=1)
        except BusUnavailable:  # the command's outcome is in the log and the records; the issuer times out
            log.warning("remote command %s: reply not published, the site bus is down", command_id)
