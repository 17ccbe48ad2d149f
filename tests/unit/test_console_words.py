"""The lane card says the fee breakdown in plain words, zh and en: each kind of line the tariff engine, the
rules and the lane write is translated; a line not known is shown as it is, never dropped."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from lanectl.adapters.console.words import describe, describe_line
from lanectl.core.tariff import TariffRule, compute_fee, compute_no_entry_fee

TZ = timezone(timedelta(hours=8))
ENTERED = datetime(2026, 12, 7, 8, 0, tzinfo=TZ)


def words(rule: TariffRule, stay: timedelta, **kw) -> list[dict[str, str]]:
    return [describe_line(item.line(), {}) for item in compute_fee(rule, ENTERED, ENTERED + stay, **kw).breakdown]


def test_first_hour_then_hourly_with_the_free_minutes():
    rule = TariffRule(free_minutes=15, first_minutes=60, first_fen=500, increment_minutes=60, increment_fen=200)
    free, tariff = words(rule, timedelta(hours=3))
    assert (free["kind"], free["zh"], free["en"]) == ("free", "免费 15 分钟（超时后不扣除）",
                                                      "15 free min not deducted (stayed longer)")
    assert tariff["zh"] == "首小时 5.00 元；之后每小时 2.00 元 × 2"
    assert tariff["en"] == "first hour 5.00 yuan; then 2.00 yuan per hour × 2"


def test_the_caps_say_what_was_counted_and_what_is_charged():
    rule = TariffRule(first_minutes=60, first_fen=500, increment_minutes=60, increment_fen=200, cap_fen=2000)
    *_, cap = words(rule, timedelta(hours=30))
    assert cap["kind"] == "cap" and cap["zh"] == "封顶 20.00 元（任意 24 小时内；按时计 63.00 元）"
    cycle = rule.model_copy(update={"cap_period": "entry_cycle"})
    lines = words(cycle, timedelta(hours=30))
    assert [w["zh"] for w in lines] == [
        "第 1 个 24 小时：首小时 5.00 元；之后每小时 2.00 元 × 23",
        "封顶 20.00 元（自入场起第 1 个 24 小时，按时计 51.00 元）",
        "第 2 个 24 小时：首小时 5.00 元；之后每小时 2.00 元 × 5"]


def test_half_hours_flat_rounding_and_the_grace_after_paying():
    rule = TariffRule(free_minutes=15, first_minutes=60, first_fen=500, increment_minutes=30, increment_fen=100,
                      rounding="second", deduct_free_minutes=True)
    lines = words(rule, timedelta(minutes=100, seconds=5), paid_at=ENTERED + timedelta(minutes=95))
    assert [w["kind"] for w in lines] == ["rounding", "grace", "free", "tariff"]
    assert lines[1]["zh"] == "付款后 6 分钟离场，在 10 分钟离场时限内：付款后不再计费"
    assert lines[3]["zh"] == "首小时 5.00 元；之后每 30 分钟 1.00 元 × 1"
    [flat] = words(TariffRule(flat_fen=1000), timedelta(hours=3))
    assert (flat["zh"], flat["en"]) == ("按次收费 10.00 元", "10.00 yuan per visit")
    [free] = words(TariffRule(free_minutes=30, first_minutes=60, first_fen=500), timedelta(minutes=10))
    assert free["zh"] == "停留 10 分钟，在 30 分钟免费时间内"


def test_no_entry_record_and_the_rules_lines():
    fee = compute_no_entry_fee(TariffRule(no_entry="fixed", no_entry_fen=2000), ENTERED)
    assert fee is not None
    assert describe_line(fee.breakdown[0].line(), {})["zh"] == "无入场记录：按固定金额收费"
    span = "2026-12-07 08:00 - 2026-12-07 11:00"
    assert describe_line(f"{span}  rule               0 fen  tariff rule default (temporary)", {})["zh"] == \
        "收费规则 default（临时车）"
    assert describe_line(f"{span}  blacklist          0 fen  blacklisted: 逃费", {})["zh"] == "黑名单车辆：逃费"


@pytest.mark.parametrize("kind,zh", [("exact", "与入场记录车牌完全一致"),
                                     ("confusable", "按形近字匹配入场记录（8/B、0/O、1/I）（粤B8C123 ↔ 粤BBC123）"),
                                     ("province", "按入场记录匹配，仅省份简称不同（粤B8C123 ↔ 粤BBC123）")])
def test_the_match_names_both_plates_when_they_differ(kind, zh):
    car = {"plate": "粤B8C123", "entry_plate": "粤BBC123" if kind != "exact" else "粤B8C123"}
    assert describe_line(f"match:{kind}", car)["zh"] == zh


def test_stored_value_paid_ahead_and_an_unknown_line_kept_as_it_is():
    car = {"detail": ["match:exact", "stored value: balance 3元50分, short of 7元", "something new: 42",
                      "2026-12-07 08:00 - 2026-12-07 11:00  novel          100 fen  a new kind of line"],
           "plate": "粤B1", "total_fen": 1000, "paid_fen": 300, "due_fen": 700}
    lines = describe(car)
    assert lines[1]["zh"] == "储值余额 3.50 元，不足 7.00 元"
    assert lines[2] == {"kind": "raw", "zh": "something new: 42", "en": "something new: 42"}
    assert lines[3]["kind"] == "raw" and lines[3]["en"] == car["detail"][3]  # never dropped
    assert lines[4]["zh"] == "合计 10.00 元；已预付 3.00 元；还需 7.00 元"


def test_day_and_night_segments_keep_their_names_and_the_night_cap():
    rule = TariffRule.model_validate({"segments": [
        {"name": "白天", "start": "08:00", "end": "20:00", "first_minutes": 60, "first_fen": 500,
         "increment_fen": 100},
        {"name": "夜间", "start": "20:00", "end": "08:00", "increment_minutes": 120, "increment_fen": 100,
         "cap_fen": 300}]})
    lines = words(rule, timedelta(hours=24))
    assert all(w["kind"] != "raw" for w in lines), lines
    assert lines[0]["zh"].startswith("白天 08:00-20:00：首小时 5.00 元；之后每小时 1.00 元 × 11")
    assert any(w["kind"] == "segment_cap" and w["zh"].startswith("夜间 20:00-08:00 时段封顶 3.00 元") for w in lines)
