"""Booth scanner lines, byte for byte: whole, one byte at a time, split anywhere, garbage around."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lanectl.protocols.scan_codes import MAX_LINE, ScanLineDecoder

CODE = "134567890123456789"  # an 18-digit WeChat payment code


def decode(chunks) -> tuple[list[str], ScanLineDecoder]:
    dec = ScanLineDecoder()
    out: list[str] = []
    for c in chunks:
        out += dec.feed(c)
    return out, dec


@pytest.mark.parametrize("data", [f"{CODE}\r\n".encode(), f"{CODE}\n".encode(), f"{CODE}\r".encode()])
def test_a_code_in_every_split_and_terminator(data):
    for cut in range(len(data) + 1):
        codes, dec = decode([data[:cut], data[cut:]])
        assert codes == [CODE] and dec.stats.codes == 1 and dec.stats.skipped == 0
    assert decode([bytes([b]) for b in data])[0] == [CODE]


def test_garbage_around_codes_is_skipped_and_counted():
    data = b"\xff\xfenoise\r\n" + f"{CODE}\r\n".encode() + b"https://qr.example/x\r\n" + b"12345\r\n" + \
        f"{CODE[::-1]}\n".encode()
    codes, dec = decode([data])
    assert codes == [CODE, CODE[::-1]] and (dec.stats.codes, dec.stats.skipped) == (2, 3)


def test_a_lost_terminator_drops_the_overlong_line_only():
    codes, dec = decode([b"9" * (MAX_LINE + 5), b"77\r\n", f"{CODE}\r\n".encode()])
    assert codes == [CODE] and dec.stats.skipped == 1


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_random_bytes_never_raise_and_yield_only_codes(chunks):
    codes, _ = decode(chunks)
    assert all(c.isdigit() and 10 <= len(c) <= 32 for c in codes)
