"""The lane card's own routes (added by ConsoleServer.add_routes; same sessions, CSRF and JSON errors):

    GET  /console/images/<record_id>   a record's camera picture (the car at the lane, its entry) — 404 when the
                                       record has none, the file was pruned, or its path is not under the images
                                       folder: the client names a record, never a path
    POST /console/topup                supervisor: {plate, amount_fen, reason} -> a stored-value top-up audited
                                       as console:<user> (App.topup); its refusals (not a stored-value car,
                                       storage down) come back as JSON with the reason in words
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lanectl.adapters.console.pictures import picture_file
from lanectl.adapters.control_socket import ControlError, parse_topup_body
from lanectl.service.ports import StorageUnavailable

if TYPE_CHECKING:
    from lanectl.adapters.console.server import ConsoleServer
    from lanectl.adapters.console.sessions import Session

log = logging.getLogger("lanectl.console")
RECORD_ID = re.compile(r"[0-9A-Za-z_]{1,48}")  # the record id's own alphabet (docs/architecture: rule 4)


def add_card_routes(server: "ConsoleServer", router: web.UrlDispatcher) -> None:
    router.add_get("/console/images/{record_id}", server._authed(_picture(server), post=False, activity=False))
    router.add_post("/console/topup", server._authed(_topup(server), role="supervisor"))


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _picture(server: "ConsoleServer") -> Any:
    async def handler(request: web.Request, session: "Session") -> web.StreamResponse:
        record_id = request.match_info["record_id"]
        if not RECORD_ID.fullmatch(record_id):
            return _error(404, "no_picture", "no such record")
        try:
            stored = await server.actions.record_image(record_id)
        except StorageUnavailable as exc:
            return _error(503, "storage_unavailable", f"the records cannot be read now ({exc.reason})")
        path = picture_file(server.images, stored)
        if path is None:
            return _error(404, "no_picture", f"no picture kept for record {record_id}")
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg", "Cache-Control": "private, max-age=3600",
                                               "X-Content-Type-Options": "nosniff"})
    return handler


def _topup(server: "ConsoleServer") -> Any:
    async def handler(request: web.Request, session: "Session") -> web.StreamResponse:
        from lanectl.adapters.console.server import _json  # the console's one JSON reader (no form posts)
        body = await _json(request)
        if body is None:
            return _error(400, "bad_request", "expected JSON {plate, amount_fen, reason}")
        if "operator" in body:
            return _error(400, "bad_request", "the operator is the logged-in user; do not send one")
        try:
            args = parse_topup_body(body)
            operator = f"console:{session.user}"
            answer = await server.actions.topup(plate=args["plate"], amount_fen=args["amount_fen"],
                                                operator=operator, reason=args["reason"])
        except ControlError as exc:
            return _error(exc.http_status, exc.code, exc.message)
        log.info("console: %s topped up %s by %d fen", f"console:{session.user}", answer.get("plate"),
                 args["amount_fen"])
        return web.json_response(answer)
    return handler
