"""Yuan text <-> integer fen, exactly."""

import pytest

from lanectl.core.money import MoneyError, fen_to_yuan, yuan_to_fen


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
