"""Vehicle classes and RulesPolicy: monthly cards (mid-stay start/expiry, grace days, shared spaces), lists,
stored value, no entry record, tariff selection by colour and subtype."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from lanectl.core.policy import EntryDecision, ExitQuote, Policy
from lanectl.core.rules import CardRenewal, RenewalError, RulesPolicy, VehicleRules, renew_card
from lanectl.core.tariff import Tariffs
from lanectl.cli.fee_report import fee_to_json, fee_to_text, quote_for_cli

SH = ZoneInfo("Asia/Shanghai")

SITE = yaml.safe_load("""
tariffs:
  default: &standard
    free_minutes: 30
    first_minutes: 60
    first_fen: 500
    increment_minutes: 60
    increment_fen: 100
    cap_fen: 2000
    no_entry: fixed
    no_entry_fen: 1500
  overrides:
    - name: truck
      when: {subtype: B}
      rule: {<<: *standard, first_fen: 1000}
    - name: new_energy
      when: {color: green}
      rule: {<<: *standard, free_minutes: 120}
    - name: stored_value
      when: {vehicle_class: stored_value}
      rule: {<<: *standard, no_entry: operator, no_entry_fen: null}
vehicles:
  allow_temporary: true
  monthly:
    - card_id: M001
      plates: [粤B10001]
      start: 2026-11-01
      end: 2026-11-30
      grace_days: 2
    - card_id: M002
      plates: [粤B20001, 粤B20002, 粤B20003]
      start: 2026-01-01
      end: 2026-12-31
      spaces: 2
  whitelist:
    粤B00001: {kind: vip, label: 贵宾 欢迎光临}
    粤B00002:
  blacklist:
    粤B66666: 逃费三次
  stored_value:
    粤B77777: 5000
    粤B77778: 300
  plate_subtypes:
    粤B88888: B
  color_subtypes:
    yellow: B
""")

TARIFFS = Tariffs.model_validate(SITE["tariffs"])
VEHICLES = VehicleRules.model_validate(SITE["vehicles"])
POLICY = RulesPolicy(TARIFFS, VEHICLES)


def t(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=SH)


def test_rules_policy_is_a_policy():
    policy: Policy = POLICY
    assert isinstance(policy.entry("粤B12345", "blue", t("2026-11-22 08:00"), {}), EntryDecision)
    assert isinstance(policy.exit("粤B12345", "blue", t("2026-11-22 08:00"), t("2026-11-22 11:00"), {}), ExitQuote)


class TestTemporary:
    def test_worked_example_through_the_policy(self):
        q = POLICY.exit("粤B12345", "blue", t("2026-11-22 08:00"), t("2026-11-22 11:00"), {})
        assert (q.due_fen, q.total_fen, q.vehicle_class, q.reason) == (700, 700, "temporary", "fee")
        assert any("tariff rule default" in line for line in q.breakdown)

    def test_free_stay_and_paid_ahead(self):
        free = POLICY.exit("粤B12345", "blue", t("2026-11-22 08:00"), t("2026-11-22 08:20"), {})
        assert (free.due_fen, free.reason, free.free) == (0, "zero_fee", True)
        paid = POLICY.exit("粤B12345", "blue", t("2026-11-22 08:00"), t("2026-11-22 11:05"), {},
                           paid_fen=700, paid_at=t("2026-11-22 11:00"))
        assert (paid.due_fen, paid.total_fen, paid.reason) == (0, 700, "paid_ahead")

    def test_temporary_refused_when_not_allowed(self):
        closed = RulesPolicy(TARIFFS, VEHICLES.model_copy(update={"allow_temporary": False}))
        d = closed.entry("粤B12345", "blue", t("2026-11-22 08:00"), {})
        assert (d.allow, d.reason) == (False, "temporary_not_allowed")
        assert closed.entry("粤B10001", "blue", t("2026-11-22 08:00"), {}).allow  # monthly still enters

    def test_plateless_car_is_temporary(self):
        d = POLICY.entry("", "", t("2026-11-22 08:00"), {})
        assert (d.allow, d.vehicle_class) == (True, "temporary")

    @pytest.mark.parametrize("plate, color, rule", [
        ("粤B88888", "blue", "truck"),  # subtype by plate
        ("粤B12345", "yellow", "truck"),  # subtype by colour
        ("粤B12345", "黄色", "truck"),  # colour aliases
        ("粤B12345", "green", "new_energy"),
        ("粤B12345", "blue", "default"),
    ])
    def test_tariff_follows_colour_and_subtype(self, plate, color, rule):
        q = POLICY.exit(plate, color, t("2026-11-22 08:00"), t("2026-11-22 09:00"), {})
        assert any(f"tariff rule {rule}" in line for line in q.breakdown)
        assert q.total_fen == {"truck": 1000, "new_energy": 0, "default": 500}[rule]


class TestMonthly:
    def test_entry_message_counts_the_days_left(self):
        d = POLICY.entry("粤B10001", "blue", t("2026-11-18 08:00"), {})
        assert (d.allow, d.vehicle_class, d.reason, d.message) == (True, "monthly", "monthly", "月租车 剩余12天")
        assert POLICY.entry("粤B10001", "blue", t("2026-11-30 08:00"), {}).message == "月租车 今日到期"

    def test_grace_days_after_expiry(self):
        d = POLICY.entry("粤B10001", "blue", t("2026-12-01 08:00"), {})
        assert (d.vehicle_class, d.reason, d.message) == ("monthly", "monthly_grace", "月租车 已过期 宽限剩余1天")
        q = POLICY.exit("粤B10001", "blue", t("2026-12-01 08:00"), t("2026-12-02 20:00"), {})
        assert (q.due_fen, q.reason) == (0, "monthly")

    def test_expired_beyond_grace_is_temporary(self):
        d = POLICY.entry("粤B10001", "blue", t("2026-12-03 08:00"), {})
        assert (d.allow, d.vehicle_class, d.reason) == (True, "temporary", "monthly_expired")
        q = POLICY.exit("粤B10001", "blue", t("2026-12-03 08:00"), t("2026-12-03 11:00"), {})
        assert (q.due_fen, q.vehicle_class) == (700, "temporary")

    def test_not_yet_started_is_temporary(self):
        d = POLICY.entry("粤B10001", "blue", t("2026-10-31 08:00"), {})
        assert (d.vehicle_class, d.reason) == ("temporary", "monthly_not_started")

    def test_card_starting_mid_stay_charges_only_the_time_before(self):
        # 20:00 -> 24:00 uncovered: 500 + 3 x 100; the morning is on the card
        q = POLICY.exit("粤B10001", "blue", t("2026-10-31 20:00"), t("2026-11-01 10:00"), {})
        assert (q.due_fen, q.vehicle_class, q.reason) == (800, "monthly", "fee")
        assert any("monthly" in line and "not charged" in line for line in q.breakdown)

    def test_card_expiring_mid_stay_charges_only_the_time_after(self):
        # valid until 12-03 00:00 (end 11-30 + 2 grace days); 00:00 -> 03:00 = 500 + 2 x 100
        q = POLICY.exit("粤B10001", "blue", t("2026-12-02 20:00"), t("2026-12-03 03:00"), {})
        assert (q.due_fen, q.vehicle_class) == (700, "monthly")

    def test_stay_longer_than_the_card_charges_both_ends(self):
        card = VEHICLES.model_copy(update={"monthly": (VEHICLES.monthly[0].model_copy(
            update={"start": t("2026-11-10 00:00").date(), "end": t("2026-11-10 00:00").date(), "grace_days": 0}),)})
        policy = RulesPolicy(TARIFFS, card)
        # 11-09 22:00 -> 24:00 = 500 + 100; 11-11 00:00 -> 01:00 = 500
        q = policy.exit("粤B10001", "blue", t("2026-11-09 22:00"), t("2026-11-11 01:00"), {})
        assert q.due_fen == 1100

    def test_uncovered_part_within_free_minutes_is_free(self):
        q = POLICY.exit("粤B10001", "blue", t("2026-12-02 20:00"), t("2026-12-03 00:25"), {})
        assert (q.due_fen, q.reason) == (0, "monthly")

    def test_payment_for_the_uncovered_part_then_grace(self):
        q = POLICY.exit("粤B10001", "blue", t("2026-12-02 20:00"), t("2026-12-03 03:08"), {},
                        paid_fen=700, paid_at=t("2026-12-03 03:00"))
        assert (q.due_fen, q.total_fen, q.reason) == (0, 700, "paid_ahead")
        late = POLICY.exit("粤B10001", "blue", t("2026-12-02 20:00"), t("2026-12-03 03:30"), {},
                           paid_fen=700, paid_at=t("2026-12-03 03:00"))
        # after_grace: difference (default): the uncovered 00:00 -> 03:30 is 500 + 3 x 100 = 800, less the 700
        assert (late.due_fen, late.total_fen) == (100, 800)

    def test_no_entry_record_with_a_valid_card_is_free(self):
        q = POLICY.exit("粤B10001", "blue", None, t("2026-11-22 11:00"), {})
        assert (q.due_fen, q.vehicle_class, q.needs_operator) == (0, "monthly", False)


class TestSharedSpaces:
    """Card M002: three cars, two spaces."""

    def test_third_car_enters_as_temporary_while_two_are_inside(self):
        inside = {"粤B20001": t("2026-11-22 07:00"), "粤B20002": t("2026-11-22 07:30")}
        d = POLICY.entry("粤B20003", "blue", t("2026-11-22 08:00"), inside)
        assert (d.allow, d.vehicle_class, d.reason) == (True, "temporary", "monthly_spaces_full")
        one_inside = {"粤B20001": t("2026-11-22 07:00")}
        assert POLICY.entry("粤B20003", "blue", t("2026-11-22 08:00"), one_inside).vehicle_class == "monthly"

    def test_own_plate_in_present_does_not_take_a_space(self):
        inside = {"粤B20001": t("2026-11-22 07:00"), "粤B20003": t("2026-11-22 06:00")}
        assert POLICY.entry("粤B20003", "blue", t("2026-11-22 08:00"), inside).vehicle_class == "monthly"

    def test_third_car_pays_as_temporary_while_the_spaces_are_taken(self):
        present = {"粤B20001": t("2026-11-22 07:00"), "粤B20002": t("2026-11-22 07:30"),
                   "粤B20003": t("2026-11-22 08:00")}
        q = POLICY.exit("粤B20003", "blue", t("2026-11-22 08:00"), t("2026-11-22 11:00"), present)
        assert (q.due_fen, q.vehicle_class) == (700, "temporary")
        first = POLICY.exit("粤B20001", "blue", t("2026-11-22 07:00"), t("2026-11-22 11:00"), present)
        assert (first.due_fen, first.vehicle_class) == (0, "monthly")  # the earlier cars hold the spaces

    def test_without_the_entry_decision_a_space_freed_before_exit_counts_as_free(self):
        present = {"粤B20002": t("2026-11-22 07:30"), "粤B20003": t("2026-11-22 08:00")}
        q = POLICY.exit("粤B20003", "blue", t("2026-11-22 08:00"), t("2026-11-22 11:00"), present)
        assert (q.due_fen, q.vehicle_class) == (0, "monthly")

    def test_a_car_that_entered_over_the_spaces_pays_as_temporary_even_after_the_others_left(self):
        only_me = {"粤B20003": t("2026-11-22 08:00")}
        q = POLICY.exit("粤B20003", "blue", t("2026-11-22 08:00"), t("2026-11-22 11:00"), only_me,
                        entry_reason="monthly_spaces_full")
        assert (q.due_fen, q.vehicle_class) == (700, "temporary")

    def test_full_card_refused_when_temporary_not_allowed(self):
        closed = RulesPolicy(TARIFFS, VEHICLES.model_copy(update={"allow_temporary": False}))
        inside = {"粤B20001": t("2026-11-22 07:00"), "粤B20002": t("2026-11-22 07:30")}
        d = closed.entry("粤B20003", "blue", t("2026-11-22 08:00"), inside)
        assert (d.allow, d.reason) == (False, "monthly_spaces_full")


class TestLists:
    def test_blacklist_refused_at_entry_and_flagged_at_exit(self):
        d = POLICY.entry("粤B66666", "blue", t("2026-11-22 08:00"), {})
        assert (d.allow, d.vehicle_class, d.reason) == (False, "blacklist", "blacklist")
        q = POLICY.exit("粤B 66666", "blue", t("2026-11-22 08:00"), t("2026-11-22 11:00"), {})
        assert q.flags == ("blacklist",)
        assert q.due_fen == 700  # still charged as what it otherwise is
        assert any("逃费三次" in line for line in q.breakdown)

    def test_whitelist_enters_and_leaves_free(self):
        d = POLICY.entry("粤B00001", "blue", t("2026-11-22 08:00"), {})
        assert (d.allow, d.vehicle_class, d.reason, d.message) == (True, "vip", "whitelist", "贵宾 欢迎光临")
        assert POLICY.entry("粤B00002", "blue", t("2026-11-22 08:00"), {}).message == "免费车 欢迎光临"
        q = POLICY.exit("粤B00001", "blue", t("2026-11-20 08:00"), t("2026-11-22 11:00"), {})
        assert (q.due_fen, q.total_fen, q.reason, q.free) == (0, 0, "whitelist", True)

    def test_whitelist_without_entry_record_is_free(self):
        q = POLICY.exit("粤B00002", "blue", None, t("2026-11-22 11:00"), {})
        assert (q.due_fen, q.needs_operator) == (0, False)


class TestStoredValue:
    """The rules price a stored-value car by its class; the balance (a ledger in the store) is the lane's."""

    def test_entry_is_allowed_as_stored_value(self):
        d = POLICY.entry("粤B77777", "blue", t("2026-11-22 08:00"), {})
        assert (d.allow, d.vehicle_class, d.message) == (True, "stored_value", "储值车")

    def test_exit_quotes_the_class_tariff(self):
        q = POLICY.exit("粤B77777", "blue", t("2026-11-22 08:00"), t("2026-11-22 11:00"), {})
        assert (q.due_fen, q.vehicle_class, q.reason) == (700, "stored_value", "fee")

    def test_stored_value_uses_its_class_override(self):
        q = POLICY.exit("粤B77777", "blue", None, t("2026-11-22 11:00"), {})
        assert (q.needs_operator, q.reason, q.free) == (True, "no_entry_record", False)


class TestNoEntryAndOddInputs:
    def test_no_entry_record_fixed_amount(self):
        q = POLICY.exit("粤B12345", "blue", None, t("2026-11-22 11:00"), {}, paid_fen=500)
        assert (q.total_fen, q.due_fen, q.reason, q.needs_operator) == (1500, 1000, "no_entry_record", False)

    def test_entry_after_exit_goes_to_the_operator(self):
        q = POLICY.exit("粤B12345", "blue", t("2026-11-22 12:00"), t("2026-11-22 11:00"), {})
        assert (q.needs_operator, q.reason, q.free) == (True, "entry_after_exit", False)

    def test_payment_slightly_after_the_quote_is_clamped(self):
        q = POLICY.exit("粤B12345", "blue", t("2026-11-22 08:00"), t("2026-11-22 11:00"), {},
                        paid_fen=700, paid_at=t("2026-11-22 11:01"))
        assert q.due_fen == 0


class TestVehicleRulesValidation:
    @pytest.mark.parametrize("vehicles, loc, words", [
        ({"whitelist": {"粤B12345": None, "粤B 12345": None}}, "whitelist", "listed twice"),
        ({"blacklist": {"12345": "x"}}, "blacklist", "not a plate"),
        ({"blacklist": {"粤B12345": ""}}, "blacklist", "at least 1"),
        ({"whitelist": {"无牌车": None}}, "whitelist", "plate-less"),
        ({"stored_value": {"粤B12345": 10.5}}, "stored_value", "whole fen"),
        ({"stored_value": {"粤B12345": -1}}, "stored_value", "negative"),
        ({"whitelist": {"粤B12345": {"kind": "boss"}}}, "whitelist", "free"),
        ({"monthly": [{"card_id": "A", "plates": ["粤B12345"], "start": "2026-11-02", "end": "2026-11-01"}]},
         "monthly", "before start"),
        ({"monthly": [{"card_id": "A", "plates": ["粤B12345"], "start": "2026-11-01", "end": "2026-11-30",
                       "spaces": 2}]}, "monthly", "more than the card"),
        ({"monthly": [{"card_id": "A", "plates": ["粤B12345", "粤B 12345"], "start": "2026-11-01",
                       "end": "2026-11-30"}]}, "monthly", "twice"),
        ({"monthly": [{"card_id": "A", "plates": [], "start": "2026-11-01", "end": "2026-11-30"}]}, "monthly",
         "at least 1"),
        ({"color_subtypes": {"purple": "A"}}, "color_subtypes", "colour"),
        ({"alow_temporary": False}, "alow_temporary", "Extra"),
        ({"special_prefixes": ["VA", "粤"]}, "special_prefixes", "province"),
        ({"special_prefixes": ["V-"]}, "special_prefixes", "1 to 3 letters"),
    ])
    def test_field_errors_name_the_key(self, vehicles, loc, words):
        with pytest.raises(ValidationError) as exc:
            VehicleRules.model_validate(vehicles)
        error = exc.value.errors()[0]
        assert error["loc"][0] == loc
        assert words in error["msg"]

    @pytest.mark.parametrize("vehicles, words", [
        ({"monthly": [{"card_id": "A", "plates": ["粤B12345"], "start": "2026-11-01", "end": "2026-11-30"},
                      {"card_id": "B", "plates": ["粤B12345"], "start": "2026-12-01", "end": "2026-12-31"}]},
         "on cards"),
        ({"monthly": [{"card_id": "A", "plates": ["粤B12345"], "start": "2026-11-01", "end": "2026-11-30"}],
          "stored_value": {"粤B12345": 100}}, "one class"),
        ({"whitelist": {"粤B12345": None}, "stored_value": {"粤B12345": 100}}, "one class"),
        ({"monthly": [{"card_id": "A", "plates": ["粤B1"], "start": "2026-11-01", "end": "2026-11-30"}]},
         "not a plate"),
    ])
    def test_cross_checks(self, vehicles, words):
        with pytest.raises(ValidationError, match=words):
            VehicleRules.model_validate(vehicles)

    def test_plates_are_normalized_on_load(self):
        v = VehicleRules.model_validate({"whitelist": {"粤b 1234o": None}})
        assert "粤B12340" in v.whitelist


class TestFeeReport:
    def test_json_shape(self):
        fee = quote_for_cli(TARIFFS, VEHICLES, "粤B12345", "blue", None, t("2026-11-22 08:00"),
                            t("2026-11-22 11:00"), 100, None)
        data = fee_to_json(fee)
        assert list(data) == ["due_fen", "total_fen", "paid_fen", "breakdown"]
        assert (data["due_fen"], data["total_fen"], data["paid_fen"]) == (600, 700, 100)
        assert set(data["breakdown"][0]) == {"kind", "start", "end", "fen", "note"}
        assert data["breakdown"][0]["start"] == "2026-11-22T08:00:00+08:00"
        assert sum(item["fen"] for item in data["breakdown"]) == 700

    def test_text_shows_fen_and_yuan(self):
        fee = quote_for_cli(TARIFFS, VEHICLES, "粤B12345", "blue", None, t("2026-11-22 08:00"),
                            t("2026-11-22 11:00"), 0, None)
        text = fee_to_text(fee)
        assert text.splitlines()[0] == "due:   700 fen (7.00 元)"
        assert "first 60 min 500 fen" in text

    def test_forced_class_ignores_cards(self):
        as_card = quote_for_cli(TARIFFS, VEHICLES, "粤B10001", "blue", None, t("2026-11-22 08:00"),
                                t("2026-11-22 11:00"), 0, None)
        forced = quote_for_cli(TARIFFS, VEHICLES, "粤B10001", "blue", "temporary", t("2026-11-22 08:00"),
                               t("2026-11-22 11:00"), 0, None)
        assert (as_card.total_fen, forced.total_fen) == (0, 700)

    def test_forced_unknown_class_is_an_error(self):
        with pytest.raises(ValueError, match="no tariff for class"):
            quote_for_cli(TARIFFS, VEHICLES, "粤B12345", "blue", "vip", t("2026-11-22 08:00"),
                          t("2026-11-22 11:00"), 0, None)

    def test_operator_case_is_visible_in_text(self):
        fee = quote_for_cli(TARIFFS, VEHICLES, "粤B77777", "blue", None, None, t("2026-11-22 11:00"), 0, None)
        assert fee_to_text(fee).startswith("NEEDS THE BOOTH OPERATOR")


def test_naive_times_are_refused():
    from lanectl.core.tariff import TariffError

    with pytest.raises(TariffError, match="timezone-aware"):
        POLICY.entry("粤B10001", "blue", datetime(2026, 11, 22, 8, 0), {})
    with pytest.raises(TariffError, match="timezone-aware"):
        POLICY.exit("粤B12345", "blue", datetime(2026, 11, 22, 8, 0), datetime(2026, 11, 22, 9, 0), {})
    with pytest.raises(TariffError, match="timezone-aware"):
        POLICY.exit("粤B12345", "blue", t("2026-11-22 08:00"), datetime(2026, 11, 22, 9, 0), {})
    with pytest.raises(TariffError, match="timezone-aware"):
        POLICY.entry("粤B12345", "blue", datetime(2026, 11, 22, 8, 0), {})


class TestCardRenewal:
    """A platform renewal (Bolink 5.8) extends the card locally; it never shortens one."""

    def test_renewal_by_card_id_extends_the_end(self):
        rules, card = renew_card(VEHICLES, CardRenewal("M002", "", date(2026, 12, 1), date(2027, 1, 31)))
        assert (card.card_id, card.start, card.end) == ("M002", date(2026, 1, 1), date(2027, 1, 31))
        policy = RulesPolicy(TARIFFS, rules)
        q = policy.exit("粤B20001", "blue", t("2027-01-10 08:00"), t("2027-01-10 18:00"), {})
        assert (q.due_fen, q.reason) == (0, "monthly")

    def test_renewal_by_plate_and_a_late_repeat_never_shortens(self):
        rules, _ = renew_card(VEHICLES, CardRenewal("", "粤B20001", None, date(2027, 3, 31)))
        rules, card = renew_card(rules, CardRenewal("", "粤B20001", None, date(2027, 1, 31)))
        assert card.end == date(2027, 3, 31)

    def test_renewal_of_an_unknown_card_creates_it_for_the_plate(self):
        rules, card = renew_card(VEHICLES, CardRenewal("B9", "粤b 99999", date(2026, 11, 22), date(2026, 12, 21)))
        assert (card.card_id, card.plates, card.start) == ("B9", ("粤B99999",), date(2026, 11, 22))
        d = RulesPolicy(TARIFFS, rules).entry("粤B99999", "blue", t("2026-11-23 08:00"), {})
        assert d.vehicle_class == "monthly"

    @pytest.mark.parametrize("renewal, why", [
        (CardRenewal("X", "", None, date(2027, 1, 1)), "names no plate"),
        (CardRenewal("X", "粤B00001", None, date(2027, 1, 1)), "conflicts"),  # a whitelisted plate
    ])
    def test_renewals_that_cannot_apply_are_refused_clearly(self, renewal, why):
        with pytest.raises(RenewalError, match=why):
            renew_card(VEHICLES, renewal)


def test_special_prefixes_default_and_spelling():
    assert VehicleRules().special_prefixes == ("WJ", "使")
    assert VehicleRules.model_validate({"special_prefixes": ["wj", "使", "va"]}).special_prefixes == ("WJ", "使", "VA")


def test_listed_plates_must_be_plates_at_this_lot():
    military = {"whitelist": {"VA12345": {"kind": "police"}}}
    with pytest.raises(ValidationError, match="VA12345 is no plate at this lot"):
        VehicleRules.model_validate(military)
    assert "VA12345" in VehicleRules.model_validate({**military, "special_prefixes": ["WJ", "VA"]}).whitelist
    for section, value in (("blacklist", {"竑B55502": "x"}), ("stored_value", {"粤B123456": 100}),
                           ("monthly", [{"card_id": "A", "plates": ["竑B55502"], "start": "2026-11-01",
                                         "end": "2026-11-30"}])):
        with pytest.raises(ValidationError, match=f"{section}: .* is no plate at this lot"):
            VehicleRules.model_validate({section: value})
    assert "使014578" in VehicleRules.model_validate({"whitelist": {"使014578": None}}).whitelist
