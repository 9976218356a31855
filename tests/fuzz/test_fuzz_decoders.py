"""Hypothesis fuzzing of every decoder that takes peer bytes: random and mutated valid inputs.

The drivers and their invariants live in ``tests/fuzz/harness.py`` (shared with the atheris
target): nothing but the documented error may come out of a decoder, nothing at all out of a
session, events keep a legal order, an unproven peer never reaches admission, limits hold.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpstore._session import HelloReceived, LinkClosed, MessageReceived, PeerOpened
from mpstore._wire import FLAG_MORE, FLAG_UNRELIABLE, Kind
from tests.fuzz import harness

#: Examples per test; raise MPSTORE_FUZZ_EXAMPLES for a longer run (e.g. 20000).
EXAMPLES = int(os.environ.get("MPSTORE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = [int(k) for k in Kind] + [0x00, 0x07, 0x11, 0x21, 0xFF]


def frames_strategy(max_size: int = 80) -> st.SearchStrategy[bytes]:
    """Frames that look like frames: a real or odd kind, real or odd flags, any payload."""
    return st.one_of(
        st.binary(max_size=max_size),
        st.builds(
            lambda kind, flags, payload: bytes((kind, flags)) + payload,
            st.sampled_from(KINDS),
            st.sampled_from([0, FLAG_MORE, FLAG_UNRELIABLE, FLAG_MORE | FLAG_UNRELIABLE, 0x04, 0xFF]),
            st.binary(max_size=max_size),
        ),
    )


@st.composite
def mutated(draw: st.DrawFn, frames: list[bytes]) -> list[bytes]:
    """A valid frame sequence after 1-6 random edits: flip, set, cut, extend, drop, repeat, swap, insert."""
    out = [bytearray(f) for f in frames]
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "cut", "extend", "drop", "repeat", "swap", "insert"]))
        if not out:
            out.append(bytearray(draw(frames_strategy())))
            continue
        i = draw(st.integers(0, len(out) - 1))
        f = out[i]
        if op == "flip" and f:
            j = draw(st.integers(0, len(f) - 1))
            f[j] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and f:
            f[draw(st.integers(0, len(f) - 1))] = draw(st.integers(0, 255))
        elif op == "cut":
            del f[draw(st.integers(0, len(f))) :]
        elif op == "extend":
            f += draw(st.binary(min_size=1, max_size=80))
        elif op == "drop":
            del out[i]
        elif op == "repeat":
            out.insert(i, bytearray(f))
        elif op == "swap":
            j = draw(st.integers(0, len(out) - 1))
            out[i], out[j] = out[j], out[i]
        elif op == "insert":
            out.insert(i, bytearray(draw(frames_strategy())))
    return [bytes(f) for f in out]


# -- framing ------------------------------------------------------------------------------------


@FUZZ
@given(st.lists(frames_strategy(), max_size=30))
def test_reassembler_random_frames(frames: list[bytes]) -> None:
    harness.run_reassembler(frames)


@FUZZ
@given(mutated(harness.transcript("open")[0]))
def test_reassembler_mutated_real_frames(frames: list[bytes]) -> None:
    harness.run_reassembler(frames)


# -- sessions: random and mutated, from every starting state -------------------------------------


@pytest.mark.parametrize("stage", harness.STAGES)
@FUZZ
@given(frames=st.lists(frames_strategy(), max_size=25))
def test_session_random_frames(stage: str, frames: list[bytes]) -> None:
    events = harness.run_session(stage, frames)
    if stage.endswith("secret") and not stage.startswith("open"):
        assert not any(isinstance(e, (HelloReceived, PeerOpened, MessageReceived)) for e in events)


@pytest.mark.parametrize("stage", harness.STAGES)
@FUZZ
@given(data=st.data())
def test_session_mutated_real_conversation(stage: str, data: st.DataObject) -> None:
    frames, handshake = harness.transcript(stage)
    if stage.startswith("open"):
        frames = frames[handshake:]
    harness.run_session(stage, data.draw(mutated(frames)))


@pytest.mark.parametrize("stage", harness.STAGES)
def test_the_real_conversation_is_understood(stage: str) -> None:
    """The seeds are valid: unmutated, they open the session and deliver all four messages."""
    frames, handshake = harness.transcript(stage)
    events = harness.run_session(stage, frames[handshake:] if stage.startswith("open") else frames)
    kinds = [type(e) for e in events]
    assert kinds == [HelloReceived, PeerOpened] + [MessageReceived] * 4 + [LinkClosed]
    assert isinstance(events[-1], LinkClosed) and events[-1].clean


@FUZZ
@given(data=st.data())
def test_a_tampered_handshake_never_admits_anyone_else(data: st.DataObject) -> None:
    """With a secret, any edit of the real handshake either still yields exactly the real peer
    (e.g. the same bytes refragmented) or admits nobody."""
    frames, handshake = harness.transcript("fresh-secret")
    events = harness.run_session("fresh-secret", data.draw(mutated(frames[:handshake])), prefix=False)
    for e in events:
        if isinstance(e, (HelloReceived, PeerOpened)):
            assert e.hello.peer_id == harness.B_ID


# -- hello ----------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
HELLO_KEYS = ["mpstore", "min", "id", "name", "info", "nonce", "auth", "future"]


@FUZZ
@given(st.binary(max_size=300))
def test_hello_random_bytes(payload: bytes) -> None:
    harness.run_hello(payload)


@FUZZ
@given(st.dictionaries(st.sampled_from(HELLO_KEYS), JSON, max_size=8), st.data())
def test_hello_random_json_objects(body: dict[str, object], data: st.DataObject) -> None:
    valid = json.loads(harness.transcript("fresh")[0][0][2:] + harness.transcript("fresh")[0][1][2:])
    if data.draw(st.booleans()):
        body = {**valid, **body}  # mostly valid, some fields wrong
    harness.run_hello(json.dumps(body).encode())


@FUZZ
@given(st.data())
def test_hello_mutated_real_hello(data: st.DataObject) -> None:
    frames = harness.transcript("fresh-secret")[0]
    payload = frames[0][2:] + frames[1][2:]
    edited = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 5))):
        edited[data.draw(st.integers(0, len(edited) - 1))] = data.draw(st.integers(0, 255))
    harness.run_hello(bytes(edited))


# -- the LAN transport's stream framing and link handshake ------------------------------------------


@FUZZ
@given(st.binary(max_size=600), st.integers(0, 600))
def test_lan_stream_random(data: bytes, cut: int) -> None:
    harness.run_lan_stream(data, cut)


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=8), st.data())
def test_lan_stream_mutated_real_stream(frames: list[bytes], data: st.DataObject) -> None:
    from mpstore.transports._lan._framing import encode_frame_header

    stream = bytearray(b"".join(encode_frame_header(len(f)) + f for f in frames))
    for _ in range(data.draw(st.integers(0, 4))):
        if stream:
            stream[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    got = harness.run_lan_stream(bytes(stream), data.draw(st.integers(0, len(stream))))
    if stream == b"".join(encode_frame_header(len(f)) + f for f in frames):
        assert got == frames


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.builds(lambda b: b"MPSTLAN" + b, st.binary(max_size=200))))
def test_lan_preface_and_decision_random(frame: bytes) -> None:
    harness.run_lan_handshake(frame)


@FUZZ
@given(st.dictionaries(st.sampled_from(["v", "service", "id", "x"]), JSON, max_size=4))
def test_lan_preface_random_json(body: dict[str, object]) -> None:
    harness.run_lan_handshake(b"MPSTLAN" + json.dumps(body).encode())


# -- app message payloads ----------------------------------------------------------------------------


@FUZZ
@given(st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode())))
def test_app_payload_random(payload: bytes) -> None:
    harness.run_app_payload(payload)


@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000, b'{"a":' * 50_000, b"1" * 10_000, b"\xff\xfe", b'"\\ud800"', b"NaN", b""],
    ids=["deep-list", "deep-dict", "huge-int", "not-utf8", "lone-surrogate", "nan", "empty"],
)
def test_app_payload_nasty(payload: bytes) -> None:
    harness.run_app_payload(payload)


# -- the atheris dispatcher on the corpus seeds ------------------------------------------------------


def test_every_corpus_seed_runs_through_the_dispatcher() -> None:
    from pathlib import Path

    seeds = sorted((Path(__file__).parent / "corpus").glob("*"))
    assert len(seeds) >= len(harness.TARGETS)
    for seed in seeds:
        harness.dispatch(seed.read_bytes())


# -- the replicated store: sync messages, CRDT updates and stored values, with every engine --------

store_harness = harness.store_harness
ENGINES = sorted(store_harness.ENGINES) if store_harness is not None else []
needs_store = pytest.mark.skipif(not ENGINES, reason="no store engine in this build")


@needs_store
@pytest.mark.parametrize("engine", ENGINES)
def test_the_real_store_transcript_is_understood(engine: str) -> None:
    assert store_harness is not None
    sync = store_harness.run_store_messages(engine, store_harness.TRANSCRIPTS[engine])
    from mpstore._values import decode_value

    got = {k: decode_value(v) for k, v in sync.docs["s"].items()}
    assert got == {"mine": "kept", "shared": "overwritten by b", "k2": "two", "after-fuzz": 1} | {
        "big": {"n": [1, 2.5, None], "b": b"\x00"}
    }
    assert set(sync.docs) == {"s", "t", "u", "v"}


@needs_store
@pytest.mark.parametrize("engine", ENGINES)
@FUZZ
@given(payloads=st.lists(st.binary(max_size=120), max_size=10))
def test_store_random_messages(engine: str, payloads: list[bytes]) -> None:
    assert store_harness is not None
    store_harness.run_store_messages(engine, payloads)


@needs_store
@pytest.mark.parametrize("engine", ENGINES)
@FUZZ
@given(data=st.data())
def test_store_mutated_real_messages(engine: str, data: st.DataObject) -> None:
    assert store_harness is not None
    store_harness.run_store_messages(engine, data.draw(mutated(store_harness.TRANSCRIPTS[engine])))


@needs_store
@pytest.mark.parametrize("engine", ENGINES)
@FUZZ
@given(data=st.data())
def test_crdt_updates_random_and_mutated(engine: str, data: st.DataObject) -> None:
    assert store_harness is not None
    seeds = store_harness.seeds()[f"update-{engine}"]
    update = data.draw(
        st.one_of(
            st.binary(max_size=200),
            st.sampled_from(seeds).flatmap(lambda seed: mutated([seed]).map(lambda frames: b"".join(frames))),
        )
    )
    store_harness.run_engine_update(engine, update)


@needs_store
@FUZZ
@given(st.one_of(st.text(max_size=60).map(str.encode), JSON.map(lambda v: json.dumps(v).encode())))
def test_stored_values_decode_exactly_or_are_refused(text: bytes) -> None:
    assert store_harness is not None
    store_harness.run_value(text)
