"""PageConnection (sans-IO): routing, limits and malformed input, with time passed in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mpstore._syncproto import encode_sync_step1, encode_update
from mpstore.web._protocol import (
    KEEPALIVE,
    AwarenessQuery,
    AwarenessReceived,
    Limits,
    PageConnection,
    SyncReceived,
    Violation,
    awareness_message,
)


def test_routes_sync_awareness_and_query() -> None:
    c = PageConnection(Limits(), 0.0)
    step1 = encode_sync_step1(b"\x00")
    assert c.receive(step1, 0.0) == SyncReceived(step1)
    assert c.receive(encode_update(b"\x00\x00"), 0.0) == SyncReceived(encode_update(b"\x00\x00"))
    assert c.receive(awareness_message(b"\x01\x02"), 0.0) == AwarenessReceived(b"\x01\x02")
    assert c.receive(b"\x03", 0.0) == AwarenessQuery()
    assert c.receive(b"\x02\x00\x00", 0.0) is None  # auth from a page: ignored
    assert c.receive(b"\x07anything", 0.0) is None  # unknown types: ignored, as y-websocket does
    assert not c.closed


def test_keepalive_is_an_empty_awareness_update() -> None:
    c = PageConnection(Limits(), 0.0)
    assert c.receive(KEEPALIVE, 0.0) == AwarenessReceived(b"\x00")


def test_text_frames_end_the_connection() -> None:
    c = PageConnection(Limits(), 0.0)
    event = c.receive("hello", 0.0)
    assert isinstance(event, Violation) and event.code == 1003
    assert c.closed and c.receive(encode_sync_step1(b"\x00"), 0.0) is None


def test_malformed_messages_end_the_connection() -> None:
    too_long = b"\x00\x00" + b"\xff" * 10
    for bad in (b"", b"\x00", b"\x00\x05\x00", b"\x00\x00\x05ab", b"\x01\x05ab", too_long):
        event = PageConnection(Limits(), 0.0).receive(bad, 0.0)
        assert isinstance(event, Violation) and event.code == 1007, bad


def test_size_limit() -> None:
    c = PageConnection(Limits(max_message_size=100), 0.0)
    assert isinstance(c.receive(encode_update(b"x" * 50), 0.0), SyncReceived)
    event = c.receive(encode_update(b"x" * 200), 0.0)
    assert isinstance(event, Violation) and event.code == 1009


def test_rate_limit_allows_two_seconds_of_burst_then_refills() -> None:
    c = PageConnection(Limits(max_message_rate=10), 0.0)
    msg = encode_update(b"\x00\x00")
    assert all(isinstance(c.receive(msg, 0.0), SyncReceived) for _ in range(20))
    c2 = PageConnection(Limits(max_message_rate=10), 0.0)
    for _ in range(20):
        c2.receive(msg, 0.0)
    assert isinstance(c2.receive(msg, 1.0), SyncReceived)  # a second later: 10 more tokens
    event = c.receive(msg, 0.0)
    assert isinstance(event, Violation) and event.code == 1008


@given(st.binary(max_size=64))
def test_any_bytes_give_an_event_never_an_exception(data: bytes) -> None:
    event = PageConnection(Limits(), 0.0).receive(data, 0.0)
    assert event is None or isinstance(event, (SyncReceived, AwarenessReceived, AwarenessQuery, Violation))
