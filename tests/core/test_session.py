"""The sans-IO session: two sessions pumped by hand with a fake clock."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mpstore._session import (
    Hello,
    HelloReceived,
    LinkClosed,
    LinkSession,
    MessageReceived,
    PeerOpened,
    SessionConfig,
)
from mpstore._wire import Kind, split_message

A_ID, B_ID = "a" * 32, "b" * 32
CONFIG = SessionConfig(peer_timeout=5.0, handshake_timeout=10.0, max_frame_size=64, max_receive_size=4096)


class Pair:
    """Two sessions and a clock; pump() moves frames both ways until quiet."""

    def __init__(self, config: SessionConfig = CONFIG) -> None:
        self.now = 100.0
        self.a = LinkSession(Hello(A_ID, "Ann", {"team": "red"}, "n1"), config, self.now)
        self.b = LinkSession(Hello(B_ID, "Bob", {}, "n2"), config, self.now)
        self.events: dict[str, list[object]] = {"a": [], "b": []}
        self.wire: list[tuple[str, bytes, bool]] = []

    def pump(self) -> None:
        for _ in range(100):
            moved = False
            for name, src, dst in (("a", self.a, self.b), ("b", self.b, self.a)):
                for frame, reliable in src.frames_to_send():
                    self.wire.append((name, frame, reliable))
                    dst.receive_frame(frame, self.now)
                    moved = True
            self.events["a"] += self.a.events()
            self.events["b"] += self.b.events()
            if not moved:
                return
        raise AssertionError("sessions never went quiet")

    def open(self) -> None:
        self.pump()
        self.a.accept()
        self.b.accept()
        self.pump()

    def kinds(self, who: str) -> list[type]:
        return [type(e) for e in self.events[who]]


def test_handshake_opens_only_when_both_accept() -> None:
    p = Pair()
    p.pump()
    assert p.kinds("a") == [HelloReceived] and p.kinds("b") == [HelloReceived]
    hello = p.events["a"][0]
    assert isinstance(hello, HelloReceived)
    assert hello.hello.peer_id == B_ID and hello.hello.display_name == "Bob"
    assert p.events["b"][0].hello.discovery_info == {"team": "red"}  # type: ignore[attr-defined]
    p.a.accept()
    p.pump()
    assert not p.a.is_open and not p.b.is_open
    p.b.accept()
    p.pump()
    assert p.a.is_open and p.b.is_open
    assert p.kinds("a")[-1] is PeerOpened and p.kinds("b")[-1] is PeerOpened


def test_refusal_closes_both_and_never_opens() -> None:
    p = Pair()
    p.pump()
    p.a.accept()
    p.b.refuse("not today")
    p.pump()
    assert PeerOpened not in p.kinds("a") + p.kinds("b")
    closed_a = [e for e in p.events["a"] if isinstance(e, LinkClosed)]
    assert closed_a and "not today" in closed_a[0].reason and not closed_a[0].was_open


def test_messages_flow_both_ways_in_order_and_fragmented() -> None:
    p = Pair()
    p.open()
    big = bytes(range(256)) * 10
    for i in range(5):
        p.a.send(Kind.APP, json.dumps(i).encode())
    p.a.send(Kind.APP, big)
    p.b.send(Kind.STORE, b"store-bytes")
    p.pump()
    got_b = [e for e in p.events["b"] if isinstance(e, MessageReceived)]
    assert [m.payload for m in got_b] == [b"0", b"1", b"2", b"3", b"4", big]
    assert all(m.kind == Kind.APP and m.reliable for m in got_b)
    got_a = [e for e in p.events["a"] if isinstance(e, MessageReceived)]
    assert [(m.kind, m.payload) for m in got_a] == [(Kind.STORE, b"store-bytes")]
    assert all(len(frame) <= 64 for _, frame, _ in p.wire)


def test_unreliable_small_messages_stay_unreliable_large_ones_fall_back() -> None:
    p = Pair()
    p.open()
    p.wire.clear()
    p.a.send(Kind.APP, b"small", reliable=False)
    p.a.send(Kind.APP, b"x" * 200, reliable=False)
    p.pump()
    reliabilities = [r for who, _, r in p.wire if who == "a"]
    assert reliabilities[0] is False and all(reliabilities[1:])
    got = [e for e in p.events["b"] if isinstance(e, MessageReceived)]
    assert [m.reliable for m in got] == [False, True]


def test_heartbeats_keep_an_idle_link_alive() -> None:
    p = Pair()
    p.open()
    for _ in range(40):  # 40 s of idle time, in 1 s steps
        p.now += 1.0
        p.a.handle_timer(p.now)
        p.b.handle_timer(p.now)
        p.pump()
    assert p.a.is_open and p.b.is_open
    assert any(frame[0] == Kind.PING for _, frame, _ in p.wire)


def test_silent_peer_is_dropped_after_peer_timeout() -> None:
    p = Pair()
    p.open()
    p.now += 4.9
    p.a.handle_timer(p.now)
    assert p.a.is_open
    p.now += 0.2  # 5.1 s without a frame from b
    p.a.handle_timer(p.now)
    closed = [e for e in p.a.events() if isinstance(e, LinkClosed)]
    assert closed and not closed[0].clean and closed[0].was_open
    assert "no sign of life" in closed[0].reason


def test_a_peer_that_keeps_draining_our_stream_is_not_silent() -> None:
    """The transport taking our bytes again (note_drained) is a sign of life: a peer busy
    reading a large stream is not dropped; once it stops draining, the timeout runs."""
    p = Pair()
    p.open()
    for _ in range(3):
        p.now += 4.0
        p.a.note_drained(p.now)
        p.a.handle_timer(p.now)
    assert p.a.is_open  # 12 s without a frame from b, but b took our bytes every 4 s
    p.now += 5.1
    p.a.handle_timer(p.now)
    closed = [e for e in p.a.events() if isinstance(e, LinkClosed)]
    assert closed and "no sign of life" in closed[0].reason


def test_draining_before_the_session_opens_proves_nothing() -> None:
    p = Pair()
    p.pump()  # hellos exchanged, nobody accepted yet
    p.a.note_drained(p.now + 100)
    assert p.a.next_deadline() is not None and p.a.next_deadline() < p.now + 100  # type: ignore[operator]


def test_next_deadline_tells_when_to_call_handle_timer() -> None:
    p = Pair()
    p.open()
    deadline = p.a.next_deadline()
    assert deadline is not None and p.now < deadline <= p.now + CONFIG.peer_timeout


def test_unfinished_handshake_times_out() -> None:
    p = Pair()
    p.pump()  # hellos exchanged, nobody accepts
    for _ in range(12):
        p.now += 1.0
        p.a.handle_timer(p.now)
        p.b.handle_timer(p.now)
        p.pump()
    closed = [e for e in p.events["a"] if isinstance(e, LinkClosed)]
    assert closed and "handshake" in closed[0].reason


def test_goodbye_is_seen_as_a_clean_close() -> None:
    p = Pair()
    p.open()
    p.a.close("bye now")
    p.pump()
    closed = [e for e in p.events["b"] if isinstance(e, LinkClosed)]
    assert closed and closed[0].clean and "bye now" in closed[0].reason and closed[0].was_open


def test_unknown_kinds_are_ignored() -> None:
    p = Pair()
    p.open()
    for frame in split_message(0x7E, b"from the future", 64, True):
        p.b.receive_frame(frame, p.now)
    p.a.send(Kind.APP, b"after")
    p.pump()
    assert p.b.is_open
    got = [e for e in p.events["b"] if isinstance(e, MessageReceived)]
    assert [m.payload for m in got] == [b"after"]


def test_app_message_before_open_is_a_protocol_error() -> None:
    p = Pair()
    p.pump()
    p.b.receive_frame(bytes((Kind.APP, 0)) + b'"sneaky"', p.now)
    events = p.b.events()
    assert not any(isinstance(e, MessageReceived) for e in events)
    assert any(isinstance(e, LinkClosed) and "before the session opened" in e.reason for e in events)


def test_incompatible_version_and_bad_hellos_close_the_link() -> None:
    bad_hellos = [
        b"not json",
        b"[1,2]",
        json.dumps({"mpstore": 99, "min": 50, "id": B_ID, "name": "x"}).encode(),
        json.dumps({"mpstore": 1, "id": "short", "name": "x"}).encode(),
        json.dumps({"mpstore": 1, "id": B_ID, "name": ""}).encode(),
        json.dumps({"mpstore": 1, "id": B_ID, "name": "x", "info": {"a=b": "c"}}).encode(),
        json.dumps({"mpstore": 1, "id": B_ID, "name": "x" * 9000}).encode(),
    ]
    for payload in bad_hellos:
        s = LinkSession(Hello(A_ID, "Ann"), SessionConfig(max_frame_size=64 * 1024), 0.0)
        s.receive_frame(bytes((Kind.HELLO, 0)) + payload, 0.0)
        events = s.events()
        assert any(isinstance(e, LinkClosed) for e in events), payload
        assert not any(isinstance(e, HelloReceived) for e in events)


def test_hello_round_trip_keeps_unknown_fields_for_later_versions() -> None:
    hello = Hello(A_ID, "Ann", {"k": "v"}, "nonce", extra={"future": [1, 2]})
    back = Hello.decode(hello.encode())
    assert back == hello


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=100), max_size=20))
def test_random_frames_never_escape_the_session(frames: list[bytes]) -> None:
    s = LinkSession(Hello(A_ID, "Ann"), CONFIG, 0.0)
    for frame in frames:
        s.receive_frame(frame, 0.0)  # must not raise
    s.events()


@pytest.mark.parametrize("seed_frame", [bytes((Kind.HELLO, 0)) + Hello(B_ID, "Bob").encode()])
@settings(max_examples=200)
@given(data=st.data())
def test_mutated_hellos_never_escape_the_session(seed_frame: bytes, data: st.DataObject) -> None:
    frame = bytearray(seed_frame)
    for _ in range(data.draw(st.integers(1, 5))):
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] = data.draw(st.integers(0, 255))
    s = LinkSession(Hello(A_ID, "Ann"), SessionConfig(), 0.0)
    s.receive_frame(bytes(frame), 0.0)
    for event in s.events():
        assert isinstance(event, (HelloReceived, LinkClosed))


_MESSAGES = st.lists(
    st.tuples(
        st.sampled_from([Kind.APP, Kind.STORE, Kind.PRESENCE, Kind.FILE, 0x7E]),
        st.binary(max_size=8) | st.binary(min_size=60, max_size=200),  # one frame, or fragments
        st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@example(messages=[(Kind.APP, b"x" * 200, True), (Kind.APP, b"y", True)], cuts=[], garbage_at=None, rate=None)
@example(messages=[(Kind.STORE, b"s", True)] * 12, cuts=[5], garbage_at=None, rate=5.0)
@example(messages=[(Kind.APP, b"a", True)] * 3, cuts=[1], garbage_at=2, rate=None)
@given(
    messages=_MESSAGES,
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    garbage_at=st.none() | st.integers(min_value=0, max_value=400),
    rate=st.sampled_from([None, 5.0, 5000.0]),  # 5/s: a burst of over 10 messages is cut off
)
def test_frames_taken_together_act_as_frames_taken_one_by_one(
    messages: list[tuple[int, bytes, bool]], cuts: list[int], garbage_at: int | None, rate: float | None
) -> None:
    # receive_frames() (a read's worth of frames at once, with its fast path for whole plain
    # messages) must give exactly the events and end state of receive_frame() per frame: same
    # messages in the same order, same fragment reassembly, the rate limit and a bad frame
    # closing the session at the same point, nothing taken after the close.
    config = SessionConfig(
        peer_timeout=5.0,
        handshake_timeout=10.0,
        max_frame_size=64,
        max_receive_size=4096,
        max_message_rate=rate,
    )
    one, many = Pair(config), Pair(config)
    one.open()
    many.open()
    for kind, payload, reliable in messages:
        one.a.send(kind, payload, reliable)
        many.a.send(kind, payload, reliable)
    frames = [frame for frame, _ in one.a.frames_to_send()]
    assert frames == [frame for frame, _ in many.a.frames_to_send()]
    if garbage_at is not None:
        at = min(garbage_at, len(frames))
        frames.insert(at, bytes((Kind.APP, 0x80)) + b"unknown flag")
    for frame in frames:
        one.b.receive_frame(frame, one.now)
    bounds = sorted({0, len(frames), *(min(c, len(frames)) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        many.b.receive_frames(frames[start:end], many.now)

    def seen(session: LinkSession) -> list[object]:
        return [
            (type(e).__name__, e.kind, e.payload, e.reliable)
            if isinstance(e, MessageReceived)
            else (type(e).__name__, getattr(e, "reason", None))
            for e in session.events()
        ]

    assert seen(many.b) == seen(one.b)
    assert many.b.state is one.b.state and many.b.close_reason == one.b.close_reason
    assert [f for f, _ in many.b.frames_to_send()] == [f for f, _ in one.b.frames_to_send()]
