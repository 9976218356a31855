"""The pure engine against pycrdt (the oracle): mixed replicas, random schedules, byte interop."""

from __future__ import annotations

import pytest

pycrdt = pytest.importorskip("pycrdt")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mpstore import CorruptUpdate  # noqa: E402
from mpstore._syncproto import (  # noqa: E402
    SYNC_STEP1,
    SYNC_STEP2,
    SYNC_UPDATE,
    decode_message,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)
from mpstore.engines._python import PythonDoc  # noqa: E402
from mpstore.engines.base import EngineDoc  # noqa: E402

from .helpers import PycrdtDoc, decode_sv  # noqa: E402

KEYS = ["a", "b", "c", "dé", "🎲"]
VALUES = st.text(max_size=6)


def new_doc(kind: str) -> EngineDoc:
    return PythonDoc() if kind == "python" else PycrdtDoc()


def pycrdt_view(update: bytes) -> dict[str, object]:
    doc = pycrdt.Doc()
    doc.apply_update(update)
    return dict(doc.get("mpstore", type=pycrdt.Map).to_py() or {})


op_strategy = st.one_of(
    st.tuples(
        st.just("tx"),
        st.integers(0, 7),
        st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3),
        st.lists(st.sampled_from(KEYS), max_size=2),
    ),
    st.tuples(st.just("deliver"), st.integers(0, 7), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("merged"), st.integers(0, 7), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("sync"), st.integers(0, 7), st.integers(0, 7), st.booleans()),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    kinds=st.lists(st.sampled_from(["python", "pycrdt"]), min_size=2, max_size=4),
    ops=st.lists(op_strategy, max_size=60),
    final_order=st.randoms(use_true_random=False),
)
def test_random_schedules_converge(kinds: list[str], ops: list[tuple], final_order) -> None:  # type: ignore[no-untyped-def, type-arg]
    """Concurrent edits, late/out-of-order/duplicated/merged delivery: every replica converges."""
    docs = [new_doc(k) for k in kinds]
    n = len(docs)
    inbox: list[list[bytes]] = [[] for _ in range(n)]
    views: list[dict[str, str]] = [{} for _ in range(n)]
    produced: list[tuple[int, bytes]] = []

    def apply(j: int, update: bytes) -> None:
        changes = docs[j].apply_update(update)
        for key, value in changes.items():
            if value is None:
                views[j].pop(key, None)
            else:
                views[j][key] = value

    for op in ops:
        if op[0] == "tx":
            i = op[1] % n
            sets, deletes = op[2], op[3]
            update = docs[i].transact(sets, deletes)
            had_any = any(k in views[i] for k in deletes)
            if sets or had_any:
                assert update, "a transaction that changed something returns an update"
            else:
                assert update == b""
            for key in deletes:
                views[i].pop(key, None)
            views[i].update(sets)
            if update:
                produced.append((i, update))
                for j in range(n):
                    if j != i:
                        inbox[j].append(update)
        elif op[0] == "deliver":
            j = op[1] % n
            if inbox[j]:
                k = op[2] % len(inbox[j])
                update = inbox[j][k] if op[3] else inbox[j].pop(k)  # keep it: delivered twice
                apply(j, update)
        elif op[0] == "merged":
            j = op[1] % n
            if inbox[j]:
                batch = inbox[j][-op[2] :] if op[3] else inbox[j][: op[2]]
                apply(j, pycrdt.merge_updates(*batch))
        else:
            i, j = op[1] % n, op[2] % n
            if i != j:
                apply(j, docs[i].encode_diff(docs[j].state_vector() if op[3] else b"\x00"))
        for j in range(n):
            assert dict(docs[j].items()) == views[j]

    for j in range(n):
        pending = list(inbox[j])
        final_order.shuffle(pending)
        for update in pending:
            apply(j, update)
    for i in range(n):
        for j in range(n):
            if i != j:
                apply(j, docs[i].encode_diff(docs[j].state_vector()))

    contents = [dict(d.items()) for d in docs]
    for j in range(n):
        assert contents[j] == views[j], "reported changes add up to the visible content"
        assert contents[j] == contents[0], f"replica {kinds[j]} diverged"
        assert decode_sv(docs[j].state_vector()) == decode_sv(docs[0].state_vector())
    # An oracle that saw every update, in production order, agrees.
    oracle = PycrdtDoc()
    for _, update in produced:
        oracle.apply_update(update)
    assert dict(oracle.items()) == contents[0]
    # Byte-level interop of the full state, both ways.
    for d in docs:
        full = d.encode_diff(b"\x00")
        assert pycrdt_view(full) == contents[0]
        fresh = PythonDoc()
        fresh.apply_update(full)
        assert dict(fresh.items()) == contents[0]


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3),
            st.lists(st.sampled_from(KEYS), max_size=2),
        ),
        max_size=15,
    )
)
def test_pure_state_read_by_pycrdt_and_back(ops: list[tuple[dict[str, str], list[str]]]) -> None:
    """Pure-encoded state applied by pycrdt gives pycrdt's own to_py; and the reverse."""
    pure = PythonDoc()
    ref = pycrdt.Doc()
    ref_map = ref.get("mpstore", type=pycrdt.Map)
    for sets, deletes in ops:
        pure.transact(sets, deletes)
        with ref.transaction():
            for k in deletes:
                if k in ref_map:
                    del ref_map[k]
            for k, v in sets.items():
                ref_map[k] = v
    expected = dict(ref_map.to_py() or {})
    assert dict(pure.items()) == expected
    assert pycrdt_view(pure.encode_diff(b"\x00")) == expected
    back = PythonDoc()
    back.apply_update(ref.get_update())
    assert dict(back.items()) == expected
    # And pycrdt reads the pure engine's re-encoding of pycrdt's own state.
    assert pycrdt_view(back.encode_diff(b"\x00")) == expected


def test_conflict_winner_matches_yjs_rule() -> None:
    """Concurrent writes to one key: the higher client id wins, on both engines."""
    for low_first in (True, False):
        low = PythonDoc(client_id=10)
        high = pycrdt.Doc(client_id=20)
        high_map = high.get("mpstore", type=pycrdt.Map)
        u_low = low.transact({"k": "low"}, [])
        high_map["k"] = "high"
        u_high = high.get_update()
        if low_first:
            high.apply_update(u_low)
            low.apply_update(u_high)
        else:
            low.apply_update(u_high)
            high.apply_update(u_low)
        assert low.get("k") == "high"
        assert high_map["k"] == "high"


def test_foreign_content_is_kept_and_reencoded() -> None:
    """Nested types, numbers, text, arrays and other roots from pycrdt survive a pure round trip."""
    src = pycrdt.Doc()
    m = src.get("mpstore", type=pycrdt.Map)
    other = src.get("other", type=pycrdt.Array)
    text = src.get("text", type=pycrdt.Text)
    with src.transaction():
        m["s"] = "str"
        m["n"] = 3
        m["f"] = 0.1
        m["b"] = b"\x00\x01"
        m["l"] = [1, "x", None, True, {"k": [2.5]}]
        m["nested"] = pycrdt.Map({"x": "y", "z": pycrdt.Array(["q"])})
        other.extend(["a", 1, pycrdt.Map({"deep": "v"})])
        text += "héllo 🎲 world"
    with src.transaction():
        text.insert(3, "INS")
        del text[0:2]
        other.insert(1, "mid")
        m["nested"]["x"] = "y2"
        del m["f"]
    expected = {
        "mpstore": m.to_py(),
        "other": other.to_py(),
        "text": str(text),
    }
    pure = PythonDoc()
    assert pure.apply_update(src.get_update()) == {"s": "str"}
    assert pure.items() == [("s", "str")]
    dst = pycrdt.Doc()
    dst.apply_update(pure.encode_diff(b"\x00"))
    got = {
        "mpstore": dst.get("mpstore", type=pycrdt.Map).to_py(),
        "other": dst.get("other", type=pycrdt.Array).to_py(),
        "text": str(dst.get("text", type=pycrdt.Text)),
    }
    assert got == expected
    assert decode_sv(pure.state_vector()) == decode_sv(src.get_state())
    # Deleting the nested map garbage-collects its children on both sides, consistently.
    del m["nested"]
    pure.apply_update(src.get_update(pure.state_vector()))
    dst2 = pycrdt.Doc()
    dst2.apply_update(pure.encode_diff(b"\x00"))
    assert dst2.get("mpstore", type=pycrdt.Map).to_py() == m.to_py()


def test_text_split_inside_items() -> None:
    """Concurrent text edits that split multi-unit items (with surrogate pairs) interoperate."""
    a = pycrdt.Doc(client_id=1)
    b = pycrdt.Doc(client_id=2)
    ta = a.get("t", type=pycrdt.Text)
    tb = b.get("t", type=pycrdt.Text)
    ta += "abc🎲def"
    b.apply_update(a.get_update())
    ta.insert(2, "X")
    tb.insert(5, "Y")
    del tb[0:1]
    pure = PythonDoc()
    pure.apply_update(b.get_update())  # b's edits first
    pure.apply_update(a.get_update(pure.state_vector()))
    a.apply_update(b.get_update(a.get_state()))
    out = pycrdt.Doc()
    out.apply_update(pure.encode_diff(b"\x00"))
    assert str(out.get("t", type=pycrdt.Text)) == str(ta)


def test_pending_structs_relayed_to_pycrdt() -> None:
    """Structs waiting for a dependency are kept, included in diffs, and resolve anywhere."""
    writer = PythonDoc()
    u1 = writer.transact({"a": "1"}, [])
    u2 = writer.transact({"a": "2", "b": "x"}, [])
    u3 = writer.transact({}, ["b"])
    relay = PythonDoc()
    assert relay.apply_update(u2) == {}
    assert relay.apply_update(u3) == {}
    assert relay.items() == []
    late = pycrdt.Doc()
    late.apply_update(relay.encode_diff(b"\x00"))  # carries the pending structs and deletions
    late.apply_update(u1)
    assert late.get("mpstore", type=pycrdt.Map).to_py() == {"a": "2"}
    assert relay.apply_update(u1) == {"a": "2"}
    assert relay.items() == [("a", "2")]


def test_sync_messages_match_pycrdt_bytes() -> None:
    """Step 1 / step 2 / update messages are byte-identical to pycrdt's and work both ways."""
    src = pycrdt.Doc()
    src.get("mpstore", type=pycrdt.Map)["k"] = "v"
    assert encode_sync_step1(src.get_state()) == pycrdt.create_sync_message(src)
    update = src.get_update()
    assert encode_update(update) == pycrdt.create_update_message(update)
    pure = PythonDoc()
    # pycrdt answers our step 1 with a step 2 we decode and apply.
    reply = pycrdt.handle_sync_message(encode_sync_step1(pure.state_vector())[1:], src)
    assert reply is not None
    msg = decode_message(reply)
    assert msg.kind == SYNC_STEP2
    assert pure.apply_update(msg.payload) == {"k": "v"}
    # We answer pycrdt's step 1; pycrdt applies our step 2 and our update messages.
    dst = pycrdt.Doc()
    step1 = decode_message(pycrdt.create_sync_message(dst))
    assert step1.kind == SYNC_STEP1
    step2 = encode_sync_step2(pure.encode_diff(step1.payload))
    assert pycrdt.handle_sync_message(step2[1:], dst) is None
    upd = encode_update(pure.transact({"k2": "w"}, []))
    assert decode_message(upd).kind == SYNC_UPDATE
    pycrdt.handle_sync_message(upd[1:], dst)
    assert dst.get("mpstore", type=pycrdt.Map).to_py() == {"k": "v", "k2": "w"}


def test_pycrdt_rejects_what_we_reject_cleanly() -> None:
    """A truncated pycrdt update is a CorruptUpdate for the pure engine, doc unchanged."""
    src = pycrdt.Doc()
    src.get("mpstore", type=pycrdt.Map)["k"] = "v"
    update = src.get_update()
    pure = PythonDoc()
    pure.transact({"x": "1"}, [])
    before = pure.encode_diff(b"\x00")
    for cut in range(len(update)):
        with pytest.raises(CorruptUpdate):
            pure.apply_update(update[:cut])
        assert pure.encode_diff(b"\x00") == before


list_op = st.tuples(
    st.integers(0, 2),  # replica
    st.sampled_from(["ins_text", "del_text", "ins_arr", "del_arr", "nested", "sync"]),
    st.integers(0, 30),  # position
    st.text(alphabet="ab🎲é", min_size=1, max_size=4),
    st.integers(0, 2),  # sync target / length
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(list_op, min_size=15, max_size=60), order=st.randoms(use_true_random=False))
def test_sequences_integrate_like_yrs(ops: list[tuple], order) -> None:  # type: ignore[no-untyped-def, type-arg]
    """Concurrent text/array/nested edits from pycrdt replicas, fed to the pure engine in a
    random order (so it splits items and resolves YATA conflicts itself), re-encoded by it and
    read by pycrdt: the same sequences as the replicas converged to."""
    docs = [pycrdt.Doc(client_id=i + 1) for i in range(3)]
    updates: list[bytes] = []
    for d in docs:
        d.observe(lambda e: updates.append(e.update))
    for who, kind, pos, text, extra in ops:
        d = docs[who]
        t = d.get("text", type=pycrdt.Text)
        arr = d.get("arr", type=pycrdt.Array)
        if kind == "ins_text":
            t.insert(min(pos, len(t)), text.replace("🎲", "d").replace("é", "e"))
        elif kind == "del_text" and len(t):
            p = pos % len(t)
            del t[p : min(len(t), p + 1 + extra)]
        elif kind == "ins_arr":
            arr.insert(min(pos, len(arr)), [f"{text}{pos}"])
        elif kind == "del_arr" and len(arr):
            del arr[pos % len(arr)]
        elif kind == "nested":
            m = d.get("mpstore", type=pycrdt.Map)
            m[text] = pycrdt.Array([pos]) if extra else text
        elif kind == "sync" and extra != who:
            docs[extra].apply_update(d.get_update(docs[extra].get_state()))
    for a in docs:
        for b in docs:
            if a is not b:
                b.apply_update(a.get_update(b.get_state()))
    expected = docs[0].get("text", type=pycrdt.Text), docs[0].get("arr", type=pycrdt.Array)
    shuffled = list(updates)
    order.shuffle(shuffled)
    pure = PythonDoc()
    for u in shuffled:
        pure.apply_update(u)
    out = pycrdt.Doc()
    out.apply_update(pure.encode_diff(b"\x00"))
    assert str(out.get("text", type=pycrdt.Text)) == str(expected[0])
    assert out.get("arr", type=pycrdt.Array).to_py() == expected[1].to_py()
    assert out.get("mpstore", type=pycrdt.Map).to_py() == docs[0].get("mpstore", type=pycrdt.Map).to_py()
    assert decode_sv(pure.state_vector()) == decode_sv(docs[0].get_state())
    # White box: the pure engine's own sequence order (not only what pycrdt rebuilds from its
    # origins) is the converged one.
    assert _sequence(pure, "text") == list(str(expected[0]))
    assert _sequence(pure, "arr") == expected[1].to_py()


def _sequence(doc: PythonDoc, name: str) -> list[object]:
    """The visible elements of a root sequence, walking the engine's own linked list."""
    from mpstore.engines._python._structs import ContentAny, ContentString, ContentType

    out: list[object] = []
    ytype = doc._share.get(name)
    item = ytype.start if ytype is not None else None
    while item is not None:
        if not item.deleted:
            c = item.content
            if isinstance(c, str):  # ContentAny([str]) kept bare
                out.append(c)
            elif isinstance(c, ContentString):
                out.extend(c.str)
            elif isinstance(c, ContentAny):
                out.extend(c.arr)
            elif isinstance(c, ContentType):
                out.append(("type", item.client, item.clock))
        item = item.right
    return out


def test_rich_text_xml_and_subdocs_roundtrip() -> None:
    """Format, Embed, XML types and sub-document contents survive a pure round trip."""
    from mpstore.engines._python._update import decode_update

    src = pycrdt.Doc()
    text = src.get("rich", type=pycrdt.Text)
    text += "hello world"
    text.format(0, 5, {"bold": True})
    text.insert_embed(5, {"img": "x.png"})
    frag = src.get("xml", type=pycrdt.XmlFragment)
    frag.children.append(pycrdt.XmlElement("p", {"class": "c"}, ["txt"]))
    src.get("mpstore", type=pycrdt.Map)["sub"] = pycrdt.Doc()
    update = src.get_update()
    refs, _ = decode_update(update)
    kinds = {type(s.content).__name__ for structs in refs.values() for s in structs}
    assert {"ContentFormat", "ContentEmbed", "ContentDoc", "ContentType"} <= kinds
    pure = PythonDoc()
    assert pure.apply_update(update) == {}
    out = pycrdt.Doc()
    out.apply_update(pure.encode_diff(b"\x00"))
    assert out.get("rich", type=pycrdt.Text).diff() == text.diff()
    assert str(out.get("xml", type=pycrdt.XmlFragment)) == str(frag)
    assert list(out.get("mpstore", type=pycrdt.Map).keys()) == ["sub"]
    assert decode_sv(pure.state_vector()) == decode_sv(src.get_state())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from("abcdef"), st.text(max_size=140), max_size=4),
            st.lists(st.sampled_from("abcdef"), max_size=2),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_local_updates_are_the_bytes_yjs_writes(steps: list[tuple[dict[str, str], list[str]]]) -> None:
    """Each local transaction's structs are byte for byte what yrs writes for them (its diff from
    the state before: flags, origins, parent info, contents); its deletions are among the
    diff's (which carries every deletion the document holds)."""
    from mpstore.engines._python._update import decode_update, encode_delete_set

    def split(update: bytes) -> tuple[bytes, set[tuple[int, int]]]:
        _refs, ds = decode_update(update)
        tail = bytearray()
        encode_delete_set(tail, ds)
        assert update.endswith(bytes(tail))
        deleted = {(c, clock + i) for c, ranges in ds.items() for clock, n in ranges for i in range(n)}
        return update[: len(update) - len(tail)], deleted

    pure = PythonDoc()
    mirror = pycrdt.Doc()
    for sets, deletes in steps:
        update = pure.transact(sets, deletes)
        if not update:
            continue
        before = mirror.get_state()
        mirror.apply_update(update)
        ours, our_deletions = split(update)
        theirs, their_deletions = split(mirror.get_update(before))
        assert ours == theirs
        assert our_deletions <= their_deletions
