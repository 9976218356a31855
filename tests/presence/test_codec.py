"""The awareness update codec (Seam B): y-protocols' bytes, strict on bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpstore import ProtocolError
from mpstore._presence import (
    client_id_for,
    decode_awareness_message,
    decode_awareness_update,
    encode_awareness_message,
    encode_awareness_update,
    encode_state,
    parse_state,
)


def test_known_bytes() -> None:
    # Written by hand from awareness.js: count, then client id, clock, JSON text (var-strings).
    data = encode_awareness_update([(1, 2, '{"a":1}'), (300, 0, None)])
    assert data == bytes([2, 1, 2, 7]) + b'{"a":1}' + bytes([0xAC, 0x02, 0, 4]) + b"null"
    assert decode_awareness_update(data) == [(1, 2, '{"a":1}'), (300, 0, None)]


def test_message_wrapper() -> None:
    update = encode_awareness_update([(7, 1, "{}")])
    message = encode_awareness_message(update)
    assert message[0] == 1 and message[1] == len(update)
    assert decode_awareness_message(message) == update
    with pytest.raises(ProtocolError):
        decode_awareness_message(bytes([0, 1, 0]))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes([1]),
        bytes([1, 1, 1, 5]) + b"nul",
        bytes([1, 1, 1, 2]) + b"\xff\xfe",
        bytes([0, 0]),
        bytes([200, 1]),
        bytes([1]) + b"\xff" * 12,
        bytes([1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 2]) + b"{}",
    ],
)
def test_malformed_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_awareness_update(data)


def test_not_bytes() -> None:
    with pytest.raises(ProtocolError):
        decode_awareness_update("x")  # type: ignore[arg-type]


def test_ranges() -> None:
    top = (1 << 53) - 1
    assert decode_awareness_update(encode_awareness_update([(top, top, "1")])) == [(top, top, "1")]
    with pytest.raises(ValueError):
        encode_awareness_update([(1 << 53, 0, "1")])


@given(
    st.lists(
        st.tuples(
            st.integers(0, (1 << 53) - 1),
            st.integers(0, (1 << 53) - 1),
            st.one_of(st.none(), st.text(max_size=50)),
        ),
        max_size=10,
    )
)
def test_round_trip(entries: list[tuple[int, int, str | None]]) -> None:
    entries = [(c, k, None if t is not None and t.strip(" \t\n\r") == "null" else t) for c, k, t in entries]
    try:
        data = encode_awareness_update(entries)
    except UnicodeEncodeError:
        return  # lone surrogates cannot be UTF-8
    assert decode_awareness_update(data) == entries


@given(st.binary(max_size=64))
def test_garbage_never_escapes(data: bytes) -> None:
    try:
        decode_awareness_update(data)
    except ProtocolError:
        pass


def test_states() -> None:
    assert encode_state(None) is None
    assert encode_state({"name": "Ann", "x": [1, 2.5]}) == '{"name":"Ann","x":[1,2.5]}'
    assert parse_state('{"é":1}') == {"é": 1}
    assert encode_state({"s": "\ud800"}) == '{"s":"\\ud800"}'
    with pytest.raises(TypeError):
        encode_state({"f": float("nan")})
    with pytest.raises(TypeError):
        encode_state({1, 2})
    with pytest.raises(ValueError):
        encode_state({"big": "x" * 9000})
    with pytest.raises(ValueError):
        parse_state("NaN")
    with pytest.raises(ValueError):
        parse_state("{")
    with pytest.raises(ValueError):
        parse_state("[" * 4000 + "]" * 4000)


def test_client_id_is_32_bits_and_stable() -> None:
    peer = "0123456789abcdef0123456789abcdef"
    assert client_id_for(peer) == client_id_for(peer) < 1 << 32
    assert client_id_for(peer) != client_id_for("f" * 32)
