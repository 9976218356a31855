"""The pure-Python engine on its own (runs without pycrdt, on Python 3.10)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpstore import CorruptUpdate
from mpstore._syncproto import (
    SYNC_STEP1,
    SYNC_STEP2,
    SYNC_UPDATE,
    decode_message,
    decode_var_uint,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
    encode_var_uint,
)
from mpstore.engines._python import PythonDoc, PythonEngine
from mpstore.engines._python._lib0 import (
    UNDEFINED,
    BigInt,
    Float32,
    Reader,
    write_any,
    write_var_int,
    write_var_uint,
)
from mpstore.engines._python._update import decode_state_vector, decode_update
from mpstore.engines.base import Engine, EngineDoc


def test_engine_contract() -> None:
    engine = PythonEngine()
    assert isinstance(engine, Engine)
    assert engine.name == "python"
    doc = engine.new_doc()
    assert isinstance(doc, EngineDoc)
    assert 0 <= doc.client_id < 2**32


def test_client_ids_fresh_per_instance() -> None:
    engine = PythonEngine()
    ids = {engine.new_doc().client_id for _ in range(2000)}
    assert len(ids) == 2000


def test_set_get_delete_and_noop() -> None:
    doc = PythonDoc()
    assert doc.transact({}, ["absent"]) == b""
    assert doc.transact({}, []) == b""
    u = doc.transact({"a": "1", "b": "2"}, [])
    assert u
    assert doc.get("a") == "1"
    assert sorted(doc.items()) == [("a", "1"), ("b", "2")]
    assert doc.transact({}, ["a"])
    assert doc.get("a") is None
    assert doc.transact({}, ["a"]) == b""
    # delete then set in one transaction: the set wins
    doc.transact({"b": "3"}, ["b"])
    assert doc.get("b") == "3"
    before = doc.encode_diff(b"\x00")
    with pytest.raises(TypeError):
        doc.transact({"x": "1", "y": 1}, ["b"])  # type: ignore[dict-item]
    assert doc.encode_diff(b"\x00") == before  # refused before anything changed


def test_update_replays_and_duplicates_are_silent() -> None:
    a, b = PythonDoc(), PythonDoc()
    u1 = a.transact({"k": "v"}, [])
    assert b.apply_update(u1) == {"k": "v"}
    assert b.apply_update(u1) == {}
    u2 = a.transact({}, ["k"])
    assert b.apply_update(u2) == {"k": None}
    assert b.apply_update(u2) == {}
    assert b.apply_update(a.encode_diff(b"\x00")) == {}
    assert b.items() == []


def test_concurrent_writes_higher_client_wins_everywhere() -> None:
    for order in (0, 1):
        low, high = PythonDoc(client_id=5), PythonDoc(client_id=9)
        base = low.transact({"k": "base"}, [])
        high.apply_update(base)
        ul = low.transact({"k": "low"}, [])
        uh = high.transact({"k": "high"}, [])
        if order:
            low.apply_update(uh)
            high.apply_update(ul)
        else:
            high.apply_update(ul)
            low.apply_update(uh)
        assert low.get("k") == high.get("k") == "high"
        third = PythonDoc()
        third.apply_update(ul if order else uh)
        third.apply_update(base)
        third.apply_update(uh if order else ul)
        assert third.get("k") == "high"


def test_concurrent_delete_and_set() -> None:
    a, b = PythonDoc(), PythonDoc()
    b.apply_update(a.transact({"k": "1"}, []))
    ua = a.transact({}, ["k"])
    ub = b.transact({"k": "2"}, [])
    assert a.apply_update(ub) == {"k": "2"}
    assert b.apply_update(ua) == {}
    assert a.get("k") == b.get("k") == "2"


def test_out_of_order_goes_pending_then_resolves() -> None:
    w = PythonDoc()
    u1 = w.transact({"a": "1"}, [])
    u2 = w.transact({"a": "2"}, [])
    u3 = w.transact({}, ["a"])
    u4 = w.transact({"b": "x"}, [])
    r = PythonDoc()
    sv_empty = r.state_vector()
    assert r.apply_update(u4) == {}
    assert r.apply_update(u3) == {}
    assert r.apply_update(u2) == {}
    assert r.state_vector() == sv_empty  # nothing integrated yet
    assert r.apply_update(u1) == {"b": "x"}
    assert r.items() == [("b", "x")]
    assert decode_state_vector(r.state_vector()) == decode_state_vector(w.state_vector())


def test_pending_delete_set_applies_when_insert_arrives() -> None:
    a, b, c = PythonDoc(), PythonDoc(), PythonDoc()
    ua = a.transact({"k": "1"}, [])
    b.apply_update(ua)
    ub = b.transact({}, ["k"])
    assert c.apply_update(ub) == {}  # deletes an item c does not have yet
    assert c.apply_update(ua) == {}  # arrives already deleted: no visible change
    assert c.items() == []


def test_encode_diff_against_state_vectors() -> None:
    a, b = PythonDoc(), PythonDoc()
    a.transact({"x": "1"}, [])
    b.apply_update(a.encode_diff(b.state_vector()))
    a.transact({"y": "2"}, [])
    diff = a.encode_diff(b.state_vector())
    full = a.encode_diff(b"\x00")
    assert len(diff) < len(full)
    assert b.apply_update(diff) == {"y": "2"}
    assert a.encode_diff(a.state_vector())[:1] == b"\x00"  # no structs, just the delete set
    with pytest.raises(CorruptUpdate):
        a.encode_diff(b"\x01\x05")
    with pytest.raises(CorruptUpdate):
        a.encode_diff(b"")


def test_encode_diff_offset_inside_a_multi_clock_item() -> None:
    """A diff starting in the middle of a merged (multi-clock) item is written with an offset."""
    # Client 7: one GC-ed map item of length 3 at clock 0..2 (as a merged update would carry),
    # then a string at clock 3 whose origin is (7, 2).
    buf = bytearray([1, 2])
    write_var_uint(buf, 7)
    buf += b"\x00"
    buf += b"\x21\x01\x07mpstore\x01k\x03"  # deleted content, len 3, key k
    buf += b"\xa8\x07\x02\x01\x77\x01v"  # origin (7,2), Any ["v"]
    buf += b"\x00"
    doc = PythonDoc()
    assert doc.apply_update(bytes(buf)) == {"k": "v"}
    part = doc.encode_diff(b"\x01\x07\x02")  # they have clocks 0, 1
    other = PythonDoc()
    with pytest.raises(CorruptUpdate):
        decode_update(part[:-1])
    other.apply_update(doc.encode_diff(b"\x00"))
    assert other.items() == [("k", "v")]
    refs, _ = decode_update(part)
    assert [(s.clock, s.length) for s in refs[7]] == [(2, 1), (3, 1)]


def test_client_id_collision_moves_to_a_fresh_id() -> None:
    a = PythonDoc(client_id=42)
    b = PythonDoc(client_id=42)
    a.transact({"x": "1"}, [])
    b.apply_update(a.encode_diff(b"\x00"))
    assert b.client_id != 42
    b.transact({"y": "2"}, [])
    a.apply_update(b.encode_diff(a.state_vector()))
    assert sorted(a.items()) == sorted(b.items()) == [("x", "1"), ("y", "2")]


def test_snapshot_roundtrip_many_keys() -> None:
    a = PythonDoc()
    for i in range(0, 2000, 100):
        a.transact({f"k{j}": str(j) for j in range(i, i + 100)}, [])
    a.transact({"k5": "five"}, ["k7"])
    b = PythonDoc()
    changes = b.apply_update(a.encode_diff(b"\x00"))
    assert len(changes) == 1999
    assert sorted(b.items()) == sorted(a.items())


# -- lib0 ------------------------------------------------------------------------------------


@given(st.integers(0, 2**64 - 1))
def test_var_uint_roundtrip(n: int) -> None:
    buf = bytearray()
    write_var_uint(buf, n)
    assert Reader(bytes(buf)).read_var_uint() == n
    assert encode_var_uint(n) == bytes(buf)
    assert decode_var_uint(bytes(buf) + b"\xff") == (n, len(buf))


@given(st.integers(-(2**63) + 1, 2**63 - 1))
def test_var_int_roundtrip(n: int) -> None:
    buf = bytearray()
    write_var_int(buf, n)
    assert Reader(bytes(buf)).read_var_int() == n


any_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.text(),
        st.integers(-(2**63) + 1, 2**63 - 1),
        st.floats(allow_nan=False),
        st.binary(max_size=8),
        st.just(UNDEFINED),
        st.integers(-(2**63), 2**63 - 1).map(BigInt),
        st.binary(min_size=4, max_size=4).map(Float32),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200)
@given(any_values)
def test_any_roundtrip(value: object) -> None:
    buf = bytearray()
    write_any(buf, value)  # type: ignore[arg-type]
    r = Reader(bytes(buf))
    assert r.read_any() == value
    assert r.remaining() == 0


def test_any_known_bytes() -> None:
    # bytes as lib0 writes them (tags from the Yjs value table)
    assert Reader(b"\x7d\x03").read_any() == 3
    assert Reader(b"\x7d\x43").read_any() == -3
    assert Reader(b"\x7b\x3f\xb9\x99\x99\x99\x99\x99\x9a").read_any() == 0.1
    assert Reader(b"\x7c\x40\x40\x00\x00").read_any() == Float32(b"\x40\x40\x00\x00")
    assert Float32(b"\x40\x40\x00\x00").value == 3.0
    assert Reader(b"\x7a\x00\x20\x00\x00\x00\x00\x00\x01").read_any() == BigInt(2**53 + 1)
    assert Reader(b"\x76\x01\x01a\x75\x02\x78\x7e").read_any() == {"a": [True, None]}
    assert Reader(b"\x74\x02ab").read_any() == b"ab"


# -- sync messages -----------------------------------------------------------------------------


def test_sync_messages_roundtrip_and_bytes() -> None:
    assert encode_sync_step1(b"\x00") == b"\x00\x00\x01\x00"
    assert encode_update(b"\x00\x00") == b"\x00\x02\x02\x00\x00"
    big = bytes(300)
    msg = encode_sync_step2(big)
    assert msg[:4] == b"\x00\x01\xac\x02"
    assert decode_message(msg) == (SYNC_STEP2, big)
    assert decode_message(encode_sync_step1(b"\x01\x02\x03")).kind == SYNC_STEP1
    assert decode_message(encode_update(b"xy")) == (SYNC_UPDATE, b"xy")


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x00\x00\x02\x00",  # payload shorter than announced
        b"\x00\x00\x01\x00\x00",  # trailing byte
        b"\x01\x00\x01\x00",  # awareness, not sync
        b"\x00\x03\x01\x00",  # unknown sync type
        b"\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",  # var-uint too long
    ],
)
def test_sync_message_rejects(bad: bytes) -> None:
    with pytest.raises(CorruptUpdate):
        decode_message(bad)


def test_many_updates_in_reverse_order() -> None:
    """Thousands of updates arriving newest first wait in pending, then integrate at once."""
    import time

    w = PythonDoc()
    updates = [w.transact({f"k{i % 50}": str(i)}, ["k0"] if i % 7 == 0 else []) for i in range(3000)]
    r = PythonDoc()
    start = time.monotonic()
    for u in reversed(updates[1:]):
        assert r.apply_update(u) == {}
    r.apply_update(updates[0])
    assert time.monotonic() - start < 10
    assert sorted(r.items()) == sorted(w.items())
    assert r.state_vector() == w.state_vector()


def test_empty_update_and_bytes_like_input() -> None:
    a, b = PythonDoc(), PythonDoc()
    assert b.apply_update(b"\x00\x00") == {}
    assert b.state_vector() == b"\x00"
    u = a.transact({"k": "v"}, [])
    assert b.apply_update(bytearray(u)) == {"k": "v"}
    assert b.apply_update(memoryview(u)) == {}
    with pytest.raises(CorruptUpdate):
        b.apply_update("not bytes")  # type: ignore[arg-type]


def test_non_string_root_values_are_hidden_but_kept() -> None:
    """A foreign Any value (here the integer 3) under a root key is not a str: reported absent."""
    buf = bytearray(b"\x01\x01")
    write_var_uint(buf, 99)
    buf += b"\x00\x28\x01\x07mpstore\x01n\x01\x7d\x03\x00"
    doc = PythonDoc()
    assert doc.apply_update(bytes(buf)) == {}
    assert doc.get("n") is None
    assert doc.items() == []
    other = PythonDoc()
    other.apply_update(doc.encode_diff(b"\x00"))
    assert other.encode_diff(b"\x00") == doc.encode_diff(b"\x00")
    assert doc.transact({"n": "text"}, []) and doc.get("n") == "text"
