"""Session-level defences: reassembly before open, reflected proofs, and sealed frames where the
link has no channel binding (a relay in the middle of a Multipeer Connectivity link)."""

from __future__ import annotations

from typing import Any

from mpstore._auth import FrameSeal, derive_key, link_key
from mpstore._session import (
    MAX_HELLO_SIZE,
    Hello,
    HelloReceived,
    LinkClosed,
    LinkSession,
    MessageReceived,
    SessionConfig,
)
from mpstore._wire import FLAG_MORE, Kind

A_ID, B_ID, M_ID = "a" * 32, "b" * 32, "c" * 32
KEY = derive_key("correct horse", "chat")
CONFIG = SessionConfig(max_frame_size=16 * 1024, max_receive_size=1024 * 1024)


def make(peer_id: str, key: bytes | None, binding: bytes = b"") -> LinkSession:
    return LinkSession(Hello(peer_id, peer_id[:3], {}, LinkSession.new_nonce()), CONFIG, 0.0, key, binding)


def relay(
    a: LinkSession, b: LinkSession, tamper: Any = None, seen: list[bytes] | None = None
) -> tuple[list[Any], list[Any]]:
    """Move frames both ways until quiet; ``tamper(frame) -> frame`` rewrites a->b frames."""
    ea: list[Any] = []
    eb: list[Any] = []
    for _ in range(50):
        moved = False
        for src, dst, name in ((a, b, "ab"), (b, a, "ba")):
            for frame, _ in src.frames_to_send():
                if seen is not None:
                    seen.append(frame)
                if tamper is not None and name == "ab":
                    frame = tamper(frame)
                dst.receive_frame(frame, 0.0)
                moved = True
        ea += a.events()
        eb += b.events()
        for s, evs in ((a, ea), (b, eb)):
            if any(isinstance(e, HelloReceived) for e in evs) and not s.accepted_locally and not s.is_open:
                s.accept()
                moved = True
        if not moved:
            break
    return ea, eb


def test_an_unopened_link_cannot_make_us_buffer_more_than_a_hello() -> None:
    s = make(A_ID, None)
    chunk = bytes((0x30, FLAG_MORE)) + b"x" * 4000
    for _ in range(3):  # 12,000 bytes of an unknown kind, never finished
        s.receive_frame(chunk, 0.0)
    closed = [e for e in s.events() if isinstance(e, LinkClosed)]
    assert closed and "over the limit" in closed[0].reason
    assert MAX_HELLO_SIZE < 12000


def test_the_full_limit_applies_once_open() -> None:
    a, b = make(A_ID, None), make(B_ID, None)
    relay(a, b)
    assert a.is_open and b.is_open
    a.send(Kind.APP, b"y" * 200_000)
    _, eb = relay(a, b)
    assert [len(e.payload) for e in eb if isinstance(e, MessageReceived)] == [200_000]


def test_a_reflected_hello_and_proof_do_not_verify() -> None:
    # The attacker claims the victim's own id and sends the victim's hello and proof back.
    v = make(A_ID, KEY, binding=b"tls")
    mine = v.frames_to_send()
    hello = mine[0][0]
    v.receive_frame(hello, 0.0)
    out = v.frames_to_send()
    for frame, _ in out:
        v.receive_frame(frame, 0.0)
    events = v.events()
    assert not any(isinstance(e, HelloReceived) for e in events)
    assert any(isinstance(e, LinkClosed) and e.auth_failed for e in events)


def test_members_open_a_sealed_link_and_talk() -> None:
    a, b = make(A_ID, KEY), make(B_ID, KEY)
    relay(a, b)
    assert a.is_open and b.is_open
    a.send(Kind.APP, b"pay Bob 5")
    a.send(Kind.APP, b"z" * 50_000)
    a.send(Kind.APP, b"ping", reliable=False)
    b.send(Kind.STORE, b"store bytes")
    ea, eb = relay(a, b)
    assert [e.payload for e in eb if isinstance(e, MessageReceived)] == [b"pay Bob 5", b"z" * 50_000, b"ping"]
    assert [e.payload for e in ea if isinstance(e, MessageReceived)] == [b"store bytes"]


def test_a_relay_in_the_middle_can_neither_read_nor_rewrite_app_frames() -> None:
    # No channel binding (Multipeer Connectivity): the relay forwards both hellos and proofs.
    a, b = make(A_ID, KEY), make(B_ID, KEY)
    relay(a, b)
    assert a.is_open and b.is_open
    a.send(Kind.APP, b"pay Bob 5")
    seen: list[bytes] = []

    def rewrite(frame: bytes) -> bytes:
        return frame.replace(b"pay Bob 5", b"pay Mal 500")

    _, eb = relay(a, b, tamper=rewrite, seen=seen)
    assert seen and not any(b"pay Bob 5" in f for f in seen)
    assert not any(isinstance(e, MessageReceived) and b"Mal" in e.payload for e in eb)
    # Flipping any bit of the sealed frame is caught and ends the link.
    a2, b2 = make(A_ID, KEY), make(B_ID, KEY)
    relay(a2, b2)
    a2.send(Kind.APP, b"pay Bob 5")

    def flip(frame: bytes) -> bytes:
        return frame[:-20] + bytes((frame[-20] ^ 1,)) + frame[-19:]

    _, eb2 = relay(a2, b2, tamper=flip)
    assert not any(isinstance(e, MessageReceived) for e in eb2)
    assert any(isinstance(e, LinkClosed) and "authentication" in e.reason for e in eb2)


def test_a_relay_cannot_inject_plain_app_frames_after_the_handshake() -> None:
    a, b = make(A_ID, KEY), make(B_ID, KEY)
    relay(a, b)
    b.receive_frame(bytes((Kind.APP, 0)) + b"pay Mal 500", 0.0)
    events = b.events()
    assert not any(isinstance(e, MessageReceived) for e in events)
    assert any(isinstance(e, LinkClosed) and "unsealed" in e.reason for e in events)


def test_sealed_frames_cannot_be_dropped_replayed_or_reordered() -> None:
    link = link_key(KEY, b"transcript")
    a, b = FrameSeal(link, 0), FrameSeal(link, 1)
    f1, f2 = a.seal(b"\x10\x00one", True), a.seal(b"\x10\x00two", True)
    assert b.open(f1) == (b"\x10\x00one", True)
    for bad in (f1, a.seal(b"\x10\x00three", True)):  # a replay, then a gap (f2 dropped)
        try:
            b.open(bad)
        except ValueError:
            pass
        else:
            raise AssertionError("accepted a replayed or out-of-order frame")
    # Unreliable frames may be lost but never go backwards.
    u1, u2 = a.seal(b"\x10\x02u1", False), a.seal(b"\x10\x02u2", False)
    assert b.open(u2) == (b"\x10\x02u2", False)
    try:
        b.open(u1)
    except ValueError:
        pass
    else:
        raise AssertionError("accepted an unreliable frame that went backwards")
    # The other direction has its own keys: a frame cannot be reflected back to its sender.
    try:
        a.open(f2)
    except ValueError:
        pass
    else:
        raise AssertionError("a sealed frame opened in the wrong direction")


def test_the_lan_keeps_tls_alone_with_its_channel_binding() -> None:
    a, b = make(A_ID, KEY, binding=b"tls"), make(B_ID, KEY, binding=b"tls")
    seen: list[bytes] = []
    relay(a, b)
    a.send(Kind.APP, b"plain inside TLS")
    relay(a, b, seen=seen)
    assert any(b"plain inside TLS" in f for f in seen)


def test_an_unsealed_message_after_the_proof_is_refused_in_a_batch_too() -> None:
    # receive_frames() (the LAN transport hands a read's frames at once) has a short path for
    # whole plain messages: it must never take one on a sealed link.
    a, b = make(A_ID, KEY), make(B_ID, KEY)
    relay(a, b)
    assert a.is_open and b.is_open
    a.send(Kind.APP, b"sealed")
    sealed = [frame for frame, _ in a.frames_to_send()]
    forged = bytes((Kind.APP, 0)) + b"pay Mallory 500"
    b.receive_frames([*sealed, forged, *sealed], 0.0)
    events = b.events()
    assert [e.payload for e in events if isinstance(e, MessageReceived)] == [b"sealed"]
    assert not b.is_open and "unsealed" in (b.close_reason or "")
