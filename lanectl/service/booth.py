"""The booth's other actions (refuse, correct a misread plate, admit at an entry): one operator request handed
to its lane and the lane's answer put in words a caller (control socket, console) can show.

Each action is a lane request (core/events.py OperatorRefuse / OperatorCorrect / OperatorAdmit) with its
operator's name (and the unix uid, from the control socket); the lane decides and records, here it is only
asked. An action that raises the arm (an admit, a corrected plate whose stay is free) waits, as a release does,
for the barrier's answer to the OPEN.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any, Literal, Optional

from lanectl.core import effects as fx
from lanectl.core.events import OperatorAdmit, OperatorCorrect, OperatorRefuse
from lanectl.service.lane_runner import LaneDidNotAnswer, LaneRunner

Action = Literal["refuse", "correct", "admit"]
ACTIONS: tuple[Action, ...] = ("refuse", "correct", "admit")
DONE = frozenset({"refused", "corrected", "admitted"})  # the outcomes that did what was asked


class BoothError(Exception):
    """The action was not handed to the lane or the lane could not take it (code, message, HTTP status)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def booth_event(action: Action, *, operator: str, reason: str = "", plate: str = "", record_id: str = "",
                operator_uid: Optional[int] = None) -> Any:
    rid = uuid.uuid4().hex
    if action == "refuse":
        return OperatorRefuse(operator, reason, rid, operator_uid, record_id)
    if action == "correct":
        return OperatorCorrect(operator, plate, rid, operator_uid, record_id)
    return OperatorAdmit(operator, reason, plate, rid, operator_uid, record_id)


async def ask_lane(runner: LaneRunner, action: Action, *, operator: str, reason: str = "", plate: str = "",
                   record_id: str = "", operator_uid: Optional[int] = None, deadline: Optional[float] = None,
                   ack_s: float = 3.0) -> dict[str, Any]:
    """Hand the action to the lane and say what it decided: outcome, message, record, the corrected plate, what
    the car owes now, the candidates of a correction that matched no stay exactly, and whether an OPEN it
    decided reached the barrier. BoothError when nothing was done (deadline, a lane that did not answer, bad
    input the lane refused)."""
    event = booth_event(action, operator=operator, reason=reason, plate=plate, record_id=record_id,
                        operator_uid=operator_uid)
    try:
        answer = await runner.ask(event, deadline=deadline)
    except LaneDidNotAnswer as exc:
        raise BoothError(exc.code, exc.message, exc.status) from None
    assert isinstance(answer, fx.BoothResult)
    if answer.outcome == "invalid":
        raise BoothError("invalid", answer.message, 400)
    if answer.outcome == "not_handled":
        raise BoothError("storage_unavailable", f"lane {runner.lane_id}: {answer.message}", 503)
    opened: Optional[bool] = None
    message = answer.message
    if answer.action_id:  # the lane decided an OPEN: did the barrier take it?
        opened, error = await runner.delivered(answer.action_id, ack_s)
        if not opened:
            message += f" (OPEN not delivered: {error})"
    return {"lane": runner.lane_id, "action": action, "outcome": answer.outcome, "done": answer.outcome in DONE,
            "message": message, "record_id": answer.record_id, "action_id": answer.action_id,
            "operator": answer.operator, "operator_uid": operator_uid, "plate": answer.plate,
            "due_fen": answer.due_fen, "opened": opened,
            "candidates": [asdict(c) for c in answer.candidates], "phase": runner.status.phase}
