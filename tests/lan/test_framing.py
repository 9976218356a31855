"""Sans-IO framing and handshake frames of the LAN transport."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpstore._errors import ProtocolError
from mpstore.transports._lan._framing import (
    Decision,
    FrameDecoder,
    Preface,
    decode_decision,
    encode_decision,
    encode_frame_header,
)


@given(
    frames=st.lists(st.binary(max_size=300), max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
)
def test_any_chunking_yields_the_same_frames(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame_header(len(f)) + f for f in frames)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    dec = FrameDecoder(max_frame=300)
    out: list[bytes] = []
    prev = 0
    for p in [*points, len(stream)]:
        out += dec.feed(stream[prev:p])
        prev = p
    assert out == frames
    assert dec.buffered == 0


def test_a_frame_over_the_limit_is_refused_before_its_body_arrives() -> None:
    dec = FrameDecoder(max_frame=10)
    assert dec.feed(encode_frame_header(10) + b"0123456789") == [b"0123456789"]
    with pytest.raises(ProtocolError, match="over the limit"):
        dec.feed(encode_frame_header(11))


def test_preface_round_trip() -> None:
    p = Preface("chat", "0123abcd" * 4)
    assert Preface.decode(p.encode()) == p


@given(st.binary(max_size=200))
def test_preface_decoder_only_raises_protocol_error(data: bytes) -> None:
    for candidate in (data, b"MPSTLAN" + data):
        try:
            Preface.decode(candidate)
        except ProtocolError:
            pass


@pytest.mark.parametrize(
    "body",
    [
        b'MPSTLAN{"v":1,"service":"chat","id":"XYZ"}',
        b'MPSTLAN{"v":true,"service":"chat","id":"ab"}',
        b'MPSTLAN{"v":1,"service":"chat"}',
        b"MPSTLAN[1,2]",
        b"MPSTLAN\xff",
        b"MPSTLAN" + b" " * 2000,
    ],
)
def test_malformed_prefaces_are_refused(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        Preface.decode(body)


@given(st.binary(max_size=300))
def test_decision_decoder_only_raises_protocol_error(data: bytes) -> None:
    try:
        d = decode_decision(data)
    except ProtocolError:
        return
    assert d.accept == (data == b"\x01")


def test_decision_round_trip() -> None:
    assert decode_decision(encode_decision(Decision(True))) == Decision(True)
    assert decode_decision(encode_decision(Decision(False, "duplicate"))) == Decision(False, "duplicate")


def test_frames_before_an_oversized_header_in_the_same_bytes_are_returned_first() -> None:
    from mpstore import ProtocolError
    from mpstore.transports._lan._framing import FrameDecoder

    decoder = FrameDecoder(8)
    good = (3).to_bytes(4, "big") + b"abc"
    bad = (9).to_bytes(4, "big")
    assert decoder.feed(good + bad) == [b"abc"]
    with pytest.raises(ProtocolError, match="over the limit"):
        decoder.check()
    with pytest.raises(ProtocolError):
        decoder.feed(b"more")
