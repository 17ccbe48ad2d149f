"""What the lane's messages say: the wording of every Display key, in one place (pure: no I/O).

The lane machine emits Display(key, fields) with plain facts — a plate ("" when the car has none), amounts in
fen, a stay in minutes, the rules' own message. Here they become words:
- `board_fields`: the fields the lot's board templates are filled with (config `templates` over
  DEFAULT_TEMPLATES in lanectl/config/devices.py; MESSAGE_FIELDS lists them per key);
- `lane_wording`: the lane's own sentence (text, voice) for the message — what `lanectl status` shows as the
  last message, and what the board shows when a template cannot be rendered for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from lanectl.core import effects as fx
from lanectl.core.money import yuan_words

NO_PLATE = "无牌车"  # a plate-less car, as a board names it
UNREADABLE_PLATE = "unreadable_plate"  # the lane's reason for a reading that is no plate (core.lane.Reason)
STORAGE = "storage"  # a fault message's cause when the lane's records cannot be written (service.storage)


class UnknownMessage(KeyError):
    """A Display key this module has no wording for."""


@dataclass(frozen=True)
class Said:
    fields: dict[str, str]  # what the templates see
    text: str  # the lane's own wording: the board's text ...
    voice: str  # ... and what it says


def stay_words(minutes: int) -> str:
    """A stay as a board says it: "3小时5分", "2小时", "45分钟"."""
    hours, rest = divmod(max(0, minutes), 60)
    return f"{hours}小时{rest}分" if hours and rest else f"{hours}小时" if hours else f"{rest}分钟"


def _plate(f: Mapping[str, Any]) -> str:
    return str(f.get("plate", ""))


def _shown(f: Mapping[str, Any]) -> str:
    return _plate(f) or NO_PLATE


def _amount(f: Mapping[str, Any], name: str = "amount_fen") -> str:
    return yuan_words(int(f.get(name, 0)))


def _stay(f: Mapping[str, Any]) -> str:
    return stay_words(int(f["stay_min"])) if "stay_min" in f else ""


def _welcome(f: Mapping[str, Any]) -> Said:
    message = str(f.get("message", "")) or "欢迎光临"
    if "balance_fen" in f:  # a stored-value car is told its balance as it comes in
        message += f" 余额{_amount(f, 'balance_fen')}"
    fields = {"plate": _plate(f), "message": message}
    if "vehicle_class" in f:
        fields["vehicle_class"] = str(f["vehicle_class"])
    text = f"{message} {_plate(f)}".strip()
    return Said(fields, text, text)


def _refused(f: Mapping[str, Any]) -> Said:
    # the booth turned the car away: the rules have no message for it
    message = str(f.get("message", "")) or ("禁止通行 请倒车" if f.get("reason") == "operator_refused" else "")
    return Said({"plate": _plate(f), "message": message}, f"{_plate(f)} {message}".strip(), message)


def _booth(f: Mapping[str, Any]) -> Said:
    if f.get("reason") == UNREADABLE_PLATE:  # the reading is no plate: none is shown
        text = "车牌无法识别 请到岗亭处理"
        return Said({"plate": "", "message": text}, text, text)
    text = f"{_shown(f)} 请到岗亭处理"
    return Said({"plate": _shown(f), "amount": _amount(f), "stay": _stay(f)}, text, text)


def _goodbye(f: Mapping[str, Any]) -> Said:
    return Said({"plate": _plate(f)}, f"{_plate(f)} 一路顺风".strip(), "一路顺风")


def _pay(f: Mapping[str, Any]) -> Said:
    stay = _stay(f)
    text = f"{_shown(f)} {'停车' + stay + ' ' if stay else ''}请缴费{_amount(f)}"
    return Said({"plate": _shown(f), "amount": _amount(f), "stay": stay}, text, text)


def _balance_short(f: Mapping[str, Any]) -> Said:
    text = f"{_shown(f)} 余额不足 请缴费{_amount(f)}"
    return Said({"plate": _shown(f), "amount": _amount(f), "stay": _stay(f)}, text, text)


def _stored_value_paid(f: Mapping[str, Any]) -> Said:
    amount, balance = _amount(f), _amount(f, "balance_fen")
    return Said({"plate": _plate(f), "amount": amount, "balance": balance},
                f"{_plate(f)} 扣费{amount} 余额{balance}", f"扣费{amount} 余额{balance} 一路顺风")


def _paid(f: Mapping[str, Any]) -> Said:
    return Said({"plate": _shown(f), "amount": _amount(f)}, f"{_shown(f)} 支付成功 一路顺风", "支付成功 一路顺风")


def _pay_fallback(f: Mapping[str, Any]) -> Said:
    text = f"{_shown(f)} 请扫码或到岗亭缴费{_amount(f)}"
    return Said({"plate": _shown(f), "amount": _amount(f)}, text, text)


def _paying(f: Mapping[str, Any]) -> Said:
    return Said({"plate": _shown(f)}, "正在支付 请稍候", "正在支付 请稍候")


def _fault(f: Mapping[str, Any]) -> Said:
    text = "系统故障 请联系管理员" if f.get("cause") == STORAGE else "道闸故障 请联系管理员"
    return Said({}, text, text)


WORDING: Mapping[str, Callable[[Mapping[str, Any]], Said]] = {
    "welcome": _welcome, "refused": _refused, "goodbye": _goodbye, "pay": _pay, "booth": _booth,
    "balance_short": _balance_short, "paid": _paid, "stored_value_paid": _stored_value_paid,
    "pay_fallback": _pay_fallback, "paying": _paying, "fault": _fault,
}


def say(message: fx.Display) -> Said:
    wording = WORDING.get(message.key)
    if wording is None:
        raise UnknownMessage(f"no wording for the message {message.key!r}")
    return wording(dict(message.fields))


def board_fields(message: fx.Display) -> dict[str, str]:
    """The fields the lot's templates are filled with for this message."""
    return say(message).fields


def lane_wording(message: fx.Display) -> tuple[str, str]:
    """(text, voice): the lane's own sentence for this message."""
    said = say(message)
    return said.text, said.voice


def status_line(message: fx.Display) -> str:
    """The message as `lanectl status` shows it (its key when there are no words for it)."""
    try:
        return say(message).text
    except UnknownMessage:
        return message.key
