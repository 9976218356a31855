"""The exact-type value codec: round trips, refusals, and hostile stored strings."""

from __future__ import annotations

import contextlib
import enum
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpstore._values import MISSING, ValueDecodeError, check_key, decode_value, encode_value

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equal with exact types at every level (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=400)
@given(values)
def test_round_trip_keeps_exact_types(value: Any) -> None:
    text = encode_value(value)
    text.encode("utf-8")  # always carriable by a Yjs string
    assert same(decode_value(text), value)


def repr_short(value: Any) -> str:
    return type(value).__name__


@pytest.mark.parametrize(
    "value",
    [
        1,
        1.0,
        -0.0,
        True,
        0,
        2**53 - 1,
        2**53,
        -(2**53),
        2**63 - 1,
        2**64,
        -(2**100),
        2**20000,
        math.inf,
        -math.inf,
        b"",
        b"\x00\xff",
        "",
        "\ud800x",
        "$b",
        {"$b": "x"},
        {"$$b": 1, "$": 2, "a$": 3},
        [[[]]],
        {"k": [1, 1.0, b"x", None]},
    ],
    ids=repr_short,
)
def test_round_trip_examples(value: Any) -> None:
    assert same(decode_value(encode_value(value)), value)


@given(st.integers(min_value=-(2**54), max_value=2**54) | st.floats() | st.text())
def test_the_scalar_shortcuts_write_what_the_full_encoder_writes(value: Any) -> None:
    """encode_value's fast paths (ASCII str, safe int, finite float) against the general path."""
    from mpstore._values import _ASCII_ENCODER, _ENCODER, _to_json

    obj = _to_json(value, [])
    try:
        expected = _ENCODER.encode(obj)
        expected.encode("utf-8")
    except UnicodeEncodeError:
        expected = _ASCII_ENCODER.encode(obj)
    assert encode_value(value) == expected


@given(
    st.text(max_size=20)
    | st.text(max_size=20).map(json.dumps)
    | st.integers(min_value=-(2**60), max_value=2**60).map(str)
    | st.from_regex(r"-?0*[0-9]{1,18}", fullmatch=True)
)
def test_the_decoding_shortcuts_return_what_the_decoder_returns(text: str) -> None:
    """decode_value's fast paths (plain string, short int) against the JSON decoder itself."""
    from mpstore._values import _DECODER

    try:
        expected: Any = _DECODER.decode(text)
    except (ValueError, RecursionError, TypeError):
        with pytest.raises(ValueDecodeError):
            decode_value(text)
        return
    got = decode_value(text)
    assert same(got, expected), (text, got, expected)


def test_nan_round_trips() -> None:
    assert math.isnan(decode_value(encode_value(math.nan)))  # type: ignore[arg-type]


def test_encoding_is_plain_json_a_browser_can_read() -> None:
    assert encode_value(3) == "3"
    assert encode_value(3.0) == "3.0"
    assert encode_value("é") == '"é"'
    assert json.loads(encode_value(b"ab")) == {"$b": "YWI="}
    assert json.loads(encode_value(2**64)) == {"$i": "10000000000000000"}
    assert json.loads(encode_value(-(2**53))) == {"$i": "-20000000000000"}
    assert json.loads(encode_value({"$x": 1})) == {"$$x": 1}
    assert json.loads(encode_value(math.inf)) == {"$f": "Infinity"}


class Color(enum.IntEnum):
    RED = 1


class MyStr(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        bytearray(b"x"),
        {1, 2},
        frozenset(),
        Color.RED,
        MyStr("x"),
        {1: "a"},
        {"a": (1,)},
        [object()],
        memoryview(b"x"),
        1j,
        {"a": {2: 3}},
    ],
)
def test_refuses_other_types(value: Any) -> None:
    with pytest.raises(TypeError):
        encode_value(value)


def test_refuses_cycles() -> None:
    a: list[Any] = [1]
    a.append(a)
    with pytest.raises(TypeError, match="cycle"):
        encode_value(a)
    d: dict[str, Any] = {}
    d["self"] = [d]
    with pytest.raises(TypeError, match="cycle"):
        encode_value(d)


def test_shared_but_acyclic_references_are_fine() -> None:
    inner = [1]
    assert decode_value(encode_value([inner, inner])) == [[1], [1]]


def test_keys_must_be_exact_str() -> None:
    assert check_key("ok") == "ok"
    for bad in (1, b"x", MyStr("x"), None, "\udc00"):
        with pytest.raises(TypeError):
            check_key(bad)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "NaN",
        "Infinity",
        '{"$b": "***"}',
        '{"$b": 1}',
        '{"$i": "xyz"}',
        '{"$i": ""}',
        '{"$f": "nan"}',
        '{"$q": 1}',
        '{"$": 1}',
        '[1, {"$zz": 2}]',
        "[" * 100000 + "]" * 100000,
        "1" * 10000,
        '{"$b": "YQ==", "x": 1}',
    ],
)
def test_hostile_strings_are_refused_cleanly(text: str) -> None:
    with pytest.raises(ValueDecodeError):
        decode_value(text)


@given(st.text(max_size=50))
def test_decoding_any_text_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(ValueDecodeError):
        decode_value(text)


def test_missing_sentinel() -> None:
    assert repr(MISSING) == "mpstore.MISSING"
    assert not MISSING
    assert type(MISSING)() is MISSING
