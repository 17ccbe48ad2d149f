"""The console's booth actions (issue 18 item 3), added to the ConsoleServer's routes:

    POST /console/lanes/<id>/refuse   {reason, record_id?}          turn away the car waiting at the lane
    POST /console/lanes/<id>/correct  {plate, record_id?}           the right plate for a misread car
    POST /console/lanes/<id>/admit    {reason, plate?, record_id?}  let in the car held at an entry lane

Each needs a session and its CSRF token (any role: an operator may do all three), is a lane request through the
app (service/booth.py) recorded as console:<user>, and answers the lane's outcome as JSON (200, also when the
lane did nothing: `done` false, `outcome` and `message` say why — e.g. another operator was first). Bad input
is a 400 JSON, never a 500. `record_id`: the car the page showed, so a car gone since is not acted upon.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Optional

from aiohttp import web

from lanectl.adapters.control_socket import ControlError

if TYPE_CHECKING:
    from lanectl.adapters.console.server import ConsoleServer
    from lanectl.adapters.console.sessions import Session

log = logging.getLogger("lanectl.console")
MAX_REASON = 200
MAX_PLATE = 16
_RECORD_RE = re.compile(r"^[0-9A-Za-z_]{1,48}$")
FIELDS = {"refuse": ({"reason", "record_id"}, "reason"), "correct": ({"plate", "record_id"}, "plate"),
          "admit": ({"reason", "plate", "record_id"}, "reason")}


def add_booth_routes(server: "ConsoleServer", router: web.UrlDispatcher) -> None:
    for action in FIELDS:
        router.add_post(f"/console/lanes/{{lane}}/{action}", server._authed(_route(server, action)))


def _bad(message: str) -> web.Response:
    return web.json_response({"error": "bad_request", "message": message}, status=400)


def parse_booth(action: str, body: Optional[dict[str, Any]]) -> dict[str, str] | str:
    """The action's fields from its JSON body, or what is wrong with it."""
    if body is None:
        return "expected a JSON object"
    allowed, required = FIELDS[action]
    unknown = sorted(set(body) - allowed)
    if unknown:
        return f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
    out: dict[str, str] = {}
    for name in sorted(allowed):
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip() and name != required):
            continue
        limit = {"reason": MAX_REASON, "plate": MAX_PLATE, "record_id": 48}[name]
        if not isinstance(value, str) or not value.strip() or len(value.strip()) > limit:
            return f"{name} must be text of 1 to {limit} characters"
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            return f"{name} must not contain control characters"
        out[name] = value.strip()
    if required not in out:
        return f"{required} is required"
    if "record_id" in out and not _RECORD_RE.match(out["record_id"]):
        return "record_id is not a record id"
    return out


def _route(server: "ConsoleServer", action: str) -> Any:
    async def route(request: web.Request, session: "Session") -> web.StreamResponse:
        from lanectl.adapters.console.server import _json
        fields = parse_booth(action, await _json(request))
        if isinstance(fields, str):
            return _bad(fields)
        lane, operator = request.match_info["lane"], f"console:{session.user}"
        try:
            answer = await server.actions.booth_action(action, lane=lane, operator=operator, **fields)
        except ControlError as exc:
            return web.json_response({"error": exc.code, "message": exc.message}, status=exc.http_status)
        log.info("console: %s %s at lane %s: %s (%s)", operator, action, lane, answer.get("outcome"),
                 answer.get("message"))
        return web.json_response(answer)
    return route
