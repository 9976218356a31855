"""Framing: split and reassemble, limits, hostile frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpstore import ProtocolError
from mpstore._wire import FLAG_MORE, FLAG_UNRELIABLE, Kind, Reassembler, split_message


def reassemble(
    frames: list[bytes], max_frame: int = 64, max_message: int = 10_000
) -> list[tuple[int, bytes, bool]]:
    r = Reassembler(max_frame, max_message)
    out = []
    for frame in frames:
        message = r.feed(frame)
        if message is not None:
            out.append((message.kind, message.payload, message.reliable))
    return out


@given(st.binary(max_size=2000), st.integers(min_value=3, max_value=300), st.sampled_from(list(Kind)))
def test_split_then_reassemble_round_trips(payload: bytes, max_frame: int, kind: Kind) -> None:
    frames = split_message(kind, payload, max_frame, reliable=True)
    assert all(len(f) <= max_frame for f in frames)
    assert reassemble(frames, max_frame) == [(kind, payload, True)]


def test_every_fragment_but_the_last_says_more() -> None:
    frames = split_message(Kind.APP, b"x" * 25, 12, reliable=True)
    assert [f[1] for f in frames] == [FLAG_MORE, FLAG_MORE, 0]
    assert len(frames) == 3


def test_unreliable_frames_are_whole_and_interleave_with_fragments() -> None:
    big = split_message(Kind.APP, b"a" * 30, 12, reliable=True)
    small = split_message(Kind.APP, b"u", 12, reliable=False)
    assert small[0][1] == FLAG_UNRELIABLE
    out = reassemble([big[0], small[0], *big[1:]], 12)
    assert out == [(Kind.APP, b"u", False), (Kind.APP, b"a" * 30, True)]


def test_unreliable_message_too_big_for_a_frame_is_refused_by_split() -> None:
    with pytest.raises(ValueError):
        split_message(Kind.APP, b"x" * 20, 12, reliable=False)


@pytest.mark.parametrize(
    "frame, match",
    [
        (b"", "shorter than its header"),
        (b"\x10", "shorter than its header"),
        (b"\x10\x80abc", "unknown frame flags"),
        (b"\x10\x03abc", "cannot be fragmented"),
        (b"\x10\x00" + b"x" * 100, "over the limit"),
    ],
)
def test_bad_frames_raise_protocol_error(frame: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        Reassembler(64, 1000).feed(frame)


def test_message_size_limit_is_enforced_while_reassembling() -> None:
    r = Reassembler(64, 100)
    frames = split_message(Kind.APP, b"x" * 200, 64, reliable=True)
    with pytest.raises(ProtocolError, match="over the limit of 100"):
        for frame in frames:
            r.feed(frame)


def test_kind_change_inside_a_fragmented_message_is_a_protocol_error() -> None:
    r = Reassembler(64, 1000)
    r.feed(bytes((Kind.APP, FLAG_MORE)) + b"abc")
    with pytest.raises(ProtocolError, match="inside a fragmented message"):
        r.feed(bytes((Kind.STORE, 0)) + b"def")


@given(st.lists(st.binary(max_size=80), max_size=30))
def test_random_frames_never_raise_anything_but_protocol_error(frames: list[bytes]) -> None:
    r = Reassembler(64, 500)
    for frame in frames:
        try:
            r.feed(frame)
        except ProtocolError:
            r = Reassembler(64, 500)
