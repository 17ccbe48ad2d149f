"""Plate normalization (unchanged behaviour) and matching an exit plate to open entry records."""

import pytest

from lanectl.core.plates import PlateMatch, is_valid_plate, match_entry, normalize_plate


@pytest.mark.parametrize("raw, plate", [
    ("粤B 12345", "粤B12345"), ("粤b·1234o", "粤B12340"), ("粤ＢＩ2345", "粤B12345"), ("无牌车", ""), ("_无_", ""), (" 无牌 ", ""), ("", ""),
    ("粤O12345", "粤O12345"),  # the first two characters are kept as read
])
def test_normalize_plate(raw, plate):
    assert normalize_plate(raw) == plate


def test_is_valid_plate():
    assert is_valid_plate("粤B12345") and is_valid_plate("粤BD12345") and is_valid_plate("")
    assert not is_valid_plate("12345")


@pytest.mark.parametrize("exit_plate, candidates, kind, plate", [
    ("粤B12345", ["京A11111", "粤B12345"], "exact", "粤B12345"),
    ("粤B 12345", ["粤B12345"], "exact", "粤B12345"),  # normalized before comparing
    ("粤B12345", ["京A11111", "湘B12345"], "province", "湘B12345"),
    ("粤B12385", ["粤B123B5"], "confusable", "粤B123B5"),  # 8 / B
    ("粤8A1234", ["粤BA1234"], "confusable", "粤BA1234"),  # 8 / B in the city letter
    ("粤I12345", ["粤112345"], "confusable", "粤112345"),  # 1 / I in the city letter
    ("京O12345", ["京012345"], "confusable", "京012345"),  # 0 / O in the city letter
    ("粤B12345", ["粤B12346"], "none", None),  # 5 / 6 is not a confusable pair
    ("粤B12345", ["粤B12388"], "none", None),  # two characters differ
    ("粤B12345", ["湘C12345"], "none", None),  # province and city differ
    ("粤B12345", ["粤B123456"], "none", None),  # different length
    ("粤B12345", [], "none", None),
])
def test_match_entry_unique(exit_plate, candidates, kind, plate):
    m = match_entry(exit_plate, candidates)
    assert (m.kind, m.plate) == (kind, plate)
    assert m.candidates == ((plate,) if plate else ())


def test_exact_wins_over_fuzzy_candidates():
    m = match_entry("粤B12345", ["湘B12345", "粤B12345", "粤B123B5"])
    assert m == PlateMatch("exact", "粤B12345", ("粤B12345",))


def test_two_province_candidates_are_ambiguous():
    m = match_entry("粤B12345", ["湘B12345", "桂B12345"])
    assert (m.kind, m.plate) == ("ambiguous", None)
    assert set(m.candidates) == {"湘B12345", "桂B12345"}


def test_a_province_and_a_confusable_candidate_are_ambiguous_too():
    m = match_entry("粤B12385", ["湘B12385", "粤B123B5"])
    assert m.kind == "ambiguous"
    assert set(m.candidates) == {"湘B12385", "粤B123B5"}


def test_two_confusable_candidates_are_ambiguous():
    m = match_entry("粤B88345", ["粤BB8345", "粤B8B345"])
    assert m.kind == "ambiguous" and len(m.candidates) == 2


def test_o_and_i_after_the_city_letter_are_normalized_so_they_match_exactly():
    m = match_entry("粤B18345", ["粤BI8345"])
    assert (m.kind, m.plate) == ("exact", "粤BI8345")  # the candidate string is returned as given


def test_duplicate_candidates_count_once():
    m = match_entry("粤B12345", ["湘B12345", "湘B12345", "湘B 12345"])
    assert (m.kind, m.plate) == ("province", "湘B12345")


@pytest.mark.parametrize("exit_plate", ["", "无牌车", "  "])
def test_plateless_never_matches(exit_plate):
    assert match_entry(exit_plate, ["", "粤B12345", "无牌车"]) == PlateMatch("none", None, ())


def test_plateless_candidates_are_skipped():
    m = match_entry("粤B12345", ["", "湘B12345"])
    assert m.kind == "province"
