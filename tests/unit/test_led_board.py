"""LED text + voice board codec, byte for byte. Expected frames are written out by hand from the frame layout
(DA VR PN PN CMD DL DATA CRC-lo CRC-hi, GBK text) — never produced by the encoder under test — and every decode
is replayed whole, one byte at a time, split at every point and framed by garbage."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanectl.protocols.led_board import (
    COMMANDS,
    MAX_DATA,
    BoardOutput,
    Colour,
    Command,
    Frame,
    FrameDecoder,
    FrameStats,
    LedBoardError,
    ShownLine,
    crc16_modbus,
    describe,
    encode_frame,
    set_clock,
    show_line,
    show_lines_and_speak,
    show_qr,
    speak,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# GBK: 欢 BB B6  迎 D3 AD  光 B9 E2  临 C1 D9  粤 D4 C1  一 D2 BB  路 C2 B7  顺 CB B3  风 B7 E7
# show_line(0, "欢迎光临 粤B12345") — green (2) on line 0, DL = 2 + 17 = 0x13
LINE = h("00 64 FF FF 62 13  00 02  BB B6 D3 AD B9 E2 C1 D9 20 D4 C1 42 31 32 33 34 35  A8 42")
# speak("一路顺风"), option 01 (speak now), DL = 1 + 8
SPEAK = h("00 64 FF FF 30 09  01  D2 BB C2 B7 CB B3 B7 E7  9F 40")
# show_lines_and_speak([(0, "粤B12345"), (1, "一路顺风", RED)], "一路顺风"): 2 lines, then option + length + voice
MULTI = h("00 64 FF FF 6E 21  02"
          "  00 02 08 D4 C1 42 31 32 33 34 35"
          "  01 01 08 D2 BB C2 B7 CB B3 B7 E7"
          "  01 08 D2 BB C2 B7 CB B3 B7 E7"
          "  33 59")
# set_clock(2024-05-17 08:30:05), a Friday: 24 5 17 8 30 5 weekday 5
CLOCK = h("00 64 FF FF 05 07  18 05 11 08 1E 05 05  CF 94")
# show_qr("https://p.example/l/1") to the board at address 3
QR = h("03 64 FF FF E1 15  68 74 74 70 73 3A 2F 2F 70 2E 65 78 61 6D 70 6C 65 2F 6C 2F 31  11 72")
# show_line(1, "", RED) at address 1: clears line 1
CLEAR = h("01 64 FF FF 62 02  01 01  DA 32")

HAND_BUILT = {
    "line": (lambda: show_line(0, "欢迎光临 粤B12345"), LINE),
    "speak": (lambda: speak("一路顺风"), SPEAK),
    "multi": (lambda: show_lines_and_speak([(0, "粤B12345"), (1, "一路顺风", Colour.RED)], "一路顺风"), MULTI),
    "clock": (lambda: set_clock(datetime(2024, 5, 17, 8, 30, 5)), CLOCK),
    "qr": (lambda: show_qr("https://p.example/l/1", address=3), QR),
    "clear": (lambda: show_line(1, "", Colour.RED, address=1), CLEAR),
}

EXPECTED_OUTPUT = {
    "line": BoardOutput(0, 0x62, lines=(ShownLine(0, "欢迎光临 粤B12345", 2),)),
    "speak": BoardOutput(0, 0x30, speech="一路顺风", speech_option=1),
    "multi": BoardOutput(0, 0x6E, lines=(ShownLine(0, "粤B12345", 2), ShownLine(1, "一路顺风", 1)),
                         speech="一路顺风", speech_option=1),
    "clock": BoardOutput(0, 0x05, clock=datetime(2024, 5, 17, 8, 30, 5)),
    "qr": BoardOutput(3, 0xE1, qr="https://p.example/l/1"),
    "clear": BoardOutput(1, 0x62, lines=(ShownLine(1, "", 1),)),
}

ALL_FRAMES = b"".join(frame for _, frame in HAND_BUILT.values())


# -- CRC ------------------------------------------------------------------------------------------------
def test_crc16_modbus_check_value():
    assert crc16_modbus(b"123456789") == 0x4B37  # the catalogue check value; on the wire: 37 4B
    assert crc16_modbus(b"") == 0xFFFF


@pytest.mark.parametrize("frame", [h("01 03 00 00 00 01 84 0A"), h("01 05 00 00 FF 00 8C 3A")])
def test_crc16_matches_modbus_rtu_frames_low_byte_first(frame):
    crc = crc16_modbus(frame[:-2])
    assert bytes([crc & 0xFF, crc >> 8]) == frame[-2:]
    assert crc16_modbus(frame) == 0  # a frame with its CRC appended checks to zero


# -- encoders against hand-built frames ------------------------------------------------------------------
@pytest.mark.parametrize("name", HAND_BUILT)
def test_encoder_matches_hand_built_frame(name):
    build, expected = HAND_BUILT[name]
    assert build().hex(" ") == expected.hex(" ")


def test_encode_frame_generic():
    assert encode_frame(0x62, h("00 02") + "欢迎光临 粤B12345".encode("gbk")) == LINE
    assert encode_frame(0x62, h("01 01"), address=1) == CLEAR


def test_plain_strings_fill_lines_in_order_and_silence_is_an_empty_voice():
    frame = show_lines_and_speak(["粤B12345", "一路顺风"], None, colour=Colour.YELLOW)
    assert frame[:7] == h("00 64 FF FF 6E 19 02")
    assert frame[7:10] == h("00 03 08") and frame[18:21] == h("01 03 08")
    assert frame[-4:-2] == h("01 00")  # option, voice length 0
    out = describe(FrameDecoder().feed(frame)[0])
    assert out.lines == (ShownLine(0, "粤B12345", 3), ShownLine(1, "一路顺风", 3))
    assert out.speech is None and out.speech_option is None


def test_speak_option_is_carried():
    assert speak("请缴费7元", option=0x00)[6] == 0x00
    assert describe(FrameDecoder().feed(speak("请缴费7元", option=0x00))[0]).speech_option == 0


# -- encoder errors --------------------------------------------------------------------------------------
def test_text_that_fills_dl_exactly_is_framed_one_byte_more_is_refused():
    assert len(show_line(0, "x" * (MAX_DATA - 2))) == 8 + MAX_DATA
    with pytest.raises(LedBoardError, match="text too long.*256.*255"):
        show_line(0, "x" * (MAX_DATA - 1))
    with pytest.raises(LedBoardError, match="text too long"):
        show_line(0, "欢" * 127)  # 254 bytes of GBK + 2
    with pytest.raises(LedBoardError, match="text too long"):
        speak("x" * MAX_DATA)
    with pytest.raises(LedBoardError, match="text too long"):
        show_qr("https://p.example/" + "a" * 250)
    with pytest.raises(LedBoardError, match="text too long"):
        show_lines_and_speak(["一路顺风" * 10] * 5, "一路顺风" * 10)


@pytest.mark.parametrize("call", [
    lambda: show_line(256, "x"), lambda: show_line(-1, "x"), lambda: show_line(0, "x", colour=300),
    lambda: show_line(0, "x", address=256), lambda: show_line(True, "x"), lambda: speak("x", option=-1),
    lambda: show_lines_and_speak([(0, "x", 999)]), lambda: show_lines_and_speak([(0,)]),
    lambda: show_lines_and_speak([["a", "b"]]), lambda: show_lines_and_speak("一路顺风"),
    lambda: show_lines_and_speak([(0, b"bytes")]), lambda: show_lines_and_speak(["x" * 256]),
    lambda: set_clock(datetime(1999, 12, 31)), lambda: set_clock(datetime(2256, 1, 1)),
    lambda: show_qr(""), lambda: encode_frame(0x100, b""),
])
def test_bad_arguments_are_led_board_errors(call):
    with pytest.raises(LedBoardError):
        call()


@pytest.mark.parametrize("text", ["粤B12345 🚗", "\udc80", "한글"])
def test_text_gbk_cannot_carry_is_refused_clearly(text):
    with pytest.raises(LedBoardError, match="GBK"):
        show_line(0, text)


# -- decoder: every way the bytes can arrive -------------------------------------------------------------
GARBAGE_BEFORE = h("55 AA 64 FF 00 64") + b"noise"  # 11 bytes, no sync pattern (64 FF FF) anywhere
GARBAGE_AFTER = h("07 08 00 64")  # "00 64" may still start a frame: it waits in the buffer, 07 08 are skipped


def decode(chunks) -> tuple[list[Frame], FrameStats, int]:
    dec = FrameDecoder()
    out: list[Frame] = []
    for chunk in chunks:
        out += dec.feed(chunk)
    return out, dec.stats, dec.pending


def replays(data: bytes):
    yield "whole", [data]
    yield "bytewise", [data[i:i + 1] for i in range(len(data))]
    yield "empty-chunks", [b""] + [data[i:i + 1] for i in range(len(data))] + [b""]
    for cut in range(1, len(data)):
        yield f"split@{cut}", [data[:cut], data[cut:]]


def check(data: bytes, expected: list[Frame], *, skipped: int = 0, bad_crc: int = 0, pending: int = 0,
          around: bool = True) -> None:
    framings = [(data, skipped, pending)]
    if around:
        framings.append((GARBAGE_BEFORE + data + GARBAGE_AFTER, skipped + 11 + 2, 2))
    for stream, want_skipped, want_pending in framings:
        want = FrameStats(frames=len(expected), skipped_bytes=want_skipped, bad_crc=bad_crc)
        for how, chunks in replays(stream):
            frames, stats, left = decode(chunks)
            assert frames == expected, (how, stream.hex(" "))
            assert asdict(stats) == asdict(want), (how, stream.hex(" "))
            assert left == want_pending, how


@pytest.mark.parametrize("name", HAND_BUILT)
def test_decode_each_hand_built_frame(name):
    frame = HAND_BUILT[name][1]
    expected = Frame(frame[0], frame[4], frame[6:-2])
    check(frame, [expected])
    assert describe(expected) == EXPECTED_OUTPUT[name]


def test_decode_all_frames_back_to_back():
    frames = [Frame(f[0], f[4], f[6:-2]) for _, f in HAND_BUILT.values()]
    check(ALL_FRAMES, frames)
    assert [describe(f) for f in frames] == list(EXPECTED_OUTPUT.values())


def test_a_frame_completes_on_its_last_byte():
    dec = FrameDecoder()
    for i in range(len(LINE) - 1):
        assert dec.feed(LINE[i:i + 1]) == []
    assert dec.pending == len(LINE) - 1
    assert dec.feed(LINE[-1:]) == [Frame(0, 0x62, LINE[6:-2])]
    assert dec.pending == 0


def test_corrupted_crc_is_skipped_and_counted_the_next_frame_survives():
    bad = LINE[:-1] + bytes([LINE[-1] ^ 0x01])
    check(bad + SPEAK, [Frame(0, 0x30, SPEAK[6:-2])], skipped=len(bad), bad_crc=1)


def test_corrupted_text_byte_fails_the_crc():
    bad = bytearray(MULTI)
    bad[12] ^= 0x40
    check(bytes(bad) + CLOCK, [Frame(0, 0x05, CLOCK[6:-2])], skipped=len(MULTI), bad_crc=1)


def test_a_truncated_frame_costs_only_itself():
    # The cut frame's DL reaches into the next frame: CRC fails, the scan resumes and finds the next frame.
    cut = LINE[:10]
    check(cut + SPEAK + QR, [Frame(0, 0x30, SPEAK[6:-2]), Frame(3, 0xE1, QR[6:-2])], skipped=10, bad_crc=1)


def test_a_lone_sync_pattern_in_garbage_is_a_bad_frame_not_a_lost_one():
    fake = h("09 64 FF FF 01 03 AA BB CC 00 00")  # plausible header, 3 bytes of DATA, wrong CRC
    check(fake + LINE, [Frame(0, 0x62, LINE[6:-2])], skipped=len(fake), bad_crc=1)


def test_other_version_or_packet_number_is_not_a_frame():
    other = h("00 65 FF FF 62 02 00 02") + h("00 00") + h("00 64 00 01 62 02 00 02 00 00")
    check(other + SPEAK, [Frame(0, 0x30, SPEAK[6:-2])], skipped=len(other))


def test_pending_bytes_wait_for_more_and_are_not_counted_yet():
    for tail, pending in [(h("00"), 1), (h("00 64"), 2), (h("00 64 FF"), 3), (h("00 64 FF FF 62"), 5),
                          (LINE[:-1], len(LINE) - 1)]:
        frames, stats, left = decode([tail])
        assert (frames, stats.skipped_bytes, left) == ([], 0, pending), tail.hex(" ")
    frames, stats, left = decode([h("11 22 33 44")])
    assert (stats.skipped_bytes, left) == (3, 1)  # the last byte may still be an address


def test_stats_accumulate_across_feeds():
    dec = FrameDecoder()
    dec.feed(b"xx" + LINE)
    dec.feed(LINE[:-1] + b"\x00" + CLEAR)
    assert asdict(dec.stats) == asdict(FrameStats(frames=2, skipped_bytes=2 + len(LINE), bad_crc=1))


# -- describe ------------------------------------------------------------------------------------------
def test_typical_lane_messages_in_gbk_round_trip():
    messages = ["欢迎光临 粤B12345", "粤B12345 停车3小时 请缴费7元", "一路顺风", "月租车 剩余12天", "黑名单车辆 禁止通行"]
    for i, text in enumerate(messages):
        (frame,) = FrameDecoder().feed(show_line(i % 4, text, Colour.RED))
        assert describe(frame).lines == (ShownLine(i % 4, text, 1),)
        (frame,) = FrameDecoder().feed(speak(text))
        assert describe(frame).speech == text


def test_describe_unknown_command_is_marked_not_raised():
    assert describe(Frame(0, 0x99, b"\x01\x02")) == BoardOutput(0, 0x99, known=False)
    assert set(COMMANDS) == set(Command)


@pytest.mark.parametrize("frame, message", [
    (Frame(0, 0x62, h("00")), "too short"),
    (Frame(0, 0x62, h("00 02 FF FF")), "not GBK"),
    (Frame(0, 0x30, b""), "too short"),
    (Frame(0, 0x30, h("01 81")), "not GBK"),
    (Frame(0, 0x6E, b""), "too short"),
    (Frame(0, 0x6E, h("01 00 02")), "too short"),  # a line header cut short
    (Frame(0, 0x6E, h("01 00 02 05 41 42")), "too short"),  # its text cut short
    (Frame(0, 0x6E, h("00 01")), "too short"),  # voice length missing
    (Frame(0, 0x6E, h("00 01 02 41")), "voice part says 2"),
    (Frame(0, 0x6E, h("00 01 01 41 42")), "voice part says 1"),  # trailing bytes
    (Frame(0, 0x05, h("18 05 11 08 1E 05")), "7 bytes"),
    (Frame(0, 0x05, h("18 02 1E 08 1E 05 05")), "not a clock"),  # 30 February
    (Frame(0, 0x05, h("18 05 11 08 1E 05 01")), "weekday 1"),
    (Frame(0, 0xE1, b""), "without a URL"),
])
def test_describe_refuses_data_that_breaks_the_layout(frame, message):
    with pytest.raises(LedBoardError, match=message):
        describe(frame)


# -- properties ----------------------------------------------------------------------------------------
gbk_text = st.text(alphabet="欢迎光临粤京沪停车小时请缴费元一路顺风月租剩余天黑名单禁止通行 ABCXYZ0123456789:.",
                   max_size=40)
byte = st.integers(0, 255)


@settings(max_examples=300, deadline=None)
@given(line=byte, colour=byte, address=byte, text=gbk_text)
def test_property_show_line_round_trip(line, colour, address, text):
    (frame,) = FrameDecoder().feed(show_line(line, text, colour, address=address))
    assert describe(frame) == BoardOutput(address, 0x62, lines=(ShownLine(line, text, colour),))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.tuples(byte, gbk_text.filter(lambda t: len(t) < 12), byte), max_size=4),
       voice=gbk_text, option=byte)
def test_property_multi_line_round_trip(lines, voice, option):
    (frame,) = FrameDecoder().feed(show_lines_and_speak(lines, voice, option=option))
    out = describe(frame)
    assert out.lines == tuple(ShownLine(i, t, c) for i, t, c in lines)
    assert out.speech == (voice or None)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_property_random_bytes_never_raise_and_split_does_not_matter(data, cuts):
    whole = decode([data])
    points = sorted({c % (len(data) + 1) for c in cuts})
    split = decode([data[a:b] for a, b in zip([0] + points, points + [len(data)])])
    assert whole[0] == split[0] and asdict(whole[1]) == asdict(split[1]) and whole[2] == split[2]
    frames, stats, pending = whole
    assert stats.frames == len(frames)
    assert stats.skipped_bytes + sum(8 + len(f.data) for f in frames) + pending == len(data)
    for f in frames:
        try:
            describe(f)
        except LedBoardError:
            pass


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.one_of(
    st.tuples(st.just("frame"), st.sampled_from(list(HAND_BUILT))),
    st.tuples(st.just("junk"), st.binary(min_size=1, max_size=40).filter(lambda b: b"\x64\xff\xff" not in b)),
), max_size=10))
def test_property_frames_survive_junk_between_them(pieces):
    stream, expected = b"", []
    for kind, value in pieces:
        if kind == "frame":
            frame = HAND_BUILT[value][1]
            stream += frame
            expected.append(Frame(frame[0], frame[4], frame[6:-2]))
        else:
            stream += value
    frames, stats, _ = decode([stream])
    it = iter(frames)
    assert all(f in it for f in expected)  # every real frame comes out, in order
