"""Plate-line codec, byte for byte (h11 habit): every input is replayed whole, one byte at a time, split at
every point, and framed by garbage; the result and the stats counters must be the same every way."""

from __future__ import annotations

from dataclasses import asdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanectl.core.plates import COLORS, is_valid_plate
from lanectl.protocols.plate_serial import (
    MAX_LINE,
    DecodeStats,
    PlateLine,
    PlateLineDecoder,
    encode_plate_line,
)

# one undecodable line before the input (0xFF is invalid in GBK and in UTF-8), a short unterminated tail after
GARBAGE_BEFORE = b"\xff\xfe\x00noise\r\n"
GARBAGE_AFTER = b"\x81\xff\x07"


def decode(chunks, **kw) -> tuple[list[PlateLine], DecodeStats]:
    dec = PlateLineDecoder(**kw)
    out: list[PlateLine] = []
    for chunk in chunks:
        out += dec.feed(chunk)
        assert dec.pending <= MAX_LINE  # noise without line ends never piles up
    stats = dec.stats
    # every byte is accounted for: fed = dropped as garbage + kept for an unfinished line + the rest (lines read,
    # blank keep-alive lines, terminators)
    assert stats.bytes_in == sum(map(len, chunks))
    assert stats.skipped_bytes + dec.pending <= stats.bytes_in
    return out, stats


BYTE_COUNTS = ("bytes_in", "skipped_bytes")


def line_counts(stats: DecodeStats) -> dict[str, int]:
    """The per-line counters (the byte counters are checked by decode() and for being the same every way)."""
    return {k: v for k, v in asdict(stats).items() if k not in BYTE_COUNTS}


def replays(data: bytes):
    """The same bytes, arriving every way a serial port might deliver them."""
    yield "whole", [data]
    yield "bytewise", [data[i:i + 1] for i in range(len(data))]
    yield "empty-chunks", [b""] + [data[i:i + 1] for i in range(len(data))] + [b""]
    for cut in range(1, len(data)):
        yield f"split@{cut}", [data[:cut], data[cut:]]


def check(data: bytes, expected: list[PlateLine], around: bool = True, **counts: int) -> None:
    """Every replay of `data` (and of `data` framed by garbage) yields `expected` and exactly these counts."""
    kw = {k: counts.pop(k) for k in ("encoding", "delimiter") if k in counts}
    want = line_counts(DecodeStats(lines=len(expected), **counts))
    framings = [(data, want)]
    if around:
        framed_want = dict(want, skipped_bad_bytes=want["skipped_bad_bytes"] + 1)
        framings.append((GARBAGE_BEFORE + data + GARBAGE_AFTER, framed_want))
    for stream, stats in framings:
        skipped_bytes = set()
        for how, chunks in replays(stream):
            lines, got = decode(chunks, **kw)
            assert lines == expected, (how, stream)
            assert line_counts(got) == stats, (how, stream)
            skipped_bytes.add(got.skipped_bytes)
        assert len(skipped_bytes) == 1, skipped_bytes  # however the bytes arrive


def gbk(text: str) -> bytes:
    return text.encode("gbk")


def utf8(text: str) -> bytes:
    return text.encode("utf-8")


# -- valid lines ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_one_line(encoding):
    check("粤B12345,blue,96\r\n".encode(encoding), [PlateLine("粤B12345", "blue", 96)], encoding=encoding)


@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_several_lines_blank_lines_and_bare_newlines(encoding):
    text = "\r\n京A12345,blue,90\n\n沪C9876D,yellow,80\r\n\r\n  \r\n\t\r\n粤BD12345,green,99\r\n"
    check(text.encode(encoding), [
        PlateLine("京A12345", "blue", 90),
        PlateLine("沪C9876D", "yellow", 80),
        PlateLine("粤BD12345", "green", 99),
    ], encoding=encoding)


@pytest.mark.parametrize("colour, canonical", [
    ("blue", "blue"), ("BLUE", "blue"), ("蓝", "blue"), ("蓝色", "blue"), ("1", "blue"),
    ("yellow", "yellow"), ("黄色", "yellow"), ("2", "yellow"),
    ("white", "white"), ("白", "white"), ("3", "white"),
    ("black", "black"), ("黑色", "black"), ("4", "black"),
    ("green", "green"), ("绿", "green"), ("渐变绿", "green"), ("5", "green"),
    ("yellow-green", "yellow-green"), ("黄绿", "yellow-green"), ("6", "yellow-green"),
    ("unknown", "unknown"), ("未知", "unknown"), ("0", "unknown"), ("", "unknown"),
])
@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_colour_names_english_chinese_and_codes(colour, canonical, encoding):
    check(f"粤B12345,{colour},88\r\n".encode(encoding), [PlateLine("粤B12345", canonical, 88)],
          encoding=encoding)


def test_unknown_colour_is_a_bad_field():
    check(gbk("粤B12345,purple,88\r\n粤B12345,7,88\r\n"), [], skipped_bad_fields=2)


@pytest.mark.parametrize("field, value", [("0", 0), ("100", 100), ("7", 7), ("", 0), (" 42 ", 42),
                                          ("０９６", 96)])
def test_confidence_in_range(field, value):
    check(gbk(f"粤B12345,blue,{field}\r\n"), [PlateLine("粤B12345", "blue", value)])


@pytest.mark.parametrize("field", ["101", "-1", "-0", "+96", "9_6", "96.5", "abc", "1000", "٩٦x"])
def test_confidence_out_of_range_or_not_digits(field):
    check(utf8(f"粤B12345,blue,{field}\r\n"), [], encoding="utf-8", skipped_bad_fields=1)


def test_fewer_fields_default_colour_and_confidence():
    check(gbk("粤B12345\r\n粤B12346,blue\r\n"), [PlateLine("粤B12345", "unknown", 0),
                                                  PlateLine("粤B12346", "blue", 0)])


def test_too_many_fields():
    check(gbk("粤B12345,blue,96,extra\r\n"), [], skipped_bad_fields=1)


def test_plates_are_normalized_at_the_edge():
    text = "粤b 12345,blue,90\r\n粤Ｂ１２３４５,blue,90\r\n粤B1234O,blue,90\r\n粤·B-12I45,blue,90\r\n"
    check(gbk(text), [PlateLine("粤B12345", "blue", 90), PlateLine("粤B12345", "blue", 90),
                      PlateLine("粤B12340", "blue", 90), PlateLine("粤B12145", "blue", 90)])


@pytest.mark.parametrize("text", ["无牌车,unknown,0", "无牌车", "无 牌 车,0,0", "NONE,,", ",blue,0", " ,,50"])
@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_plateless_car(text, encoding):
    expected = PlateLine("", "blue" if "blue" in text else "unknown", 50 if "50" in text else 0)
    check(f"{text}\r\n".encode(encoding), [expected], encoding=encoding)


@pytest.mark.parametrize("text, counter", [
    (",,", "skipped_bad_fields"), (",", "skipped_bad_fields"), (" , , ", "skipped_bad_fields"),
    ("-", "skipped_bad_plate"), ("·,blue,90", "skipped_bad_plate"), ("_-.", "skipped_bad_plate"),
])
def test_noise_is_not_a_plateless_car(text, counter):
    check(gbk(f"{text}\r\n"), [], **{counter: 1})


def test_not_a_plate_shape():
    check(gbk("HELLO,blue,90\r\n粤12345,blue,90\r\n粤B123,blue,90\r\n"), [], skipped_bad_plate=3)


# -- framing noise --------------------------------------------------------------------------------------
def test_nul_padding_and_bom_are_ignored():
    check(b"\x00\x00" + gbk("粤B12345,blue,96") + b"\x00\r\n", [PlateLine("粤B12345", "blue", 96)])
    check(b"\xef\xbb\xbf" + utf8("粤B12345,blue,96\r\n"), [PlateLine("粤B12345", "blue", 96)],
          encoding="utf-8")


def test_invalid_gbk_sequences_skip_only_their_line():
    data = (b"\x81\x20\x30,blue,9\r\n"  # lead byte with an illegal trail byte
            + gbk("粤B12345,blue,96") + b"\x81\r\n"  # lead byte cut off by the terminator
            + b"\xfe\xfe,blue,1\r\n"  # unassigned code point
            + gbk("粤B67890,yellow,77\r\n"))
    check(data, [PlateLine("粤B67890", "yellow", 77)], skipped_bad_bytes=3)


def test_wrong_encoding_is_bad_bytes_both_ways():
    check(utf8("粤B12345,blue,96\r\n"), [], encoding="gbk", skipped_bad_bytes=1)
    check(gbk("粤B12345,blue,96\r\n"), [], encoding="utf-8", skipped_bad_bytes=1)


def test_noise_bytes_between_lines():
    data = gbk("粤B12345,blue,96\r\n") + b"\x07\x1b[0m\xff\r\n" + gbk("粤B67890,green,91\r\n")
    check(data, [PlateLine("粤B12345", "blue", 96), PlateLine("粤B67890", "green", 91)],
          skipped_bad_bytes=1)


def test_a_lost_terminator_costs_only_the_line_that_lost_it():
    data = gbk("粤B12345,blue,96") + gbk("粤B67890,blue,90\r\n") + gbk("粤C11111,blue,80\r\n")
    check(data, [PlateLine("粤B67890", "blue", 90), PlateLine("粤C11111", "blue", 80)], resynced=1)


def test_a_line_of_max_length_is_kept_one_byte_more_is_overlong_and_its_end_still_read():
    body = gbk("粤B12345,blue,96")
    fits = body + b" " * (MAX_LINE - 1 - len(body)) + b"\r"  # MAX_LINE bytes before the \n
    check(fits + b"\n", [PlateLine("粤B12345", "blue", 96)])
    check(b" " + fits + b"\n", [PlateLine("粤B12345", "blue", 96)], skipped_overlong=1, resynced=1)
    check(b"x" + fits + b"\n", [PlateLine("粤B12345", "blue", 96)], skipped_overlong=1, resynced=1)


def test_overlong_noise_is_counted_once_and_never_swallows_the_next_line():
    noise = bytes(range(0x20, 0x7f)) * 10  # ~950 bytes, no line end
    data = noise + b"\r\n" + gbk("粤B12345,blue,96\r\n") + noise * 2 + gbk("粤B67890,blue,90\r\n")
    check(data, [PlateLine("粤B12345", "blue", 96), PlateLine("粤B67890", "blue", 90)], skipped_overlong=2,
          resynced=1)


@pytest.mark.parametrize("noise", [b"\xfe", b"\xff", b"\x81", b"\x00\xfe", b"\r", b"\r\xfe", b"AB", b"\xd4",
                                   b"\xe7\xb2", "京A1".encode("gbk"), b",", b"12,blue,9"])
@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_a_stray_byte_before_a_line_costs_nothing_but_itself(noise, encoding):
    """The issue's case: one 0xFE before a plate line made that line be discarded."""
    line = PlateLine("粤B12345", "blue", 96)
    for dec_input in ([noise + "粤B12345,blue,96\r\n".encode(encoding)],
                      [noise, "粤B12345,blue,96\r\n".encode(encoding)]):
        out, stats = decode(dec_input, encoding=encoding)
        assert out == [line]
        assert stats.resynced <= 1 and stats.skipped == 0
        assert stats.skipped_bytes <= len(noise)


def test_resync_is_counted_and_the_bytes_dropped_accounted():
    dec = PlateLineDecoder()
    assert dec.feed(b"\xfe" + gbk("粤B12345,blue,96\r\n")) == [PlateLine("粤B12345", "blue", 96)]
    assert (dec.stats.lines, dec.stats.resynced, dec.stats.skipped_bytes, dec.stats.bytes_in) == (1, 1, 1, 19)
    assert dec.feed(b"z" * 300) == [] and dec.pending == MAX_LINE
    assert (dec.stats.skipped_overlong, dec.stats.skipped_bytes) == (1, 1 + 300 - MAX_LINE)
    assert dec.feed(gbk("粤B67890,blue,90\r\n")) == [PlateLine("粤B67890", "blue", 90)]
    assert dec.pending == 0
    good = len(gbk("粤B12345,blue,96\r\n")) + len(gbk("粤B67890,blue,90\r\n"))
    assert dec.stats.bytes_in == dec.stats.skipped_bytes + good  # every byte: in a line read, or dropped
    assert dec.stats.skipped_bytes == 1 + 300  # the stray byte and all of the noise
    dec.feed(b"\r\n \r\n\n")  # blank keep-alive lines are not garbage
    assert dec.stats.skipped_bytes == 1 + 300 and dec.stats.skipped == 1
    dec.feed(b"\xff\r\n")  # a skipped line, terminator and all
    assert dec.stats.skipped_bytes == 1 + 300 + 3


def test_a_plate_shaped_line_with_no_province_is_passed_on_as_read_for_the_booth():
    big5 = "粵B55502,blue,96\r\n".encode("big5")  # a Big5 camera on a line configured as GBK reads 竑B55502
    out, stats = decode([big5])
    assert out == [PlateLine("竑B55502", "blue", 96)]
    assert (stats.lines, stats.unreadable, stats.skipped) == (1, 1, 0)


def test_special_prefixes_are_plates_of_the_line_too():
    text = gbk("使014578,black,90\r\nWJ粤12345,white,90\r\n") + b"VA12345,white,90\r\n"
    out, stats = decode([text])
    assert [ln.plate for ln in out] == ["使014578", "WJ粤12345"]  # VA: no plate shape unless the site names it
    assert stats.skipped_bad_plate == 1
    out, stats = decode([b"\xfe" + text], special_prefixes=("WJ", "使", "VA"))
    assert [ln.plate for ln in out] == ["使014578", "WJ粤12345", "VA12345"] and stats.resynced == 1


def test_overlong_without_any_terminator_yet():
    check(b"x" * (MAX_LINE * 3), [], around=False, skipped_overlong=1)


def test_partial_line_waits_for_its_terminator():
    dec = PlateLineDecoder()
    data = gbk("粤B12345,blue,96")
    for i in range(len(data)):
        assert dec.feed(data[i:i + 1]) == []
    assert dec.feed(b"\r") == []
    assert dec.feed(b"\n") == [PlateLine("粤B12345", "blue", 96)]


# -- delimiters -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("delimiter", [",", "|", ";", "\t", "##", " "])
@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_custom_delimiters(delimiter, encoding):
    data = encode_plate_line("粤B12345", "黄", 61, encoding=encoding, delimiter=delimiter)
    check(data, [PlateLine("粤B12345", "yellow", 61)], encoding=encoding, delimiter=delimiter)


def test_a_line_with_another_delimiter_is_not_a_plate():
    check(gbk("粤B12345,blue,96\r\n"), [], delimiter="|", skipped_bad_plate=1)


# -- encoder and stats ----------------------------------------------------------------------------------
def test_encode_plate_line():
    assert encode_plate_line("粤B12345") == "粤B12345,blue,95\r\n".encode("gbk")
    assert encode_plate_line("粤B12345", "green", 7, encoding="utf-8", delimiter="|") == \
        "粤B12345|green|7\r\n".encode("utf-8")


def test_skipped_is_the_sum_of_the_reasons():
    stats = DecodeStats(lines=9, skipped_bad_bytes=1, skipped_bad_fields=2, skipped_bad_plate=3,
                        skipped_overlong=4)
    assert stats.skipped == 10


def test_stats_accumulate_across_feeds_and_can_be_shared():
    shared = DecodeStats()
    first = PlateLineDecoder(stats=shared)
    first.feed(gbk("粤B12345,blue,96\r\n") + b"\xff\r\n")
    second = PlateLineDecoder(stats=shared)  # e.g. a new decoder after a reconnect keeps the counters
    second.feed(gbk("粤B12345,purple,96\r\n"))
    assert line_counts(shared) == line_counts(DecodeStats(lines=1, skipped_bad_bytes=1, skipped_bad_fields=1))
    assert shared.bytes_in == len(gbk("粤B12345,blue,96\r\n")) + 3 + len(gbk("粤B12345,purple,96\r\n"))


# -- property: junk never breaks the stream ------------------------------------------------------------
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I / O: they are rewritten as 1 / 0 in the tail
COLOUR_TEXT = {"blue": "blue", "蓝": "blue", "2": "yellow", "绿色": "green", "黄绿": "yellow-green", "": "unknown"}

ALNUM = LETTERS + "0123456789"
# readable plates of every kind (core.plates.classify_plate): civil, new energy (D/F third or last), a suffix,
# the default special prefixes, and the plate-less word
plates = st.one_of(
    st.builds(lambda p, c, t: p + c + t, st.sampled_from(PROVINCES), st.sampled_from(LETTERS),
              st.text(alphabet=ALNUM, min_size=5, max_size=5)),
    st.builds(lambda p, c, f, t: p + c + f + t, st.sampled_from(PROVINCES), st.sampled_from(LETTERS),
              st.sampled_from("DF"), st.text(alphabet=ALNUM, min_size=5, max_size=5)),
    st.builds(lambda p, c, t, f: p + c + t + f, st.sampled_from(PROVINCES), st.sampled_from(LETTERS),
              st.text(alphabet=ALNUM, min_size=5, max_size=5), st.sampled_from("DF")),
    st.builds(lambda p, c, t, x: p + c + t + x, st.sampled_from(PROVINCES), st.sampled_from(LETTERS),
              st.text(alphabet=ALNUM, min_size=4, max_size=4), st.sampled_from("警学挂港澳领试超")),
    st.builds(lambda p, t: "WJ" + p + t, st.sampled_from(PROVINCES), st.text(alphabet="0123456789", min_size=5,
                                                                             max_size=5)),
    st.builds(lambda t: "使" + t, st.text(alphabet="0123456789", min_size=6, max_size=6)),
    st.just("无牌车"),
)
valid_lines = st.tuples(plates, st.sampled_from(sorted(COLOUR_TEXT)), st.integers(0, 100),
                        st.sampled_from([b"\r\n", b"\n"]))
junk_bytes = st.binary(max_size=3 * MAX_LINE).map(lambda b: b.replace(b"\n", b""))
terminators = st.sampled_from([b"", b"\n", b"\r\n"])


def reading(plate: str, colour: str, conf: int) -> PlateLine:
    return PlateLine("" if plate == "无牌车" else plate, COLOUR_TEXT[colour], conf)


def build_stream(segments, encoding: str, delimiter: str):
    """Join the segments. Return the bytes, the lines that must come out (every valid line: junk glued in front
    of one costs only the junk), each line of the stream as (bytes before its \\n, junk in it, ends with a valid
    line) and the length of the unterminated tail."""
    stream, expected, lines = b"", [], []
    size, junked = 0, False  # the line being built
    for seg in segments:
        if seg[0] == "valid":
            _, (plate, colour, conf, term) = seg
            body = f"{plate}{delimiter}{colour}{delimiter}{conf}".encode(encoding) + term
            stream += body
            expected.append(reading(plate, colour, conf))
            lines.append((size + len(body) - 1, junked, True))
            size, junked = 0, False
        else:
            _, junk, term = seg
            stream += junk + term
            size, junked = size + len(junk), junked or junk != b""
            if term:
                lines.append((size + len(term) - 1, junked, False))
                size, junked = 0, False
    return stream, expected, lines, size


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


codec = st.tuples(st.sampled_from(["gbk", "utf-8"]), st.sampled_from([",", "|", ";", "\t"]))


@settings(max_examples=300, deadline=None)
@given(codec=codec,
       segments=st.lists(st.one_of(
           st.tuples(st.just("valid"), valid_lines),
           st.tuples(st.just("junk"), junk_bytes.map(lambda b: b"\xff" + b), terminators),  # undecodable
       ), max_size=12),
       cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_property_undecodable_junk_costs_exactly_its_own_bytes(codec, segments, cuts):
    encoding, delimiter = codec
    stream, expected, lines, tail = build_stream(segments, encoding, delimiter)
    want = DecodeStats(
        lines=len(expected),
        resynced=sum(1 for _, junk, valid in lines if junk and valid),
        skipped_bad_bytes=sum(1 for n, junk, valid in lines if junk and not valid and n <= MAX_LINE),
        skipped_overlong=sum(1 for n, junk, _ in lines if junk and n > MAX_LINE) + (tail > MAX_LINE),
    )
    for chunks in ([stream], chunked(stream, cuts)):
        out, stats = decode(chunks, encoding=encoding, delimiter=delimiter)
        assert out == expected
        assert line_counts(stats) == line_counts(want)


@settings(max_examples=300, deadline=None)
@given(codec=codec,
       segments=st.lists(st.one_of(
           st.tuples(st.just("valid"), valid_lines),
           st.tuples(st.just("junk"), junk_bytes, terminators),  # anything at all but a line feed
       ), max_size=12),
       cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_property_arbitrary_junk_never_raises_and_never_hides_a_line(codec, segments, cuts):
    encoding, delimiter = codec
    stream, expected, _, _ = build_stream(segments, encoding, delimiter)
    whole, whole_stats = decode([stream], encoding=encoding, delimiter=delimiter)
    split, split_stats = decode(chunked(stream, cuts), encoding=encoding, delimiter=delimiter)
    assert (split, split_stats) == (whole, whole_stats)  # how the bytes arrive never matters
    it = iter(whole)
    assert all(line in it for line in expected)  # every valid line comes out, in order
    for line in whole:  # whatever else junk produced is still a well-formed reading
        assert is_valid_plate(line.plate) and line.color in COLORS and 0 <= line.confidence <= 100
    assert whole_stats.lines == len(whole)
    ends = stream.count(b"\n") + 1
    assert whole_stats.lines + whole_stats.skipped - whole_stats.skipped_overlong <= ends
    assert whole_stats.skipped_overlong <= ends


# Noise as a serial line makes it: any bytes, CR / LF fragments, 0xFE and other lone lead bytes, runs of more
# than MAX_LINE bytes without a line end.
noise = st.one_of(
    st.binary(max_size=2 * MAX_LINE),
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"\xfe", b"\xff", b"\x81", b"\x00", b",", b"|", b"\t", b" "])
             | st.binary(max_size=6), max_size=40).map(b"".join),
    st.binary(min_size=MAX_LINE + 1, max_size=4 * MAX_LINE).map(lambda b: b.replace(b"\n", b"")),
)


@settings(max_examples=400, deadline=None)
@given(codec=codec, noise=noise, line=valid_lines, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_property_noise_before_a_plate_line_never_loses_that_line(codec, noise, line, cuts):
    encoding, delimiter = codec
    plate, colour, conf, term = line
    data = noise + f"{plate}{delimiter}{colour}{delimiter}{conf}".encode(encoding) + term
    seen = []
    for chunks in ([data], [data[i:i + 1] for i in range(len(data))], chunked(data, cuts)):
        out, stats = decode(chunks, encoding=encoding, delimiter=delimiter)
        assert out and out[-1] == reading(plate, colour, conf)
        seen.append((out, asdict(stats)))
    assert seen[0] == seen[1] == seen[2]  # whole, byte by byte, in random chunks: the same lines and counts
