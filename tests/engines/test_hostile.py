"""Hostile input: truncated, mutated and random bytes are rejected cleanly, quickly, in bounded
memory, and a rejected update leaves the document exactly as it was."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpstore import CorruptUpdate
from mpstore.engines._python import PythonDoc
from mpstore.engines._python._lib0 import write_var_string, write_var_uint

TIME_LIMIT = 2.0


def _sample_updates() -> list[bytes]:
    """Real updates exercising sets, overwrites, deletes and multi-client delete sets."""
    a, b = PythonDoc(client_id=1), PythonDoc(client_id=300)
    out = [a.transact({"k": "v", "é": "ü🎲"}, [])]
    b.apply_update(out[0])
    out.append(b.transact({"k": "w", "n": ""}, ["é"]))
    a.apply_update(out[1])
    out.append(a.transact({"z": "x" * 40}, ["k", "n"]))
    out.append(a.encode_diff(b"\x00"))
    return out


SAMPLES = _sample_updates()


def _seeded_doc() -> PythonDoc:
    doc = PythonDoc(client_id=7)
    doc.transact({"keep": "me", "other": "x"}, [])
    doc.transact({"other": "y"}, ["keep"])
    doc.transact({"keep": "again"}, [])
    return doc


def _fingerprint(doc: PythonDoc) -> tuple[bytes, bytes, list[tuple[str, str]], int]:
    return (
        doc.state_vector(),
        doc.encode_diff(b"\x00"),
        sorted(doc.items()),
        doc.client_id,
    )


def _apply_bounded(doc: PythonDoc, data: bytes) -> bool:
    """Apply; True if accepted. Rejection must be CorruptUpdate with the doc unchanged."""
    before = _fingerprint(doc)
    start = time.monotonic()
    try:
        doc.apply_update(data)
    except CorruptUpdate:
        assert _fingerprint(doc) == before
        accepted = False
    else:
        accepted = True
    assert time.monotonic() - start < TIME_LIMIT
    return accepted


def _check_consistent(doc: PythonDoc) -> None:
    """An accepted (odd) update leaves a doc whose full state re-applies to the same content."""
    copy = PythonDoc()
    copy.apply_update(doc.encode_diff(b"\x00"))
    assert sorted(copy.items()) == sorted(doc.items())
    again = PythonDoc()
    again.apply_update(copy.encode_diff(b"\x00"))
    assert sorted(again.items()) == sorted(doc.items())


@pytest.mark.parametrize("sample", range(len(SAMPLES)))
def test_every_truncation_is_rejected(sample: int) -> None:
    update = SAMPLES[sample]
    doc = _seeded_doc()
    for cut in range(len(update)):
        assert not _apply_bounded(doc, update[:cut])


def test_trailing_garbage_is_rejected() -> None:
    doc = _seeded_doc()
    for update in SAMPLES:
        assert not _apply_bounded(doc, update + b"\x00")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(SAMPLES),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete", "set"]),
            st.integers(0, 10**6),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_updates(sample: bytes, edits: list[tuple[str, int, int]]) -> None:
    data = bytearray(sample)
    for kind, pos, byte in edits:
        if not data:
            break
        i = pos % len(data)
        if kind == "flip":
            data[i] ^= 1 << (byte % 8)
        elif kind == "insert":
            data.insert(i, byte)
        elif kind == "delete":
            del data[i]
        else:
            data[i] = byte
    doc = _seeded_doc()
    if _apply_bounded(doc, bytes(data)):
        _check_consistent(doc)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    doc = _seeded_doc()
    if _apply_bounded(doc, data):
        _check_consistent(doc)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_random_state_vectors(data: bytes) -> None:
    doc = _seeded_doc()
    try:
        diff = doc.encode_diff(data)
    except CorruptUpdate:
        return
    PythonDoc().apply_update(diff)


def _update(structs_by_client: list[tuple[int, int, list[bytes]]], ds: bytes = b"\x00") -> bytes:
    buf = bytearray()
    write_var_uint(buf, len(structs_by_client))
    for client, clock, structs in structs_by_client:
        write_var_uint(buf, len(structs))
        write_var_uint(buf, client)
        write_var_uint(buf, clock)
        for s in structs:
            buf += s
    return bytes(buf) + ds


def _root_item(key: str, value: str) -> bytes:
    buf = bytearray(b"\x28\x01")
    write_var_string(buf, "mpstore")
    write_var_string(buf, key)
    buf += b"\x01\x77"
    write_var_string(buf, value)
    return bytes(buf)


def _after(origin: tuple[int, int], value: str) -> bytes:
    buf = bytearray(b"\xa8")
    write_var_uint(buf, origin[0])
    write_var_uint(buf, origin[1])
    buf += b"\x01\x77"
    write_var_string(buf, value)
    return bytes(buf)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f",  # 2**63 clients announced
        _update([(1, 0, [])])[:-1] + b"\xff\xff\xff\xff\x0f",  # 2**32 delete-set clients
        _update([(1, 0, [_after((1, 0), "self")])]),  # depends on its own clock
        _update([(1, 0, [_after((1, 5), "future")])]),  # depends on a later clock of itself
        _update([(1, 0, [_root_item("a", "1")]), (1, 1, [_root_item("b", "2")])]),  # client twice
        _update([(1, 0xFFFFFFFF, [_root_item("a", "1")])]),  # clock beyond u32
        _update([(1, 0, [b"\x28\x02\x07mpstore\x01a\x01\x77\x01x"])]),  # bad parent info
        _update([(1, 0, [b"\x0b\x01\x07mpstore\x00"])]),  # unknown content ref 11
        _update([(1, 0, [b"\x07\x01\x07mpstore\x07"])]),  # weak-link type ref: unsupported
        _update([(1, 0, [b"\x08\x01\x07mpstore\x01\x73"])]),  # unknown Any tag
        _update([(1, 0, [b"\x08\x01\x07mpstore\x01\x77\x02\xff\xfe"])]),  # invalid UTF-8
        _update([(1, 0, [b"\x08\x01\x07mpstore\x01" + b"\x75\x01" * 1000 + b"\x7e"])]),  # deep
        _update([(1, 0, [b"\x08\x01\x07mpstore\xff\xff\xff\x7f"])]),  # count beyond input
        _update([], b"\x01\x01\x01\xff\xff\xff\xff\x0f\x05"),  # deleted range beyond u32
    ],
)
def test_specific_hostile_updates_rejected(data: bytes) -> None:
    doc = _seeded_doc()
    assert not _apply_bounded(doc, data)


def test_dependency_cycle_waits_without_hanging() -> None:
    """A struct of client 1 after client 2's, and client 2's after client 1's: both wait."""
    data = _update([(1, 0, [_after((2, 0), "a")]), (2, 0, [_after((1, 0), "b")])])
    doc = _seeded_doc()
    assert _apply_bounded(doc, data)
    assert doc.apply_update(data) == {}
    assert sorted(doc.items()) == [("keep", "again"), ("other", "y")]
    _check_consistent(doc)


def test_huge_overlapping_delete_ranges_are_fast() -> None:
    doc = PythonDoc(client_id=3)
    for i in range(20):
        doc.transact({f"k{j}": "v" for j in range(i * 100, i * 100 + 100)}, [])
    ds = bytearray(b"\x01\x03")
    write_var_uint(ds, 50_000)
    for _ in range(50_000):
        ds += b"\x00\xff\xff\xff\x0f"  # (0, 2**32-1) again and again
    start = time.monotonic()
    changes = doc.apply_update(b"\x00" + bytes(ds))
    assert time.monotonic() - start < TIME_LIMIT
    assert len(changes) == 2000
    assert doc.items() == []


def test_memory_bounded_by_input_size() -> None:
    """Decoding an adversarial 100 kB update allocates at most a small multiple of its size."""
    count = bytearray()
    write_var_uint(count, 20_000)
    many_empty_arrays = _update(
        [(1, 0, [b"\x08\x01\x07mpstore\x01\x75" + bytes(count) + b"\x75\x00" * 20_000])]
    )
    big_claims = _update([(9, 0, [b"\x00\xff\xff\xff\x0f"] * 2)])  # GC structs claiming 2**32
    for data in (many_empty_arrays, big_claims, bytes(range(256)) * 400):
        doc = PythonDoc()
        tracemalloc.start()
        try:
            _apply_bounded(doc, data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 100 * len(data) + 1_000_000


def _struct_bytes(
    kind: int,
    origin: tuple[int, int] | None,
    right: tuple[int, int] | None,
    parent: str | tuple[int, int],
    sub: str | None,
    payload: str,
) -> bytes:
    refs = {0: 8, 1: 1, 2: 4, 3: 7, 4: 0}
    ref = refs[kind]
    if ref == 0:
        return b"\x00" + bytes([1 + len(payload) % 3])
    info = ref | (0x80 if origin else 0) | (0x40 if right else 0) | (0x20 if sub is not None else 0)
    buf = bytearray([info])
    for id_ in (origin, right):
        if id_:
            write_var_uint(buf, id_[0])
            write_var_uint(buf, id_[1])
    if not origin and not right:
        if isinstance(parent, str):
            buf.append(1)
            write_var_string(buf, parent)
        else:
            buf.append(0)
            write_var_uint(buf, parent[0])
            write_var_uint(buf, parent[1])
        if sub is not None:
            write_var_string(buf, sub)
    if ref == 8:
        buf += b"\x01\x77"
        write_var_string(buf, payload)
    elif ref == 1:
        buf.append(1 + len(payload) % 3)
    elif ref == 4:
        write_var_string(buf, payload or "t")
    else:
        buf.append(len(payload) % 2)  # array or map
    return bytes(buf)


ids = st.tuples(st.integers(1, 3), st.integers(0, 8))
struct_strategy = st.tuples(
    st.integers(0, 4),
    st.none() | ids,
    st.none() | ids,
    st.sampled_from(["mpstore", "other"]) | ids,
    st.none() | st.sampled_from(["a", "b"]),
    st.text(alphabet="xy🎲", max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    updates=st.lists(
        st.lists(
            st.tuples(st.integers(1, 3), st.integers(0, 6), st.lists(struct_strategy, max_size=4)),
            max_size=3,
            unique_by=lambda t: t[0],
        ),
        min_size=1,
        max_size=4,
    ),
    deletes=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 9), st.integers(1, 4)), max_size=3),
)
def test_wellformed_but_arbitrary_structs(updates, deletes) -> None:  # type: ignore[no-untyped-def]
    """Well-formed updates with arbitrary origins, parents and contents never crash the engine."""
    doc = _seeded_doc()
    for blocks in updates:
        ds = bytearray()
        write_var_uint(ds, len(deletes))
        for client, clock, length in deletes:
            ds += bytes([client, 1, clock, length])
        data = _update(
            [(c, clock, [_struct_bytes(*s) for s in structs]) for c, clock, structs in blocks],
            bytes(ds),
        )
        _apply_bounded(doc, data)
    _check_consistent(doc)
