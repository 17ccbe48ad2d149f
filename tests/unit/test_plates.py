"""Plate normalization (unchanged behaviour), what a plate may be (classify_plate) and matching an exit plate to
open entry records."""

import pytest

from lanectl.core.plates import (DEFAULT_SPECIAL_PREFIXES, PROVINCES, SUFFIXES, PlateMatch, classify_plate,
                                 is_valid_plate, match_entry, normalize_plate, normalize_special_prefix)


@pytest.mark.parametrize("raw, plate", [
    ("粤B 12345", "粤B12345"), ("粤b·1234o", "粤B12340"), ("粤ＢＩ2345", "粤B12345"), ("无牌车", ""), ("_无_", ""), (" 无牌 ", ""), ("", ""),
    ("粤O12345", "粤O12345"),  # the first two characters are kept as read
])
def test_normalize_plate(raw, plate):
    assert normalize_plate(raw) == plate


def test_is_valid_plate():
    assert is_valid_plate("粤B12345") and is_valid_plate("粤BD12345") and is_valid_plate("")
    assert not is_valid_plate("12345")


# -- classify_plate: plates, special plates, plate-less, unreadable ------------------------------------------
def test_the_31_provinces():
    assert len(PROVINCES) == len(set(PROVINCES)) == 31
    for p in PROVINCES:
        assert classify_plate(f"{p}A12345") == "plate", p


@pytest.mark.parametrize("suffix", list(SUFFIXES))
def test_each_known_suffix(suffix):
    assert classify_plate(f"粤B1234{suffix}") == "plate"
    assert classify_plate(f"粤B12345{suffix}") == "unreadable"  # a suffix takes the place of the last character


@pytest.mark.parametrize("plate, kind", [
    ("粤B12345", "plate"), ("京A0000Z", "plate"),
    ("粤BD12345", "plate"), ("粤BF1234A", "plate"), ("粤B12345D", "plate"), ("粤B12345F", "plate"),  # new energy
    ("粤B123456", "unreadable"), ("粤BA12345", "unreadable"),  # 8 characters without D/F where it belongs
    ("WJ粤12345", "special"), ("WJ0112345", "special"), ("WJ01警12345", "special"), ("WJ粤1234消", "special"),
    ("使014578", "special"),
    ("", "plateless"),
    ("竑B55502", "unreadable"),  # 粵B55502 sent in Big5, read as GBK
    ("袋B12345", "unreadable"), ("A12345", "unreadable"), ("AB12345", "unreadable"), ("粤12345", "unreadable"),
    ("粤B1234", "unreadable"), ("粤B1234无", "unreadable"), ("粤b12345", "unreadable"),  # not normalized
    ("WJ粤B12345", "unreadable"), ("WJ", "unreadable"), ("使", "unreadable"), ("12345", "unreadable"),
    ("VA12345", "unreadable"),  # a military prefix the site has not named
    ("粤B12345 ", "unreadable"), ("-", "unreadable"),
])
def test_classify_plate(plate, kind):
    assert classify_plate(plate) == kind


@pytest.mark.parametrize("raw, plate, kind", [
    ("粤b12345", "粤B12345", "plate"), ("粤b·1234d", "粤B1234D", "plate"), ("wj粤12345", "WJ粤12345", "special"),
    ("粤ｂｄ１２３４５", "粤BD12345", "plate"), ("无牌车", "", "plateless"), ("竑b55502", "竑B55502", "unreadable"),
])
def test_classify_after_normalization(raw, plate, kind):
    assert normalize_plate(raw) == plate and classify_plate(plate) == kind


def test_the_site_names_the_special_prefixes():
    assert DEFAULT_SPECIAL_PREFIXES == ("WJ", "使")
    assert classify_plate("VA12345", ("VA",)) == "special" and classify_plate("V12345", ("V",)) == "special"
    assert classify_plate("民航12345", ("民航",)) == "special"
    assert classify_plate("使014578", ("VA",)) == "unreadable"  # the list replaces the default
    assert classify_plate("粤B12345", ()) == "plate"


@pytest.mark.parametrize("raw, prefix", [("va", "VA"), ("ＷＪ", "WJ"), (" 使 ", "使"), ("民航", "民航")])
def test_special_prefix_spelling(raw, prefix):
    assert normalize_special_prefix(raw) == prefix


@pytest.mark.parametrize("raw", ["", "ABCD", "V1", "粤", "粤A", "-", "V-"])
def test_special_prefix_that_cannot_be_one(raw):
    with pytest.raises(ValueError):
        normalize_special_prefix(raw)


def test_the_edge_passes_plate_shapes_on_and_drops_noise():
    # a plate-shaped misread reaches the lane (which sends it to the booth); noise does not
    assert is_valid_plate("竑B55502") and is_valid_plate("使014578") and is_valid_plate("WJ粤12345")
    assert not is_valid_plate("VA12345") and is_valid_plate("VA12345", ("VA",))
    assert not any(is_valid_plate(t) for t in ("HELLO", "-", "粤B123", "12345"))


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


def test_the_lanes_lookup_of_the_cars_inside_matches_as_match_entry_does():
    """core/lane.py match_inside: a normalized plate that is a key is taken at once; anything else goes through
    match_entry — the answer is match_entry's either way. EnteredAt reads like the dict it replaces."""
    from datetime import datetime, timedelta, timezone

    from lanectl.core.lane import EnteredAt, InsideCar, match_inside

    t0 = datetime(2026, 12, 8, tzinfo=timezone.utc)
    plates = ["粤B12345", "湘B12345", "粤B1234学", "粤B88888", "粤BO1234", "京A00001"]
    inside = {p: InsideCar(f"in1_{i}", t0 + timedelta(minutes=i)) for i, p in enumerate(plates)}
    for read in (*plates, "粤b12345", "粤 B12345", "川B12345", "粤BB8888", "粤B8B888", "粤B99999", "", "粤B0I234"):
        assert match_inside(read, inside) == match_entry(read, inside.keys()), read
    assert match_inside("粤B88888", inside).kind == "exact"
    present = EnteredAt(inside)
    assert dict(present) == {p: c.entered_at for p, c in inside.items()} and len(present) == len(plates)
    assert "京A00001" in present and "京A00002" not in present and present.get("京A00002") is None
