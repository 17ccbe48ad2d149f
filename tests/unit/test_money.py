"""Yuan text <-> integer fen, exactly."""

import pytest

from lanectl.core.money import DEFAULT_MAX_FEN, MoneyError, fen_to_yuan, within_ceiling, yuan_to_fen, yuan_words


@pytest.mark.parametrize("text, fen", [
    ("7", 700), ("7.0", 700), ("7.00", 700), ("0.10", 10), ("0.1", 10), ("0.01", 1), ("0", 0),
    ("12345.67", 1234567), (" 7.50 ", 750), ("+3", 300), ("-0", 0),
])
def test_yuan_to_fen_accepts(text, fen):
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", [
    "", " ", "7.", ".5", "7.001", "0.105", "1e3", "7,00", "1,000", "abc", "7元", "7.0.0", "NaN", "inf",
    "٧", "７",  # non-ASCII digits are not money
])
def test_yuan_to_fen_rejects_garbage(text):
    with pytest.raises(MoneyError, match="yuan"):
        yuan_to_fen(text)


def test_negative_only_when_allowed():
    with pytest.raises(MoneyError, match="negative"):
        yuan_to_fen("-1.50")
    assert yuan_to_fen("-1.50", allow_negative=True) == -150


@pytest.mark.parametrize("value", [7.0, 7, None, b"7"])
def test_yuan_to_fen_wants_text(value):
    with pytest.raises(MoneyError):
        yuan_to_fen(value)


def test_money_error_is_a_value_error():
    assert issubclass(MoneyError, ValueError)


@pytest.mark.parametrize("fen, text", [(700, "7.00"), (10, "0.10"), (1, "0.01"), (0, "0.00"), (123456, "1234.56"),
                                       (-5, "-0.05"), (-150, "-1.50")])
def test_fen_to_yuan(fen, text):
    assert fen_to_yuan(fen) == text


@pytest.mark.parametrize("value", [7.0, "700", True, None])
def test_fen_to_yuan_wants_int(value):
    with pytest.raises(MoneyError):
        fen_to_yuan(value)


@pytest.mark.parametrize("fen", [0, 1, 9, 10, 99, 100, 101, 999999, -1, -100, -12345])
def test_round_trip(fen):
    assert yuan_to_fen(fen_to_yuan(fen), allow_negative=True) == fen


@pytest.mark.parametrize("digits", [16, 4301, 5000, 100_000])
def test_yuan_to_fen_refuses_absurdly_long_whole_parts_as_money_errors(digits):
    # 5000 digits used to reach int()'s digit limit: a bare ValueError, answered 500 by a callback
    with pytest.raises(MoneyError, match="out of range"):
        yuan_to_fen("9" * digits)
    with pytest.raises(MoneyError, match="out of range"):
        yuan_to_fen("9" * digits + ".99", allow_negative=True)


def test_leading_zeros_do_not_count_as_digits():
    assert yuan_to_fen("0" * 40 + "7.00") == 700


def test_ceiling_is_inclusive_and_applies_to_both_signs():
    assert yuan_to_fen("100000", max_fen=DEFAULT_MAX_FEN) == 10_000_000
    with pytest.raises(MoneyError, match="over the ceiling of 100000.00 yuan"):
        yuan_to_fen("100000.01", max_fen=DEFAULT_MAX_FEN)
    with pytest.raises(MoneyError, match="ceiling"):
        yuan_to_fen("-100000.01", allow_negative=True, max_fen=DEFAULT_MAX_FEN)
    assert yuan_to_fen("123456789012345") == 12345678901234500  # no ceiling asked: only the digit bound


@pytest.mark.parametrize("fen, max_fen, ok", [(0, 0, True), (5, 5, True), (6, 5, False), (-6, 5, False),
                                              (10 ** 4000, 10, False), (10 ** 4000, None, True)])
def test_within_ceiling(fen, max_fen, ok):
    if ok:
        assert within_ceiling(fen, max_fen) == fen
    else:
        with pytest.raises(MoneyError, match="ceiling"):
            within_ceiling(fen, max_fen)


@pytest.mark.parametrize("value", [True, 7.0, "7", None])
def test_within_ceiling_wants_an_int(value):
    with pytest.raises(MoneyError, match="must be an int"):
        within_ceiling(value, 100)


def test_error_messages_do_not_echo_megabytes():
    with pytest.raises(MoneyError) as info:
        yuan_to_fen("x" * 1_000_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("fen,words", [(700, "7元"), (750, "7元50分"), (5, "0元05分"), (0, "0元"), (1250, "12元50分"),
                                       (100_000_00, "100000元")])
def test_yuan_words_as_a_board_says_them(fen, words):
    assert yuan_words(fen) == words
