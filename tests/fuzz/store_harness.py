"""Fuzz drivers for the replicated store: sync messages through the real DocSync, raw CRDT
updates through each engine, and stored value strings, with both engines when present.

Invariants: nothing escapes (pycrdt's PanicException, a BaseException, included); a rejected
message leaves every document exactly as it was (entries and state vector); whatever was
accepted leaves a replica that still works and that a fresh replica reproduces from its diff.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mpstore._docsync import (
    K_BUNDLE,
    K_PART,
    VERSION,
    DocSync,
    encode_bundle,
    encode_update,
    write_varbytes,
    write_varuint,
)
from mpstore._errors import CorruptUpdate, EngineUnavailable
from mpstore._values import ValueDecodeError, decode_value, encode_value
from mpstore.engines import load_engine
from mpstore.engines.base import Engine, EngineDoc

__all__ = ["ENGINES", "register_all", "run_engine_update", "run_store_messages", "run_value"]

A_ID, B_ID = "a" * 32, "b" * 32


def _engines() -> dict[str, Engine]:
    out = {}
    for name in ("pycrdt", "python"):
        try:
            out[name] = load_engine(name)
        except EngineUnavailable:
            pass
    return out


ENGINES = _engines()


def _snapshot(sync: DocSync) -> dict[str, tuple[list[tuple[str, str]], bytes]]:
    return {name: (sorted(d.items()), d.state_vector()) for name, d in sync.docs.items()}


def _record_transcript(engine: Engine) -> list[bytes]:
    """Store messages a real peer B sends to A: joining, sync steps, then updates of two stores."""
    a, b = DocSync(A_ID, engine.new_doc), DocSync(B_ID, engine.new_doc)
    a.transact("s", {"shared": encode_value("from a")}, [])
    b.transact("s", {"k1": encode_value(1), "big": encode_value({"n": [1, 2.5, None], "b": b"\x00"})}, [])
    sent: list[bytes] = []

    def pump() -> None:
        for _ in range(20):
            moved = False
            for peer, payload in b.take_outbox():
                assert peer == A_ID
                sent.append(payload)
                a.receive(B_ID, payload)
                moved = True
            for _peer, payload in a.take_outbox():
                b.receive(A_ID, payload)
                moved = True
            if not moved:
                return

    a.peer_added(B_ID)
    b.peer_added(A_ID)
    pump()
    b.transact("s", {"k2": encode_value("two")}, ["k1"])
    b.transact("t", {"other": encode_value([True, False])}, [])
    b.transact("s", {"shared": encode_value("overwritten by b")}, [])
    pump()
    assert sorted(a.doc("s").items()) == sorted(b.doc("s").items())
    # A bundle and a message in parts, as the store manager and DocSync make them.
    update = b.doc("s").encode_diff(b"\x00")
    sent.append(
        encode_bundle([encode_update(B_ID, 1000, "s", update), encode_update(B_ID, 1001, "u", update)])
    )
    whole = encode_update(B_ID, 1002, "v", update)
    third = -(-len(whole) // 3)
    for index in range(3):
        out = bytearray((VERSION, K_PART))
        write_varuint(out, 7)
        write_varuint(out, index)
        write_varuint(out, 3)
        write_varbytes(out, whole[index * third : (index + 1) * third])
        sent.append(bytes(out))
    return sent


TRANSCRIPTS = {name: _record_transcript(engine) for name, engine in ENGINES.items()}


def _victim(engine: Engine) -> DocSync:
    sync = DocSync(A_ID, engine.new_doc, max_stores=8)
    sync.transact("s", {"mine": encode_value("kept")}, [])
    sync.peer_added(B_ID)
    sync.take_outbox()
    return sync


#: Engines whose visible state always matches what their own diff rebuilds, and which leave a
#: document untouched when they refuse an update. Not yrs: after hostile out-of-order or
#: overlapping structs it shows entries its encoding does not carry, it can integrate part of
#: an update before refusing it, and its snapshot may then panic elsewhere (see
#: test_fuzz_regressions.py); for pycrdt, only "nothing escapes, reads still work" is checked.
SELF_CONSISTENT = {"python"}


def _check_replica(engine: Engine, doc: EngineDoc) -> None:
    """The document still works, and a fresh replica rebuilt from its diff shows the same."""
    items = sorted(doc.items())
    try:
        diff = doc.encode_diff(b"\x00")
    except CorruptUpdate:
        assert engine.name not in SELF_CONSISTENT, "no snapshot of the document"
        return  # yrs, after part of a refused update (test_fuzz_regressions.py)
    fresh = engine.new_doc()
    if engine.name in SELF_CONSISTENT:
        fresh.apply_update(diff)
        assert sorted(fresh.items()) == items, "a replica rebuilt from the diff differs"
    else:
        try:  # yrs may refuse (panic on) its own snapshot after hostile updates
            fresh.apply_update(diff)
        except CorruptUpdate:
            pass
    doc.transact({"after-fuzz": encode_value(1)}, [])
    assert doc.get("after-fuzz") == encode_value(1)


def run_store_messages(engine_name: str, payloads: list[bytes]) -> DocSync:
    """Feed store messages from neighbour B to a node's DocSync."""
    engine = ENGINES[engine_name]
    sync = _victim(engine)
    for payload in payloads:
        before = _snapshot(sync)
        rejected = sync.stats.rejected
        sync.receive(B_ID, payload)  # must not raise
        whole_message = payload[:2] not in (bytes((VERSION, K_BUNDLE)), bytes((VERSION, K_PART)))
        if whole_message and sync.stats.rejected > rejected:
            after = _snapshot(sync)
            for name, state in before.items():
                assert after[name] == state, f"store {name!r} changed by a rejected message"
        sync.take_outbox()
        latest: dict[tuple[str, str], str | None] = {}
        for ev in sync.take_events():
            for key, value in ev.changes.items():
                latest[(ev.name, key)] = value
        for (name, key), value in latest.items():
            assert sync.docs[name].get(key) == value, "an event disagrees with the document"
        assert len(sync.docs) <= 8
    for doc in sync.docs.values():
        _check_replica(engine, doc)
    return sync


def run_engine_update(engine_name: str, update: bytes) -> None:
    """Apply one raw update: CorruptUpdate leaves the document as it was."""
    engine = ENGINES[engine_name]
    doc = engine.new_doc()
    doc.transact({"mine": encode_value("kept"), "n": encode_value(2)}, [])
    items, sv = sorted(doc.items()), doc.state_vector()
    try:
        doc.apply_update(update)
    except CorruptUpdate:
        if engine.name in SELF_CONSISTENT:  # yrs can integrate part of an update, then refuse it
            assert sorted(doc.items()) == items and doc.state_vector() == sv, (
                "a rejected update changed the doc"
            )
    try:
        doc.encode_diff(update)  # the same bytes as a state vector
    except CorruptUpdate:
        pass
    _check_replica(engine, doc)


def run_value(text: bytes) -> Any:
    """A stored value string decodes exactly, or raises ValueDecodeError."""
    try:
        value = decode_value(text.decode("utf-8", "surrogatepass"))
    except (ValueDecodeError, UnicodeDecodeError):
        return None
    assert decode_value(encode_value(value)) == value or value != value  # NaN is not equal to itself
    return value


@functools.lru_cache(maxsize=1)
def seeds() -> dict[str, list[bytes]]:
    """Corpus seeds per target, made once (documents get random client ids)."""
    from tests.fuzz.harness import join_frames

    out: dict[str, list[bytes]] = {}
    for name, transcript in TRANSCRIPTS.items():
        out[f"store-{name}"] = [join_frames(transcript)]
        out[f"update-{name}"] = [ENGINES[name].new_doc().encode_diff(b"\x00")]
        doc = ENGINES[name].new_doc()
        doc.transact({"k": encode_value({"x": [1, "y", b"z"]})}, [])
        out[f"update-{name}"].append(doc.encode_diff(b"\x00"))
    out["value"] = [encode_value(v).encode() for v in (1, 1.5, b"\x00\xff", 2**70, {"$x": [None, True]}, "é")]
    return out


def register_all(register: Callable[[str, Callable[[bytes], object], list[bytes]], None]) -> None:
    """Add the store targets to the harness."""
    from tests.fuzz.harness import split_frames

    found = seeds()
    for name in ENGINES:
        register(
            f"store-{name}",
            lambda data, n=name: run_store_messages(n, split_frames(data)),  # type: ignore[misc]
            found[f"store-{name}"],
        )
        register(
            f"update-{name}",
            lambda data, n=name: run_engine_update(n, data),  # type: ignore[misc]
            found[f"update-{name}"],
        )
    register("value", run_value, found["value"])
