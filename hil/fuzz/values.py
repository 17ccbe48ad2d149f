"""Hostile JSON: values of the wrong type, huge numbers, money look-alikes, deep nesting, duplicate keys, bad text.

Values are Python objects written by `dumps`, which also writes what json.dumps cannot: `Raw` tokens (a
5000-digit number, NaN, 1e999, 10 000 nested brackets) and `Pairs` (an object with a key twice). Text may hold
lone surrogates; `to_bytes` turns them into invalid UTF-8 on purpose.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st


class Raw(str):
    """JSON text written as is."""


class Pairs(list):  # type: ignore[type-arg]
    """An object written from (key, value) pairs, so a key can appear twice."""


def dumps(value: Any) -> str:
    """Compact JSON (non-ASCII kept, keys in the given order) of a value that may hold Raw and Pairs."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + dumps(v) for k, v in value) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def to_bytes(text: str) -> bytes:
    """UTF-8, lone surrogates kept as the (invalid) bytes they would be."""
    return text.encode("utf-8", "surrogatepass")


# Money and number look-alikes: what a broken or hostile platform might put where an amount goes.
MONEY_TEXTS = ["7.00", "0.01", "100000.00", "100000.01", "-1", "-0.01", "1e3", "1E+3", "NaN", "Infinity",
               "-Infinity", "0x10", "７", "٧", "1,000", " 7 ", "", "7.001", "7.", ".5", "+7", "99999999999999999999",
               "10000001", "10000000", "0", "00000000000000000000000000007", "7元", "null", "true", "1_000"]
NUMBER_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E+400", "-0", "0.001", "7.00", "1e3",
                 "1.5e-7", "100000.01", "10000001", "18446744073709551617", "-9223372036854775809", "7.0E+5"]


def huge_digits() -> st.SearchStrategy[str]:
    """Digit strings past int64, float range (309) and Python's int() digit limit (4300)."""
    return st.one_of(st.sampled_from([16, 19, 20, 309, 4300, 4301, 5000]), st.integers(16, 6000)).map(
        lambda n: "9" * n)


def numbers() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(), st.integers(-10 ** 20, 10 ** 20), st.sampled_from(NUMBER_TOKENS).map(Raw),
                     huge_digits().map(Raw), st.booleans())


def texts() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=24), st.sampled_from(MONEY_TEXTS), huge_digits(),
                     st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1,
                             max_size=4),  # lone surrogates: invalid UTF-8 once written
                     st.tuples(st.sampled_from(["x", "粤", "\x00", "\\", '"', "%"]),
                               st.integers(1000, 200_000)).map(lambda t: t[0] * t[1]))


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), numbers(), texts())


def deep() -> st.SearchStrategy[Raw]:
    """Nesting far past any sane depth (and past Python's recursion limit)."""
    return st.tuples(st.sampled_from(["[", '{"a":']), st.integers(20, 30_000)).map(
        lambda t: Raw(t[0] * t[1] + "1" + ("]" if t[0] == "[" else "}") * t[1]))


def values() -> st.SearchStrategy[Any]:
    """Any hostile JSON value."""
    nested = st.recursive(scalars(), lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.lists(st.tuples(st.sampled_from(["a", "state", "total"]), inner), min_size=2, max_size=4).map(Pairs)),
        max_leaves=12)
    return st.one_of(nested, deep())
