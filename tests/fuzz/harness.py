"""Fuzz drivers for every decoder that takes peer bytes, shared by Hypothesis and atheris.

Each ``run_*`` function feeds bytes to the real decoder or session, and raises AssertionError
when an invariant breaks; any other exception escaping is a bug too. ``TARGETS`` maps a target
name to its driver; :func:`dispatch` lets one byte choose the target (the atheris entry point).

Sessions are fuzzed from four starting states (fresh or already open, without or with a group
secret), with deterministic nonces so that a recorded transcript of a real peer (``transcript``)
stays valid and its mutations reach deep states.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from typing import Any

from mpstore import _core
from mpstore._auth import derive_key
from mpstore._errors import ProtocolError
from mpstore._session import (
    DELIVERED_KINDS,
    Event,
    Hello,
    HelloReceived,
    LinkClosed,
    LinkSession,
    MessageReceived,
    PeerOpened,
    SessionConfig,
)
from mpstore._wire import Kind, Message, Reassembler, split_message

__all__ = ["STAGES", "TARGETS", "dispatch", "join_frames", "split_frames", "store_harness", "transcript"]

A_ID, B_ID = "a" * 32, "b" * 32
KEY = derive_key("fuzzing passphrase", "fuzz")
BINDING = b"channel binding of the fuzz link"
CONFIG = SessionConfig(
    peer_timeout=5.0, handshake_timeout=5.0, max_frame_size=64, max_receive_size=4096, max_message_rate=50.0
)
STAGES = ("fresh", "fresh-secret", "open", "open-secret")


def _key(stage: str) -> bytes | None:
    return KEY if stage.endswith("secret") else None


def _session(peer_id: str, name: str, nonce: str, key: bytes | None) -> LinkSession:
    return LinkSession(Hello(peer_id, name, {"k": "v"}, nonce), CONFIG, 0.0, key, BINDING)


def _make_transcript(key: bytes | None) -> tuple[list[bytes], int, Hello]:
    """Frames a real peer B sends to A in a whole conversation; how many make the handshake."""
    a, b = _session(A_ID, "Ann", "nonce-a", key), _session(B_ID, "Bob", "nonce-b", key)
    sent: list[bytes] = []
    for _ in range(10):
        for frame, _r in b.frames_to_send():
            sent.append(frame)
            a.receive_frame(frame, 0.0)
        for frame, _r in a.frames_to_send():
            b.receive_frame(frame, 0.0)
        for s in (a, b):
            for e in s.events():
                if isinstance(e, HelloReceived):
                    s.accept()
    assert a.is_open and b.is_open
    handshake = len(sent)
    b.send(Kind.APP, b'{"hello":"world"}')
    b.send(Kind.APP, json.dumps({"big": "x" * 150}).encode())  # fragmented at 64-byte frames
    b.send(Kind.APP, b"[1,2,3]", reliable=False)
    b.send(Kind.STORE, bytes(range(40)))
    b.handle_timer(2.0)  # a PING (heartbeat interval 1.25 s, silence limit 5 s)
    b.close("done")
    sent += [f for f, _r in b.frames_to_send()]
    assert b.remote_hello is not None and a.remote_hello is not None
    return sent, handshake, a.remote_hello


_TRANSCRIPTS = {key: _make_transcript(key) for key in (None, KEY)}


def transcript(stage: str) -> tuple[list[bytes], int]:
    """(frames a real peer sends in a whole conversation, how many of them are the handshake)."""
    frames, handshake, _ = _TRANSCRIPTS[_key(stage)]
    return list(frames), handshake


# -- frames inside one fuzz input -----------------------------------------------------------------


def join_frames(frames: list[bytes]) -> bytes:
    """Frames as one input: each with a 2-byte big-endian length."""
    return b"".join(len(f).to_bytes(2, "big") + f for f in frames)


def split_frames(data: bytes) -> list[bytes]:
    """The inverse of join_frames, lenient: a short last frame is taken as it is."""
    frames, pos = [], 0
    while pos + 2 <= len(data):
        n = int.from_bytes(data[pos : pos + 2], "big")
        frames.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return frames


# -- drivers --------------------------------------------------------------------------------------


def run_reassembler(frames: list[bytes], max_frame: int = 64, max_message: int = 300) -> list[Message]:
    """Feed frames; only ProtocolError may come out, and every message respects the limits."""
    r = Reassembler(max_frame, max_message)
    out = []
    for frame in frames:
        try:
            message = r.feed(frame)
        except ProtocolError:
            r = Reassembler(max_frame, max_message)  # a real session closes here; keep fuzzing
            continue
        if message is not None:
            assert len(message.payload) <= max_message
            assert message.reliable or len(message.payload) <= max_frame - 2
            out.append(message)
    return out


def run_session(stage: str, frames: list[bytes], prefix: bool = True) -> list[Event]:
    """Feed frames to A (after the valid handshake for the 'open' stages), accepting like a node.

    Invariants: nothing is raised; events come in a legal order and none after Closed; with a
    secret, the only peer ever reported is the real B; messages only while open, within limits.
    """
    key = _key(stage)
    a = _session(A_ID, "Ann", "nonce-a", key)
    _, handshake, b_hello = _TRANSCRIPTS[key]
    if stage.startswith("open") and prefix:
        frames = transcript(stage)[0][:handshake] + frames
    seen: list[Event] = []
    state = {"hello": False, "open": False, "closed": False}
    now = 0.0

    def take() -> None:
        pending = a.events()
        while pending:
            e = pending.pop(0)
            seen.append(e)
            assert not state["closed"], f"{e} after Closed"
            if isinstance(e, HelloReceived):
                assert not state["hello"], "second HelloReceived"
                state["hello"] = True
                if key is not None:
                    assert e.hello == b_hello, "an unproven hello reached the owner"
                a.accept()
                pending += a.events()
            elif isinstance(e, PeerOpened):
                assert state["hello"] and not state["open"]
                assert key is None or e.hello == b_hello
                state["open"] = True
            elif isinstance(e, MessageReceived):
                assert state["open"], "a message before the session opened"
                assert e.kind in DELIVERED_KINDS
                assert len(e.payload) <= CONFIG.max_receive_size
            elif isinstance(e, LinkClosed):
                state["closed"] = True
            else:
                raise AssertionError(f"unknown event {e!r}")
        for frame, _r in a.frames_to_send():
            assert 2 <= len(frame) <= CONFIG.max_frame_size

    take()
    for frame in frames:
        now += 0.001
        a.receive_frame(frame, now)
        take()
    if stage.startswith("open") and prefix and not state["closed"]:
        assert state["open"] or len(frames) == handshake
    a.handle_timer(now + 60.0)  # every timeout is due: the session must close
    take()
    assert state["closed"] and a.next_deadline() is None
    return seen


def run_hello(payload: bytes) -> Hello | None:
    """Hello.decode raises only ProtocolError; an accepted hello round-trips."""
    try:
        hello = Hello.decode(payload)
    except ProtocolError:
        return None
    assert Hello.decode(hello.encode()) == hello
    return hello


def run_lan_stream(data: bytes, cut: int = 0, max_frame: int = 1024) -> list[bytes]:
    """The LAN stream decoder in two chunks: frames, buffered rest and consumed bytes add up."""
    from mpstore.transports._lan._framing import FrameDecoder

    cut = cut % (len(data) + 1)
    d = FrameDecoder(max_frame)
    frames: list[bytes] = []
    try:
        frames += d.feed(data[:cut])
        frames += d.feed(data[cut:])
    except ProtocolError:
        return frames
    assert all(len(f) <= max_frame for f in frames)
    assert sum(4 + len(f) for f in frames) + d.buffered == len(data)
    return frames


def run_lan_handshake(frame: bytes) -> None:
    """The LAN preface and decision decoders raise only ProtocolError; prefaces round-trip."""
    from mpstore.transports._lan._framing import Preface, decode_decision

    try:
        preface = Preface.decode(frame)
    except ProtocolError:
        pass
    else:
        assert Preface.decode(preface.encode()) == preface
    try:
        decode_decision(frame)
    except ProtocolError:
        pass


class _Owner:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def receive(self, message: Any, from_peer: Any) -> None:
        self.got.append(message)


def run_app_payload(payload: bytes) -> list[Any]:
    """An app message payload is decoded (JSON) or dropped; nothing escapes."""
    owner = _Owner()
    _core._deliver_app(weakref.ref(owner), None, payload)  # type: ignore[arg-type]
    assert len(owner.got) <= 1
    return owner.got


def _session_target(stage: str) -> Callable[[bytes], object]:
    return lambda data: run_session(stage, split_frames(data))


TARGETS: dict[str, Callable[[bytes], object]] = {
    "wire": lambda data: run_reassembler(split_frames(data)),
    **{f"session-{stage}": _session_target(stage) for stage in STAGES},
    "hello": run_hello,
    "lan-stream": lambda data: run_lan_stream(data[1:], data[0] if data else 0),
    "lan-handshake": run_lan_handshake,
    "app-payload": run_app_payload,
}


_EXTRA_SEEDS: dict[str, list[bytes]] = {}


def register(name: str, driver: Callable[[bytes], object], seeds: list[bytes]) -> None:
    """Add a target (the store's, when it is present) and its corpus seeds."""
    TARGETS[name] = driver
    _EXTRA_SEEDS[name] = seeds


def extra_seeds() -> dict[str, list[bytes]]:
    """Seeds of the targets added with register()."""
    return dict(_EXTRA_SEEDS)


def dispatch(data: bytes) -> None:
    """The first byte picks the target (in registration order), the rest is its input."""
    if not data:
        return
    names = list(TARGETS)
    TARGETS[names[data[0] % len(names)]](data[1:])


def split_message_frames(kind: int, payload: bytes) -> list[bytes]:
    """Frames a real sender makes for one reliable message (for seeds)."""
    return split_message(kind, payload, CONFIG.max_frame_size, True)


try:  # the store's targets, when the store and an engine are present
    from tests.fuzz import store_harness
except ImportError:  # pragma: no cover - without the store
    store_harness = None  # type: ignore[assignment]
else:
    store_harness.register_all(register)
