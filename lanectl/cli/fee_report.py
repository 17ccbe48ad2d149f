"""A Fee as JSON or booth text, and the one call behind `lanectl fee` (rule choice + engine)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from lanectl.core.money import fen_to_yuan
from lanectl.core.rules import RulesPolicy, VehicleRules
from lanectl.core.tariff import Fee, Tariffs


def fee_to_json(fee: Fee) -> dict[str, Any]:
    """{"due_fen", "total_fen", "paid_fen", "breakdown": [{kind, start, end, fen, note}]}, times as ISO 8601."""
    return {
        "due_fen": fee.due_fen,
        "total_fen": fee.total_fen,
        "paid_fen": fee.paid_fen,
        "breakdown": [{"kind": i.kind, "start": i.start.isoformat(), "end": i.end.isoformat(), "fen": i.fen,
                       "note": i.note} for i in fee.breakdown],
    }


def _amount(fen: int) -> str:
    return f"{fen} fen ({fen_to_yuan(fen)} 元)"


def fee_to_text(fee: Fee) -> str:
    """The amount due in fen and yuan first, then total / paid, then one line per breakdown item."""
    lines = [f"due:   {_amount(fee.due_fen)}", f"total: {_amount(fee.total_fen)}", f"paid:  {_amount(fee.paid_fen)}"]
    if any(i.kind == "operator" for i in fee.breakdown):
        lines.insert(0, "NEEDS THE BOOTH OPERATOR")
    lines.append("breakdown:")
    lines += [f"  {i.line()}" for i in fee.breakdown]
    return "\n".join(lines)


def quote_for_cli(tariffs: Tariffs, vehicles: VehicleRules, plate: str, color: str, vehicle_class: Optional[str],
                  entered_at: Optional[datetime], left_at: datetime, paid_fen: int = 0,
                  paid_at: Optional[datetime] = None) -> Fee:
    """The fee `lanectl fee` prints. With vehicle_class ("temporary" | "stored_value") that class's tariff is
    applied to the whole stay, ignoring cards and lists; without it the plate is classified by VehicleRules
    exactly as at the lane (alone in the lot for shared-space cards). entered_at None: no entry record.
    Raises ValueError for an unknown class or bad times."""
    policy = RulesPolicy(tariffs, vehicles)
    if vehicle_class is not None:
        return policy.charge(vehicle_class, plate, color, entered_at, left_at, paid_fen, paid_at).fee
    return policy.assess_exit(plate, color, entered_at, left_at, {}, paid_fen, paid_at).fee
