"""The session carries PRESENCE like APP and STORE: only once open, counted toward the rate."""

from __future__ import annotations

from mpstore._session import Hello, LinkSession, MessageReceived, SessionConfig
from mpstore._wire import Kind, split_message
from tests.core.test_session import Pair

CONFIG = SessionConfig(peer_timeout=5.0, handshake_timeout=10.0, max_frame_size=64, max_receive_size=4096)


def test_presence_is_delivered_unreliably_once_open() -> None:
    pair = Pair(CONFIG)
    pair.open()
    pair.a.send(Kind.PRESENCE, b"\x01\x00\x00\x00", reliable=False)
    pair.pump()
    got = [e for e in pair.events["b"] if isinstance(e, MessageReceived)]
    assert [(e.kind, e.payload, e.reliable) for e in got] == [(Kind.PRESENCE, b"\x01\x00\x00\x00", False)]


def test_presence_before_open_closes_the_link() -> None:
    session = LinkSession(Hello("b" * 32, "Bob", {}, "n"), CONFIG, 0.0)
    for frame in split_message(Kind.HELLO, Hello("a" * 32, "Ann", {}, "m").encode(), 64, True):
        session.receive_frame(frame, 0.0)
    for frame in split_message(Kind.PRESENCE, b"\x01\x00\x00\x00", 64, True):
        session.receive_frame(frame, 0.0)
    assert not session.is_open and session.close_reason is not None
    assert "before the session opened" in session.close_reason


def test_presence_counts_toward_the_message_rate() -> None:
    pair = Pair(
        SessionConfig(peer_timeout=5.0, max_frame_size=64, max_receive_size=4096, max_message_rate=10)
    )
    pair.open()
    for _ in range(25):  # a burst of 2 s worth (the bucket) and more, at one instant
        pair.a.send(Kind.PRESENCE, b"\x01\x02", reliable=True)
    pair.pump()
    assert not pair.b.is_open
    assert "messages per second" in (pair.b.close_reason or "")
