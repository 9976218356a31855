"""Replication between managers pumped by hand: snapshots, diffs, frame counts, relays, repairs,
and hostile input."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_fakes import FakeNet, Node

from mpstore._docsync import (
    K_NEIGHBOURS,
    K_SYNC,
    K_UPDATE,
    Reader,
    encode_sync,
    encode_update,
    write_varuint,
)
from mpstore._errors import CorruptUpdate, EngineUnavailable
from mpstore.engines import ENGINE_NAMES, load_engine


def contents(nodes: list[Node], name: str = "s") -> list[dict[str, Any]]:
    return [n.store(name).to_dict() for n in nodes]


def assert_converged(nodes: list[Node], name: str = "s") -> dict[str, Any]:
    first, *rest = contents(nodes, name)
    for other in rest:
        assert other == first
    return first


def test_varuint_round_trip() -> None:
    for n in (0, 1, 127, 128, 300, 2**32, 2**53 - 1):
        out = bytearray()
        write_varuint(out, n)
        assert Reader(bytes(out)).read_var_uint() == n


def test_newcomer_receives_a_snapshot() -> None:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    s = a.store()
    s.update({f"k{i}": i for i in range(1000)})
    net.connect(a, b)
    net.pump()
    assert b.store().to_dict() == {f"k{i}": i for i in range(1000)}
    # The snapshot was one step 2 message; no per-key traffic.
    assert a.manager.docsync.stats.sent <= 4


def test_returning_peer_gets_only_the_difference() -> None:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    a.store().update({f"k{i}": "x" * 50 for i in range(2000)})
    net.connect(a, b)
    net.pump()
    net.disconnect(a, b)
    a.store()["new_a"] = 1
    b.store()["new_b"] = 2
    sizes: list[int] = []
    orig = a.host.send_sync

    def spy(peer: Any, payload: bytes) -> None:
        sizes.append(len(payload))
        orig(peer, payload)

    a.host.send_sync = spy  # type: ignore[method-assign]
    net.connect(a, b)
    net.pump()
    assert_converged([a, b])
    assert b.store()["new_a"] == 1 and a.store()["new_b"] == 2
    full = len(a.manager.docsync.doc("s").encode_diff(b"\x00"))
    assert full > 100_000
    assert max(sizes) < 200, sizes


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_one_edit_costs_n_minus_1_frames_in_a_full_mesh(n: int) -> None:
    net = FakeNet()
    nodes = [net.add(f"P{i}") for i in range(n)]
    for node in nodes:
        node.store()["hello"] = node.peer.display_name
    net.full_mesh(nodes)
    net.pump()
    assert_converged(nodes)
    for node in nodes:
        net.frames = 0
        node.store()["k"] = node.peer.display_name
        net.pump()
        assert net.frames == n - 1
        net.frames = 0
        with node.store().batch() as s:
            s["a"] = 1
            s["b"] = 2
            del s["k"]
        net.pump()
        assert net.frames == n - 1
    assert_converged(nodes)


def test_no_op_write_sends_nothing() -> None:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    a.store()["x"] = 1
    net.pump()
    net.frames = 0
    a.store().pop("absent", None)
    with a.store().batch():
        pass
    a.store().update({})
    net.pump()
    assert net.frames == 0


@pytest.mark.parametrize("shape", ["line", "star", "ring", "tree"])
def test_partial_meshes_converge(shape: str) -> None:
    net = FakeNet(seed=len(shape))
    nodes = [net.add(f"P{i}") for i in range(6)]
    edges = {
        "line": [(i, i + 1) for i in range(5)],
        "star": [(0, i) for i in range(1, 6)],
        "ring": [(i, (i + 1) % 6) for i in range(6)],
        "tree": [(0, 1), (0, 2), (1, 3), (1, 4), (2, 5)],
    }[shape]
    for i, j in edges:
        net.connect(nodes[i], nodes[j])
    for round_ in range(3):
        for node in nodes:
            node.store()[f"{node.peer.display_name}-{round_}"] = round_
            node.store()["shared"] = node.peer.display_name
        net.pump()
    final = assert_converged(nodes)
    assert len(final) == 6 * 3 + 1
    # Each edit crossed each link at most once per direction.
    per_edit = net.frames
    assert per_edit < 10_000


def test_line_relays_each_edit_exactly_along_the_line() -> None:
    net = FakeNet()
    nodes = [net.add(f"P{i}") for i in range(5)]
    for i in range(4):
        net.connect(nodes[i], nodes[i + 1])
    net.pump()
    net.frames = 0
    nodes[0].store()["x"] = 1
    net.pump()
    assert net.frames == 4
    assert_converged(nodes)


def test_lost_delivery_is_repaired_through_a_common_neighbour() -> None:
    net = FakeNet()
    a, b, c = net.add("A"), net.add("B"), net.add("C")
    net.full_mesh([a, b, c])
    net.pump()
    a.store()["x"] = "from A"  # queued to B and C
    # A-C dies with the update in flight; B skipped C, trusting A.
    del net.queues[(a.peer.id, c.peer.id)]
    net.queues[(a.peer.id, c.peer.id)] = __import__("collections").deque()
    net.disconnect(a, c)
    net.pump()
    assert c.store().get("x") == "from A"
    assert b.manager.docsync.stats.resyncs >= 1


def test_write_of_a_killed_peer_reaches_everyone_it_reached_one_of() -> None:
    net = FakeNet(3)
    a, b, c = (net.add(x) for x in "ABC")
    net.full_mesh([a, b, c])
    net.pump()
    a.store()["x"] = 1
    # Only A -> B is delivered; A dies. B skipped C (a neighbour of A) and must repair that.
    net.step(lambda ready: (a.peer.id, b.peer.id))
    net.kill(a)
    net.pump()
    assert_converged([b, c])
    assert c.store()["x"] == 1


def test_data_for_an_unopened_store_is_kept_and_relayed() -> None:
    net = FakeNet()
    a, b, c = net.add("A"), net.add("B"), net.add("C")
    net.connect(a, b)
    net.connect(b, c)
    a.store("scores")["ann"] = 3
    net.pump()
    assert "scores" not in {s.name for s in b.manager.stores()}
    assert c.store("scores").to_dict() == {"ann": 3}
    a.store("scores")["bob"] = 1
    net.pump()
    assert b.store("scores").to_dict() == {"ann": 3, "bob": 1}


def test_stores_are_independent() -> None:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    a.store("one")["k"] = 1
    b.store("two")["k"] = 2
    net.pump()
    assert b.store("one").to_dict() == {"k": 1}
    assert a.store("two").to_dict() == {"k": 2}


def _inject(net: FakeNet, src: Node, dst: Node, payload: bytes) -> None:
    dst.core(lambda: dst.manager.message(src.peer, payload))


def test_hostile_messages_are_rejected_and_the_store_stays_intact(
    caplog: pytest.LogCaptureFixture,
) -> None:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    a.store()["x"] = 1
    net.pump()
    before = b.store().to_dict()
    good = a.manager.docsync.doc("s").encode_diff(b"\x00")
    hostile = [
        b"",
        b"\x01",
        b"\x01\x00",
        bytes([1, K_SYNC]) + b"\x01s\x00\x01\xff\xff",  # step 2 with a length past the end
        encode_sync(K_SYNC, "s", 1, b"\x05\x01\x02garbage"),
        encode_sync(K_SYNC, "s", 0, b"\xff\xff\xff"),  # bad state vector
        encode_update("someone", 1, "s", good[: len(good) // 2]),
        encode_update("someone", 2, "s", b"\x00" * 50),
        bytes([1, K_UPDATE]) + b"\xff" * 20,
        bytes([1, K_NEIGHBOURS]) + b"\xff\xff\xff\x0f",
        encode_sync(K_SYNC, "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"), 1, b""),
        bytes([9, 9, 9]),  # a future version: ignored
        bytes([1, 77, 1, 2]),  # an unknown kind: ignored
    ]
    with caplog.at_level(logging.WARNING, logger="mpstore.store"):
        for payload in hostile:
            _inject(net, a, b, payload)
    assert b.store().to_dict() == before
    assert b.manager.docsync.stats.rejected >= 8
    assert any("rejected" in r.message or "malformed" in r.message for r in caplog.records)
    # Still working both ways.
    b.store()["y"] = 2
    a.store()["z"] = 3
    net.pump()
    assert_converged([a, b])


def test_mutated_updates_never_break_a_replica() -> None:
    import random

    rng = random.Random(5)
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    for i in range(30):
        a.store()[f"k{i}"] = [i, "v" * i]
    net.pump()
    good = a.manager.docsync.doc("s").encode_diff(b"\x00")
    for i in range(300):
        bad = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        _inject(net, a, b, encode_update("mutant", 1000 + i, "s", bytes(bad)))
    # Whatever got in is a valid CRDT update; the store is readable and still replicates.
    b.store().to_dict()
    b.store()["after"] = True
    net.pump()
    assert a.store()["after"] is True


def test_undecodable_foreign_values_are_hidden(caplog: pytest.LogCaptureFixture) -> None:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    # A writes raw strings that are not our encoding, below the SharedDict.
    a.core(lambda: a.manager.docsync.transact("s", {"bad": "{not json", "ok": "1"}, []))
    a.core(lambda: a.manager._flush())
    with caplog.at_level(logging.WARNING, logger="mpstore.store"):
        net.pump()
        assert b.store().to_dict() == {"ok": 1}
    assert any("undecodable" in r.message for r in caplog.records)


def test_pycrdt_panics_become_corrupt_update(monkeypatch: pytest.MonkeyPatch) -> None:
    pycrdt = pytest.importorskip("pycrdt")
    try:
        doc: Any = pycrdt.Doc()
        doc["m"] = pycrdt.Map()
        doc["m"]["x"] = 2**64
    except BaseException as exc:  # the native panic
        panic_type = type(exc)
    else:  # pragma: no cover
        pytest.skip("this pycrdt does not panic on big ints")
    assert not issubclass(panic_type, Exception)
    engine_doc: Any = load_engine("pycrdt").new_doc()
    engine_doc.transact({"x": "1"}, [])

    def boom(update: bytes) -> None:
        raise panic_type("simulated panic")

    # a real update (an empty one never reaches yrs: the causal gate has nothing to hand it)
    update = load_engine("pycrdt").new_doc().transact({"y": "2"}, [])
    monkeypatch.setattr(engine_doc._doc, "apply_update", boom)
    with pytest.raises(CorruptUpdate, match="panic"):
        engine_doc.apply_update(update)
    assert engine_doc.items() == [("x", "1")]


def test_big_snapshot_for_a_late_joiner() -> None:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    n = 100_000
    a.store().update({f"key{i}": i for i in range(n)})
    net.connect(a, b)
    net.pump()
    assert len(b.store()) == n
    assert b.store()["key99999"] == 99_999


def test_fast_writers_are_bundled_under_the_peer_rate_limit() -> None:
    from mpstore._outbox import STORE_RATE_SHARE

    net = FakeNet()
    net.rate = 1000.0  # every peer advertises 1000 messages/s
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    net.pump()
    n = int(net.rate * STORE_RATE_SHARE) * 3
    s = a.store()
    for i in range(n):
        s[f"k{i}"] = i
    assert net.frames < n  # the rest waits for the pacer
    net.pump()
    assert net.frames < n / 2
    assert b.store().to_dict() == s.to_dict()
    assert a.manager.docsync.stats.by_kind[K_UPDATE] == n


def test_big_messages_go_in_parts() -> None:
    from mpstore._docsync import PART_SIZE

    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    blob = bytes(range(256)) * (PART_SIZE // 64)  # 4 MiB, about 5.5 MiB encoded
    a.store()["blob"] = blob
    net.connect(a, b)
    net.pump()
    assert b.store()["blob"] == blob
    net.frames = 0
    a.store()["blob2"] = blob  # a live update that big is split too
    net.pump()
    assert net.frames >= 5
    assert b.store()["blob2"] == blob


def test_hostile_parts_and_bundles_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    from mpstore._docsync import K_BUNDLE, K_PART, encode_bundle

    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    a.store()["x"] = 1
    net.pump()

    def part(msg_id: int, index: int, count: int, data: bytes) -> bytes:
        out = bytearray((1, K_PART))
        for v in (msg_id, index, count):
            write_varuint(out, v)
        write_varuint(out, len(data))
        return bytes(out + data)

    hostile = [
        part(1, 1, 2, b"x"),  # out of sequence
        part(2, 0, 10**9, b"x"),  # over the size limit
        part(3, 0, 2, b"x") + b"junk",
        part(4, 0, 1, part(5, 0, 1, b"")),  # a part holding a part
        bytes((1, K_BUNDLE, 5, 1)),  # truncated bundle
        encode_bundle([encode_bundle([b"\x01\x00"])]),  # nested bundle
        bytes((1, K_BUNDLE)) + b"\xff\xff\xff\xff\x0f",
    ]
    with caplog.at_level(logging.WARNING, logger="mpstore.store"):
        for payload in hostile:
            _inject(net, a, b, payload)
    assert b.store().to_dict() == {"x": 1}
    a.store()["y"] = 2
    net.pump()
    assert b.store().to_dict() == {"x": 1, "y": 2}


def _valid_messages() -> list[bytes]:
    """Real store messages of every kind, captured from two managers syncing."""
    net = FakeNet(9)
    a, b = net.add("A"), net.add("B")
    a.store()["x"] = [1, "two", b"3"]
    captured: list[bytes] = []
    orig = net.enqueue

    def spy(src: str, dst: str, payload: bytes) -> None:
        captured.append(payload)
        orig(src, dst, payload)

    net.enqueue = spy  # type: ignore[method-assign]
    net.connect(a, b)
    net.pump()
    a.store()["y"] = {"k": 2.5}
    del a.store()["x"]
    net.pump()
    return captured


VALID = _valid_messages()
ENGINES = []
for _name in ENGINE_NAMES:
    with contextlib.suppress(EngineUnavailable):
        ENGINES.append(load_engine(_name))


@settings(max_examples=int(os.environ.get("STORE_FUZZ_EXAMPLES", "300")), deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.tuples(
            st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)))
        ).map(lambda t: _mutate(*t)),
        st.sampled_from(VALID).flatmap(lambda m: st.integers(0, len(m)).map(lambda n: m[:n])),
    )
)
def test_any_bytes_from_a_peer_never_raise_nor_corrupt(payload: bytes) -> None:
    from mpstore._docsync import DocSync

    for engine in ENGINES:
        _fuzz_once(DocSync("me", engine.new_doc), payload)


def _fuzz_once(sync: Any, payload: bytes) -> None:
    sync.peer_added("peer")
    sync.transact("s", {"mine": '"kept"'}, [])
    sync.receive("peer", payload)  # must not raise
    assert sync.docs["s"].get("mine") == '"kept"'
    sync.transact("s", {"after": "1"}, [])
    assert sync.docs["s"].get("after") == "1"


def _mutate(message: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(message)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


def test_a_corrupt_copy_of_an_update_does_not_block_the_genuine_one() -> None:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    net.pump()
    writer = load_engine().new_doc()
    genuine = writer.transact({"k": '"v"'}, [])
    # Someone sends b a corrupt update under the id ("someone", 1) first ...
    _inject(net, a, b, encode_update("someone", 1, "s", genuine[: len(genuine) // 2]))
    assert "k" not in b.store()
    # ... then the genuine update with that id arrives by another path: it is applied.
    _inject(net, a, b, encode_update("someone", 1, "s", genuine))
    assert b.store()["k"] == "v"
