"""JavaScript Yjs as the oracle for both engines: random schedules with duplicated, reordered,
gapped and merged delivery; y-protocols frames byte for byte; foreign values relayed bit-exact."""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import struct
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpstore import _syncproto
from mpstore.engines import load_engine
from mpstore.engines._python._update import decode_state_vector
from mpstore.engines.base import EngineDoc

from .oracle import JsDoc, YjsOracle

KEYS = ["a", "b", "c", "dé"]
VALUES = st.text(alphabet="xyz🎲", max_size=3)

_ID_HOOKS = []
for _module in ("mpstore.engines._pycrdt", "mpstore.engines._python._doc"):
    with contextlib.suppress(ImportError):
        _ID_HOOKS.append(importlib.import_module(_module))


def _engines() -> list[str]:
    out = ["python"]
    try:
        load_engine("pycrdt")
    except Exception:
        pass
    else:
        out.append("pycrdt")
    return out


ENGINES = _engines()


@contextlib.contextmanager
def seeded_ids(seed: int) -> Iterator[random.Random]:
    """Client ids drawn from ``seed`` in every engine, so a failing example replays the same."""
    rng = random.Random(seed)
    with contextlib.ExitStack() as stack:
        for module in _ID_HOOKS:
            stack.enter_context(
                mock.patch.object(module, "_fresh_client_id", lambda: rng.getrandbits(32) or 1)
            )
        yield rng


def assert_matches_yjs(items: dict[str, str], twin: JsDoc, where: str, kind: str) -> None:
    """What a replica shows equals what its Yjs twin shows; while Yjs holds pending structs,
    ours may still show entries whose deletion waits with its update (Yjs applies it at once):
    every entry Yjs shows is shown the same, and nothing else differs."""
    theirs = dict(twin.items())
    if twin.pending():
        common = {k: v for k, v in items.items() if k in theirs}
        assert common == theirs, f"{where}: {kind} shows other entries than Yjs"
    else:
        assert items == theirs, f"{where}: {kind} shows other entries than Yjs"


class Replica:
    """A replica under test (pycrdt or pure) and its twin in JavaScript Yjs fed the same bytes."""

    def __init__(self, yjs: YjsOracle, kind: str, rng: random.Random) -> None:
        self.kind = kind
        self.doc: EngineDoc = (
            yjs.doc(rng.getrandbits(32) or 1) if kind == "js" else load_engine(kind).new_doc()
        )
        self.twin: JsDoc | None = None if kind == "js" else yjs.doc(self.doc.client_id)
        self.view: dict[str, str] = {}

    def transact(self, sets: dict[str, str], deletes: list[str]) -> bytes:
        update = self.doc.transact(sets, deletes)
        if update and self.twin is not None:
            self.twin.apply_update(update)
        for key in deletes:
            self.view.pop(key, None)
        self.view.update(sets)
        return update

    def apply(self, update: bytes) -> None:
        for key, value in self.doc.apply_update(update).items():
            if value is None:
                self.view.pop(key, None)
            else:
                self.view[key] = value
        if self.twin is not None:
            self.twin.apply_update(update)

    def check(self, where: str) -> None:
        """What it shows and its state vector equal its JS twin's; the change events add up."""
        items = dict(self.doc.items())
        assert self.view == items, f"{where}: {self.kind} reported changes that do not add up"
        if self.twin is not None:
            assert_matches_yjs(items, self.twin, where, self.kind)
            assert decode_state_vector(self.doc.state_vector()) == decode_state_vector(
                self.twin.state_vector()
            ), f"{where}: {self.kind} state vector differs from Yjs"

    def close(self) -> None:
        for d in (self.doc, self.twin):
            if isinstance(d, JsDoc):
                d.close()


op_strategy = st.one_of(
    st.tuples(
        st.just("tx"),
        st.integers(0, 7),
        st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3),
        st.lists(st.sampled_from(KEYS), max_size=2),
    ),
    # deliver one queued update (any of them: reordering), maybe keeping it queued (duplicate)
    st.tuples(st.just("deliver"), st.integers(0, 7), st.integers(0, 50), st.booleans()),
    # lose one queued update (a full sync repairs it at the end)
    st.tuples(st.just("drop"), st.integers(0, 7), st.integers(0, 50)),
    # several queued updates merged by Y.mergeUpdates, delivered as one
    st.tuples(st.just("merged"), st.integers(0, 7), st.integers(1, 4)),
    # j applies i's diff against j's state vector (a SyncStep2: relays what i holds pending)
    st.tuples(st.just("sync"), st.integers(0, 7), st.integers(0, 7)),
)


def run_schedule(yjs: YjsOracle, kinds: list[str], ops: list[tuple[Any, ...]], rng: random.Random) -> None:
    replicas = [Replica(yjs, kind, rng) for kind in kinds]
    try:
        n = len(replicas)
        inbox: list[list[bytes]] = [[] for _ in range(n)]
        for step, op in enumerate(ops):
            where = f"op {step} {op[0]}"
            if op[0] == "tx":
                i = op[1] % n
                update = replicas[i].transact(op[2], op[3])
                if update:
                    for j in range(n):
                        if j != i:
                            inbox[j].append(update)
                replicas[i].check(where)
            elif op[0] in ("deliver", "drop"):
                j = op[1] % n
                if inbox[j]:
                    k = op[2] % len(inbox[j])
                    update = inbox[j][k] if op[0] == "deliver" and op[3] else inbox[j].pop(k)
                    if op[0] == "deliver":
                        replicas[j].apply(update)
                        replicas[j].check(where)
            elif op[0] == "merged":
                j = op[1] % n
                batch, inbox[j] = inbox[j][: op[2]], inbox[j][op[2] :]
                if batch:
                    replicas[j].apply(yjs.merge(batch))
                    replicas[j].check(where)
            elif op[0] == "sync":
                i, j = op[1] % n, op[2] % n
                if i != j:
                    replicas[j].apply(replicas[i].doc.encode_diff(replicas[j].doc.state_vector()))
                    replicas[j].check(where)
        # Heal: what is still queued arrives in a random order, then two rounds of full sync.
        for j in range(n):
            rng.shuffle(inbox[j])
            for update in inbox[j]:
                replicas[j].apply(update)
                replicas[j].check("final delivery")
        for _ in range(2):
            for j in range(n):
                for i in range(n):
                    if i != j:
                        replicas[j].apply(replicas[i].doc.encode_diff(replicas[j].doc.state_vector()))
                        replicas[j].check("final sync")
        first = replicas[0].doc
        for r in replicas[1:]:
            assert dict(r.doc.items()) == dict(first.items()), "replicas differ after healing"
            assert decode_state_vector(r.doc.state_vector()) == decode_state_vector(first.state_vector())
    finally:
        for r in replicas:
            r.close()


@pytest.mark.parametrize("engine", ENGINES)
@settings(
    max_examples=int(os.environ.get("YJS_EXAMPLES", "80")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    n=st.integers(2, 4),
    ops=st.lists(op_strategy, max_size=50),
    seed=st.integers(0, 2**32),
    mixed=st.booleans(),
)
def test_random_schedules_match_yjs(
    yjs: YjsOracle, engine: str, n: int, ops: list[tuple[Any, ...]], seed: int, mixed: bool
) -> None:
    """Every replica matches a Yjs twin fed the same bytes at every step, and all converge."""
    # mixed: with JS replicas, and for pycrdt also pure ones
    choices = (["js", "python", engine] if engine == "pycrdt" else ["js", engine]) if mixed else [engine]
    with seeded_ids(seed) as rng:
        kinds = [engine] + [rng.choice(choices) for _ in range(n - 1)]
        run_schedule(yjs, kinds, ops, rng)


# -- y-protocols frames --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    writes=st.lists(st.dictionaries(st.sampled_from(KEYS), VALUES, min_size=1), max_size=6),
    cut=st.integers(0, 6),
)
def test_syncproto_frames_are_byte_identical_with_y_protocols(
    yjs: YjsOracle, writes: list[dict[str, str]], cut: int
) -> None:
    a, b = yjs.doc(), yjs.doc()
    try:
        updates = [a.transact(w, []) for w in writes]
        for u in updates[:cut]:
            b.apply_update(u)
        sv = b.state_vector()
        assert _syncproto.encode_sync_step1(a.state_vector()) == a.step1()
        assert _syncproto.encode_sync_step2(a.encode_diff(sv)) == a.step2(sv)
        for u in updates:
            assert _syncproto.encode_update(u) == yjs.update_message(u)
        # y-protocols answers our step 1 with the step 2 we frame, and reads our step 2 and update
        kind, reply = a.read(_syncproto.encode_sync_step1(sv))
        assert kind == _syncproto.SYNC_STEP1
        assert _syncproto.decode_message(reply) == (_syncproto.SYNC_STEP2, a.encode_diff(sv))
        assert b.read(_syncproto.encode_sync_step2(a.encode_diff(sv))) == (_syncproto.SYNC_STEP2, b"")
        assert b.items() == a.items()
        for u in updates:
            assert b.read(_syncproto.encode_update(u)) == (_syncproto.SYNC_UPDATE, b"")
            assert _syncproto.decode_message(yjs.update_message(u)) == (_syncproto.SYNC_UPDATE, u)
    finally:
        a.close()
        b.close()


# -- foreign values pass through bit-exact -------------------------------------------------------


def _any(tag: int, payload: bytes = b"") -> bytes:
    return bytes([tag]) + payload


FOREIGN_VALUES = {
    "negative zero": _any(125, b"\x40"),
    "bigint": _any(122, struct.pack(">q", 5)),
    "negative bigint": _any(122, struct.pack(">q", -(2**62))),
    "float32": _any(124, struct.pack(">f", 1.5)),
    "float64": _any(123, struct.pack(">d", 0.1)),
    "undefined": _any(127),
    "object in its key order": bytes.fromhex("7602017a7d01016177036f6e65"),
    "array": bytes.fromhex("7503770178") + _any(123, struct.pack(">d", 0.1)) + _any(127),
    "bytes": _any(116, b"\x02\x00\xff"),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("gapped", [False, True], ids=["in order", "gapped"])
def test_foreign_values_are_relayed_bit_exact(yjs: YjsOracle, engine: str, gapped: bool) -> None:
    """A JS writer's values (-0, BigInt, float32, objects...) relayed through our engine reach
    another Yjs replica exactly as written, by update relay and by a snapshot (step 2)."""
    writer, reader = yjs.doc(), yjs.doc()
    try:
        updates = [writer.transact({"first": '"x"'}, [])]
        updates += [writer.set_any(key, raw) for key, raw in FOREIGN_VALUES.items()]
        relay = load_engine(engine).new_doc()
        for u in reversed(updates) if gapped else updates:
            relay.apply_update(u)
        reader.apply_update(relay.encode_diff(b"\x00"))
        got = reader.raw_entries()
        for key, raw in FOREIGN_VALUES.items():
            assert got.get(key) == raw, key
        assert reader.state_vector() == writer.state_vector()
    finally:
        writer.close()
        reader.close()
