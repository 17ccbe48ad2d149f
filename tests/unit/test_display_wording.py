"""The board's wording moved from the lane machine (which now emits Display(key, fields) with plain facts) into
the display adapter (lanectl/adapters/board_wording.py). Every message the lane emits — each scenario of
tests/unit/display_scenarios.py — still fills the lot's templates with the same fields, shows the same lines,
says the same words, and falls back to the same sentence as when the lane wrote its own Chinese text.

GOLDEN was captured from the lane machine and the LED board adapter before the move: (scenario, key, the
fields the templates saw, the lane's text, its voice, the board's lines, the board's voice) with the default
templates on a two-line board."""

from __future__ import annotations

import pytest

from lanectl.adapters.board_wording import WORDING, board_fields, lane_wording, status_line
from lanectl.adapters.led_board_display import DisplayError, LedBoardDisplay, split_lines
from lanectl.config.devices import DEFAULT_TEMPLATES, MESSAGE_FIELDS, LedBoardConfig
from lanectl.core import effects as fx
from lanectl.service.storage import FAULT_DISPLAY
from tests.unit.display_scenarios import SCENARIOS

GOLDEN = [
    ("entry_temporary", "welcome", {"plate": "粤B12345", "message": "欢迎光临", "vehicle_class": "temporary"},
     "欢迎光临 粤B12345", "欢迎光临 粤B12345",
     ("欢迎光临", "粤B12345"), "欢迎光临 粤B12345"),
    ("entry_stored_value_with_balance", "welcome", {"plate": "粤B77777", "message": "储值车 余额12元50分", "vehicle_class": "stored_value"},
     "储值车 余额12元50分 粤B77777", "储值车 余额12元50分 粤B77777",
     ("储值车 余额12元50分", "粤B77777"), "储值车 余额12元50分 粤B77777"),
    ("entry_stored_value_without_balance", "welcome", {"plate": "粤B77777", "message": "储值车", "vehicle_class": "stored_value"},
     "储值车 粤B77777", "储值车 粤B77777",
     ("储值车", "粤B77777"), "储值车 粤B77777"),
    ("entry_refused", "refused", {"plate": "粤B66666", "message": "黑名单车辆 禁止通行"},
     "粤B66666 黑名单车辆 禁止通行", "黑名单车辆 禁止通行",
     ("粤B66666", "黑名单车辆 禁止通行"), "粤B66666 黑名单车辆 禁止通行"),
    ("entry_plateless", "welcome", {"plate": "", "message": "欢迎光临", "vehicle_class": "temporary"},
     "欢迎光临", "欢迎光临",
     ("欢迎光临", ""), "欢迎光临"),
    ("entry_plateless_refused", "refused", {"plate": "", "message": "临时车 禁止通行"},
     "临时车 禁止通行", "临时车 禁止通行",
     ("临时车", "禁止通行"), "临时车 禁止通行"),
    ("platform_entry", "welcome", {"plate": "", "message": "欢迎光临"},
     "欢迎光临", "欢迎光临",
     ("欢迎光临", ""), "欢迎光临"),
    ("platform_entry_refused", "refused", {"plate": "", "message": "临时车 禁止通行"},
     "临时车 禁止通行", "临时车 禁止通行",
     ("临时车", "禁止通行"), "临时车 禁止通行"),
    ("unreadable_at_entry", "booth", {"plate": "", "message": "车牌无法识别 请到岗亭处理"},
     "车牌无法识别 请到岗亭处理", "车牌无法识别 请到岗亭处理",
     ("车牌无法识别", "请到岗亭处理"), "车牌无法识别 请到岗亭处理"),
    ("unreadable_at_exit", "booth", {"plate": "", "message": "车牌无法识别 请到岗亭处理"},
     "车牌无法识别 请到岗亭处理", "车牌无法识别 请到岗亭处理",
     ("车牌无法识别", "请到岗亭处理"), "车牌无法识别 请到岗亭处理"),
    ("exit_free", "goodbye", {"plate": "粤B12345"},
     "粤B12345 一路顺风", "一路顺风",
     ("一路顺风", ""), "一路顺风"),
    ("exit_pay_with_stay", "pay", {"plate": "粤B12345", "amount": "5元", "stay": "3小时5分"},
     "粤B12345 停车3小时5分 请缴费5元", "粤B12345 停车3小时5分 请缴费5元",
     ("粤B12345", "停车3小时5分 请缴费5元"), "粤B12345 停车3小时5分 请缴费5元"),
    ("exit_pay_hours_only", "pay", {"plate": "粤B12345", "amount": "5元", "stay": "2小时"},
     "粤B12345 停车2小时 请缴费5元", "粤B12345 停车2小时 请缴费5元",
     ("粤B12345", "停车2小时 请缴费5元"), "粤B12345 停车2小时 请缴费5元"),
    ("exit_pay_minutes_only", "pay", {"plate": "粤B12345", "amount": "5元", "stay": "45分钟"},
     "粤B12345 停车45分钟 请缴费5元", "粤B12345 停车45分钟 请缴费5元",
     ("粤B12345", "停车45分钟 请缴费5元"), "粤B12345 停车45分钟 请缴费5元"),
    ("exit_pay_without_entry", "pay", {"plate": "粤B12345", "amount": "5元", "stay": ""},
     "粤B12345 请缴费5元", "粤B12345 请缴费5元",
     ("粤B12345", "请缴费5元"), "粤B12345 请缴费5元"),
    ("exit_plateless_pay", "pay", {"plate": "无牌车", "amount": "5元", "stay": ""},
     "无牌车 请缴费5元", "无牌车 请缴费5元",
     ("无牌车", "请缴费5元"), "无牌车 请缴费5元"),
    ("exit_ambiguous_to_booth", "booth", {"plate": "粤B12345", "amount": "5元", "stay": ""},
     "粤B12345 请到岗亭处理", "粤B12345 请到岗亭处理",
     ("粤B12345", "请到岗亭处理"), "粤B12345 请到岗亭处理"),
    ("exit_stored_value_debit", "stored_value_paid", {"plate": "粤B77777", "amount": "5元", "balance": "7元50分"},
     "粤B77777 扣费5元 余额7元50分", "扣费5元 余额7元50分 一路顺风",
     ("粤B77777", "扣费5元 余额7元50分"), "粤B77777 扣费5元 余额7元50分"),
    ("exit_stored_value_short", "balance_short", {"plate": "粤B77777", "amount": "5元", "stay": "3小时5分"},
     "粤B77777 余额不足 请缴费5元", "粤B77777 余额不足 请缴费5元",
     ("粤B77777", "余额不足 请缴费5元"), "粤B77777 余额不足 请缴费5元"),
    ("exit_paid_by_provider", "pay", {"plate": "粤B12345", "amount": "5元", "stay": "3小时5分"},
     "粤B12345 停车3小时5分 请缴费5元", "粤B12345 停车3小时5分 请缴费5元",
     ("粤B12345", "停车3小时5分 请缴费5元"), "粤B12345 停车3小时5分 请缴费5元"),
    ("exit_paid_by_provider", "paid", {"plate": "粤B12345", "amount": "7元50分"},
     "粤B12345 支付成功 一路顺风", "支付成功 一路顺风",
     ("粤B12345", "支付成功 一路顺风"), "粤B12345 支付成功 一路顺风"),
    ("exit_plateless_paid_by_provider", "pay", {"plate": "无牌车", "amount": "5元", "stay": ""},
     "无牌车 请缴费5元", "无牌车 请缴费5元",
     ("无牌车", "请缴费5元"), "无牌车 请缴费5元"),
    ("exit_plateless_paid_by_provider", "paid", {"plate": "无牌车", "amount": "5元05分"},
     "无牌车 支付成功 一路顺风", "支付成功 一路顺风",
     ("无牌车", "支付成功 一路顺风"), "无牌车 支付成功 一路顺风"),
    ("exit_payment_fallback", "pay", {"plate": "粤B12345", "amount": "5元", "stay": "3小时5分"},
     "粤B12345 停车3小时5分 请缴费5元", "粤B12345 停车3小时5分 请缴费5元",
     ("粤B12345", "停车3小时5分 请缴费5元"), "粤B12345 停车3小时5分 请缴费5元"),
    ("exit_payment_fallback", "pay_fallback", {"plate": "粤B12345", "amount": "5元"},
     "粤B12345 请扫码或到岗亭缴费5元", "粤B12345 请扫码或到岗亭缴费5元",
     ("粤B12345", "请扫码缴费5元"), "粤B12345 请扫码缴费5元"),
    ("exit_plateless_payment_fallback", "pay", {"plate": "无牌车", "amount": "5元", "stay": ""},
     "无牌车 请缴费5元", "无牌车 请缴费5元",
     ("无牌车", "请缴费5元"), "无牌车 请缴费5元"),
    ("exit_plateless_payment_fallback", "pay_fallback", {"plate": "无牌车", "amount": "5元"},
     "无牌车 请扫码或到岗亭缴费5元", "无牌车 请扫码或到岗亭缴费5元",
     ("无牌车", "请扫码缴费5元"), "无牌车 请扫码缴费5元"),
    ("exit_code_scanned", "pay", {"plate": "粤B12345", "amount": "5元", "stay": "3小时5分"},
     "粤B12345 停车3小时5分 请缴费5元", "粤B12345 停车3小时5分 请缴费5元",
     ("粤B12345", "停车3小时5分 请缴费5元"), "粤B12345 停车3小时5分 请缴费5元"),
    ("exit_code_scanned", "paying", {"plate": "粤B12345"},
     "正在支付 请稍候", "正在支付 请稍候",
     ("粤B12345", "正在支付 请稍候"), "粤B12345 正在支付 请稍候"),
    ("exit_plateless_code_scanned", "pay", {"plate": "无牌车", "amount": "5元", "stay": ""},
     "无牌车 请缴费5元", "无牌车 请缴费5元",
     ("无牌车", "请缴费5元"), "无牌车 请缴费5元"),
    ("exit_plateless_code_scanned", "paying", {"plate": "无牌车"},
     "正在支付 请稍候", "正在支付 请稍候",
     ("无牌车", "正在支付 请稍候"), "无牌车 正在支付 请稍候"),
    ("exit_identified_pays", "pay", {"plate": "无牌车", "amount": "5元", "stay": ""},
     "无牌车 请缴费5元", "无牌车 请缴费5元",
     ("无牌车", "请缴费5元"), "无牌车 请缴费5元"),
    ("exit_identified_pays", "pay", {"plate": "无牌车", "amount": "5元", "stay": "3小时5分"},
     "无牌车 请缴费5元", "无牌车 请缴费5元",
     ("无牌车", "停车3小时5分 请缴费5元"), "无牌车 停车3小时5分 请缴费5元"),
    ("exit_identified_free", "pay", {"plate": "无牌车", "amount": "5元", "stay": ""},
     "无牌车 请缴费5元", "无牌车 请缴费5元",
     ("无牌车", "请缴费5元"), "无牌车 请缴费5元"),
    ("exit_identified_free", "goodbye", {"plate": ""},
     "一路顺风", "一路顺风",
     ("一路顺风", ""), "一路顺风"),
    ("operator_release_waiting_car", "pay", {"plate": "粤B12345", "amount": "5元", "stay": "3小时5分"},
     "粤B12345 停车3小时5分 请缴费5元", "粤B12345 停车3小时5分 请缴费5元",
     ("粤B12345", "停车3小时5分 请缴费5元"), "粤B12345 停车3小时5分 请缴费5元"),
    ("operator_release_waiting_car", "goodbye", {"plate": "粤B12345"},
     "一路顺风", "一路顺风",
     ("一路顺风", ""), "一路顺风"),
    ("operator_release_no_car", "goodbye", {"plate": ""},
     "一路顺风", "一路顺风",
     ("一路顺风", ""), "一路顺风"),
    ("barrier_fault", "welcome", {"plate": "粤B12345", "message": "欢迎光临", "vehicle_class": "temporary"},
     "欢迎光临 粤B12345", "欢迎光临 粤B12345",
     ("欢迎光临", "粤B12345"), "欢迎光临 粤B12345"),
    ("barrier_fault", "fault", {},
     "道闸故障 请联系管理员", "道闸故障 请联系管理员",
     ("道闸故障", "请联系管理员"), "道闸故障 请联系管理员"),
    ("storage_fault", "fault", {},
     "系统故障 请联系管理员", "系统故障 请联系管理员",
     ("道闸故障", "请联系管理员"), "道闸故障 请联系管理员"),
]

# Two sentences the lane used to write differently from its own fields; the board (its templates) shows them
# as before, only the lane's sentence — the status line, and the board's text if a lot's template cannot be
# filled — now follows the fields like every other message of that key:
# - an operator release of a car with a plate said "一路顺风" (an exit let out free: "<plate> 一路顺风");
# - a plate-less car identified by a platform was asked "无牌车 请缴费5元" while its fields carried the stay.
NOW_SAID = {
    ("operator_release_waiting_car", "goodbye"): ("粤B12345 一路顺风", "一路顺风"),
    ("exit_identified_pays", 1): ("无牌车 停车3小时5分 请缴费5元", "无牌车 停车3小时5分 请缴费5元"),
}


def emitted() -> list[tuple[str, int, fx.Display]]:
    out = [(name, i, d) for name, scenario in SCENARIOS.items() for i, d in enumerate(scenario())]
    return out + [("storage_fault", 0, FAULT_DISPLAY)]


CASES = [(golden, index, display) for golden, (_, index, display) in zip(GOLDEN, emitted())]


def board(**kw) -> LedBoardDisplay:
    return LedBoardDisplay(LedBoardConfig(kind="led_board", port="/dev/null", **kw))


def test_the_scenarios_emit_the_messages_captured():
    assert [(name, d.key) for name, _, d in emitted()] == [(g[0], g[1]) for g in GOLDEN]


@pytest.mark.parametrize("golden,index,display", CASES, ids=[f"{g[0]}-{g[1]}" for g, _, _ in CASES])
def test_every_message_renders_as_before(golden, index, display: fx.Display):
    name, key, fields, text, voice, lines, board_voice = golden
    assert display.key == key
    assert board_fields(display) == fields  # what the lot's templates are filled with
    assert board().render(display) == (list(lines), board_voice)  # the default templates, byte for byte
    said = NOW_SAID.get((name, key), NOW_SAID.get((name, index), (text, voice)))
    assert lane_wording(display) == said and status_line(display) == said[0]
    # the lane's own sentence, as the board shows it when the lot's template cannot be filled (no plate here)
    if "plate" in MESSAGE_FIELDS[key] and not fields.get("plate"):
        lot = board(templates={key: "{plate}"})
        assert lot.render(display) == (split_lines(said[0], 2)[0], said[1]) and lot.fallbacks == 1


def test_the_lane_emits_no_words():
    """The core's messages carry facts: plates, fen, minutes, reasons — and the rules' own message (a lot's
    greeting such as 月租车 剩余12天). No other words reach a Display from the lane."""
    for _, _, display in emitted():
        for name, value in display.fields:
            if name not in ("plate", "message"):
                assert not (isinstance(value, str) and any("\u4e00" <= ch <= "\u9fff" for ch in value)), display


def test_every_key_has_wording_templates_and_fields():
    assert set(WORDING) == set(MESSAGE_FIELDS) == set(DEFAULT_TEMPLATES)
    assert {d.key for _, _, d in emitted()} == set(WORDING)
    for _, _, display in emitted():
        assert set(board_fields(display)) <= MESSAGE_FIELDS[display.key] | {"message"}


def test_a_key_without_wording_is_a_display_error():
    with pytest.raises(DisplayError, match="something_new"):
        board().frames(fx.Display("something_new"))
    assert status_line(fx.Display("something_new")) == "something_new"
