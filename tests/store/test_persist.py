"""Stores saved in a data_dir (SQLite): reopen, engines, locks, bad data, full disks, overrides."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mpstore
from mpstore import _persist
from mpstore.engines import load_engine

ENGINE = os.environ.get("MPSTORE_ENGINE") or None


def _has_pycrdt() -> bool:
    try:
        load_engine("pycrdt")
    except mpstore.EngineUnavailable:
        return False
    return True


class Quiet(mpstore.MultipeerConnectivity):
    def peer_added(self, peer: Any) -> None:
        pass

    def peer_removed(self, peer: Any) -> None:
        pass


@contextlib.contextmanager
def nodes() -> Iterator[Callable[..., Quiet]]:
    """Make MultipeerConnectivity objects on one MemoryNetwork; end them all at the end."""
    made: list[Quiet] = []
    net = mpstore.MemoryNetwork(seed=3)

    def make(name: str = "a", **kwargs: Any) -> Quiet:
        kwargs.setdefault("transport", net)
        kwargs.setdefault("engine", ENGINE)
        kwargs.setdefault("peer_timeout", 1.0)
        mc = Quiet(name, "saved", **kwargs)
        made.append(mc)
        return mc

    make.network = net  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for mc in made:
            with contextlib.suppress(mpstore.PersistError):
                mc.end_all()


def _db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path / _persist.DB_FILE, isolation_level=None)


def test_saved_content_shows_at_once_before_any_peer(tmp_path: Path) -> None:
    values = {"n": 3, "f": 3.0, "big": 2**70, "b": b"\x00\xff", "nested": {"$x": [None, True, "é"]}}
    with nodes() as make:
        a = make(data_dir=tmp_path)
        d = a.shared_dict("list")
        d.update(values)
        d["gone"] = 1
        del d["gone"]
        assert d.persistent
        a.end_all()
        b = make(data_dir=tmp_path)
        assert b.get_peers() == []
        again = b.shared_dict("list")
        assert again.to_dict() == values
        assert [type(again[k]) for k in values] == [type(v) for v in values.values()]


def test_every_store_of_the_object_persists_including_ones_peers_sent(tmp_path: Path) -> None:
    with nodes() as make:
        a = make("a", data_dir=tmp_path)
        b = make("b")
        b.shared_dict("theirs")["x"] = 1  # a never opens it: relayed, held, and saved
        a.wait_for_peers(1, timeout=10)
        deadline = time.monotonic() + 10
        while "theirs" not in a._node.store.docsync.docs:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        mine = a.shared_dict("mine")
        mine["y"] = 2
        b.shared_dict("mine").wait_for(lambda s: s.get("y") == 2, timeout=10)
        b.shared_dict("mine")["z"] = 3  # a remote update: persisted too
        mine.wait_for(lambda s: s.get("z") == 3, timeout=10)
        a.end_all()
        b.end_all()
        c = make("c", data_dir=tmp_path)
        assert c.shared_dict("theirs").to_dict() == {"x": 1}
        assert c.shared_dict("mine").to_dict() == {"y": 2, "z": 3}


def test_end_all_and_with_flush_what_was_just_written(tmp_path: Path) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path)
        d = a.shared_dict("s")
        for i in range(500):
            d[f"k{i % 7}"] = i
        a.end_all()  # no flush(): end_all flushes
        with Quiet("b", "saved", transport=mpstore.MemoryNetwork(), data_dir=tmp_path, engine=ENGINE) as b:
            d = b.shared_dict("s")
            assert d["k0"] == 497 and len(d) == 7
            d["last"] = True
        b = make(data_dir=tmp_path)
        assert b.shared_dict("s")["last"] is True


def test_flush_commits_and_history_is_in_order(tmp_path: Path) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path)
        d = a.shared_dict("s")
        for i in range(10):
            d["k"] = i
        d.flush()
        db = a._node.store._persist._default  # type: ignore[union-attr]
        got = a._runtime.call(lambda: db.conn.execute("SELECT seq FROM updates ORDER BY seq").fetchall())
        seqs = [s for (s,) in got]
        # Integers, gap-free; writes the core found queued together are one transaction (row).
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 1


@pytest.mark.skipif(not _has_pycrdt(), reason="pycrdt is not installed")
@pytest.mark.parametrize("first,second", [("pycrdt", "python"), ("python", "pycrdt")])
def test_a_file_saved_by_one_engine_opens_on_the_other_and_back(
    tmp_path: Path, first: str, second: str
) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path, engine=first)
        d = a.shared_dict("s")
        for i in range(300):  # past the compaction threshold: a snapshot and a log
            d[f"k{i % 40}"] = [i, str(i)]
        d["b"] = b"\x01"
        a.end_all()
        b = make(data_dir=tmp_path, engine=second)
        d = b.shared_dict("s")
        assert d["k0"] == [280, "280"] and d["b"] == b"\x01" and len(d) == 41
        d["k0"] = "from " + second
        b.end_all()
        c = make(data_dir=tmp_path, engine=first)
        assert c.shared_dict("s")["k0"] == "from " + second


def test_compaction_keeps_the_log_short_and_the_content_exact(tmp_path: Path) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path)
        d = a.shared_dict("s")
        for i in range(3000):
            d[f"k{i % 100}"] = i
            a._runtime.call(lambda: None)  # one transaction (log row) per write
        d.flush()
        a.end_all()
    con = _db(tmp_path)
    rows = con.execute("SELECT count(*) FROM updates").fetchone()[0]
    snap, upto = con.execute("SELECT length(snapshot), snapshot_seq FROM stores").fetchone()
    con.close()
    assert snap > 0 and upto >= 2000
    # The threshold: the log never outweighs the snapshot by more than one commit's worth.
    assert rows < max(_persist.COMPACT_MIN_ROWS, snap // _persist.ROW_COST) + _persist.FLUSH_ROWS
    with nodes() as make:
        d = make(data_dir=tmp_path).shared_dict("s")
        assert d.to_dict() == {f"k{i}": 2900 + i for i in range(100)}


def test_reopening_never_reuses_a_client_id(tmp_path: Path) -> None:
    ids = []
    with nodes() as make:
        for i in range(4):
            a = make(data_dir=tmp_path)
            d = a.shared_dict("s")
            d[f"k{i}"] = i
            ids.append(a._runtime.call(lambda d=d: d._manager._sync.docs["s"].client_id))
            a.end_all()
    assert len(set(ids)) == 4
    con = _db(tmp_path)
    assert {c for (c,) in con.execute("SELECT client FROM clients")} == set(ids)
    con.close()


def test_a_recorded_client_id_is_skipped_when_the_engine_offers_it(tmp_path: Path) -> None:
    engine = load_engine(ENGINE)
    db = _persist.Database(tmp_path)
    try:
        log = db.log("s")
        first = engine.new_doc()
        log.claim(first.client_id)
        offers = iter([first, engine.new_doc()])
        doc = _persist.load_doc(log, lambda: next(offers))
        assert doc.client_id != first.client_id
        assert log.used_clients() == {first.client_id, doc.client_id}
    finally:
        db.close()


def test_second_open_in_the_same_process_or_another_is_refused(tmp_path: Path) -> None:
    with nodes() as make:
        make(data_dir=tmp_path).shared_dict("s")["x"] = 1
        with pytest.raises(mpstore.StoreLocked, match="already open in this process"):
            make(data_dir=tmp_path)
        code = textwrap.dedent(
            f"""
            import mpstore
            try:
                mpstore.MultipeerConnectivity(
                    "b", transport=mpstore.MemoryNetwork(), data_dir={str(tmp_path)!r}
                )
            except mpstore.StoreLocked as exc:
                print("LOCKED", exc)
            """
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert "LOCKED" in out.stdout and "another process" in out.stdout, out.stderr
    # Released at end_all: open again, from another process.
    code = (
        "import mpstore\n"
        "with mpstore.MultipeerConnectivity('b', transport=mpstore.MemoryNetwork(),\n"
        f"                                  data_dir={str(tmp_path)!r}) as b:\n"
        "    print('VALUE', b.shared_dict('s')['x'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "VALUE 1" in out.stdout, out.stderr


def test_undecodable_rows_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path)
        a.shared_dict("s")["a"] = 1
        a.end_all()
        con = _db(tmp_path)
        (sid,) = con.execute("SELECT id FROM stores").fetchone()
        con.execute("INSERT INTO updates VALUES (?, 100, ?)", (sid, b"\xff\xff\xff garbage"))
        con.execute("INSERT INTO updates VALUES (?, 101, 'text, not bytes')", (sid,))
        con.close()
        b = make(data_dir=tmp_path)
        d = b.shared_dict("s")
        d["after"] = 2  # the sequence continues past the bad rows
        b.end_all()
        with caplog.at_level(logging.WARNING, logger="mpstore.persist"):
            c = make(data_dir=tmp_path)
            assert c.shared_dict("s").to_dict() == {"a": 1, "after": 2}
    assert any("does not decode" in r.getMessage() for r in caplog.records) or any(
        "skipped" in r.getMessage() for r in caplog.records
    )


def test_undecodable_rows_warn_on_first_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path)
        a.shared_dict("s")["a"] = 1
        a.end_all()
        con = _db(tmp_path)
        (sid,) = con.execute("SELECT id FROM stores").fetchone()
        con.execute("INSERT INTO updates VALUES (?, 100, ?)", (sid, b"\xff\xff\xff garbage"))
        con.execute("INSERT INTO updates VALUES (?, 101, 'text, not bytes')", (sid,))
        con.close()
        with caplog.at_level(logging.WARNING, logger="mpstore.persist"):
            assert make(data_dir=tmp_path).shared_dict("s").to_dict() == {"a": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert any("does not decode, skipped" in m for m in messages), messages
    assert any("not a byte string" in m for m in messages), messages


def test_a_newer_format_is_refused_and_left_alone(tmp_path: Path) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path)
        a.shared_dict("s")["a"] = 1
        a.end_all()
        con = _db(tmp_path)
        con.execute("UPDATE meta SET value = ? WHERE key = 'format'", (_persist.FORMAT + 1,))
        con.close()
        before = (tmp_path / _persist.DB_FILE).read_bytes()
        with pytest.raises(mpstore.PersistError, match="newer mpstore"):
            make(data_dir=tmp_path)
        assert (tmp_path / _persist.DB_FILE).read_bytes() == before


def test_a_file_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    (tmp_path / _persist.DB_FILE).write_bytes(b"not a database at all" * 100)
    with nodes() as make, pytest.raises(mpstore.PersistError, match="not an mpstore database"):
        make(data_dir=tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    con = _db(other)
    con.execute("CREATE TABLE t (x)")
    con.close()
    with nodes() as make, pytest.raises(mpstore.PersistError, match="not an mpstore database"):
        make(data_dir=other)


def test_a_data_dir_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with nodes() as make, pytest.raises(mpstore.PersistError, match="cannot create data_dir"):
        make(data_dir=tmp_path / "file" / "sub")


def test_a_read_only_folder_is_a_clear_error_at_open(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    tmp_path.chmod(0o755)
    code = textwrap.dedent(
        f"""
        import os
        import mpstore
        from mpstore.engines import load_engine
        load_engine()  # imported before dropping privileges
        if os.getuid() == 0:  # root ignores permissions: drop to nobody for this check
            os.setgid(65534); os.setuid(65534)
        try:
            mpstore.MultipeerConnectivity("b", transport=mpstore.MemoryNetwork(), data_dir={str(ro)!r})
        except mpstore.PersistError as exc:
            print("REFUSED", exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "REFUSED" in out.stdout and "read-only" in out.stdout, (out.stdout, out.stderr)


def test_a_full_disk_fails_flush_clearly_and_the_store_keeps_working(tmp_path: Path) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path)
        d = a.shared_dict("s")
        d["before"] = 1
        d.flush()
        db = a._node.store._persist._default  # type: ignore[union-attr]
        # SQLite's own size cap gives the same SQLITE_FULL as a full disk.
        pages = a._runtime.call(lambda: db.conn.execute("PRAGMA page_count").fetchone()[0])
        a._runtime.call(lambda: db.conn.execute(f"PRAGMA max_page_count = {pages}"))
        for i in range(200):
            d[f"k{i}"] = "x" * 2000
        with pytest.raises(mpstore.PersistError, match="disk is full"):
            d.flush()
        d["still"] = "works"  # memory goes on
        assert d["still"] == "works" and d["k199"] == "x" * 2000
        a._runtime.call(lambda: db.conn.execute("PRAGMA max_page_count = 1000000"))
        d.flush()  # the whole store is saved now
        a.end_all()
        b = make(data_dir=tmp_path)
        got = b.shared_dict("s").to_dict()
        assert got["before"] == 1 and got["still"] == "works" and len(got) == 202


def test_durable_writes_fail_loudly_on_a_full_disk(tmp_path: Path) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path, durable=True)
        d = a.shared_dict("s")
        d["a"] = 1
        db = a._node.store._persist._default  # type: ignore[union-attr]
        pages = a._runtime.call(lambda: db.conn.execute("PRAGMA page_count").fetchone()[0])
        a._runtime.call(lambda: db.conn.execute(f"PRAGMA max_page_count = {pages}"))
        with pytest.raises(mpstore.PersistError, match="disk is full"):
            for i in range(100):
                d[f"k{i}"] = "y" * 4000
        assert d["a"] == 1
        a._runtime.call(lambda: db.conn.execute("PRAGMA max_page_count = 1000000"))


def test_end_all_raises_when_the_last_flush_fails(tmp_path: Path) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path)
        d = a.shared_dict("s")
        d["a"] = 1
        d.flush()
        db = a._node.store._persist._default  # type: ignore[union-attr]
        pages = a._runtime.call(lambda: db.conn.execute("PRAGMA page_count").fetchone()[0])
        a._runtime.call(lambda: db.conn.execute(f"PRAGMA max_page_count = {pages}"))
        for i in range(50):
            d[f"k{i}"] = "z" * 4000
        with pytest.raises(mpstore.PersistError):
            a.end_all()


def test_per_store_overrides(tmp_path: Path) -> None:
    other = tmp_path / "other"
    with nodes() as make:
        a = make(data_dir=tmp_path / "main")
        a.shared_dict("scratch", persist=False)["x"] = 1
        elsewhere = a.shared_dict("elsewhere", persist=other)
        elsewhere["y"] = 2
        assert not a.shared_dict("scratch").persistent and elsewhere.persistent
        with pytest.raises(mpstore.ConfigurationError, match="cannot move"):
            a.shared_dict("elsewhere", persist=tmp_path / "third")
        a.shared_dict("normal")["z"] = 3
        a.shared_dict("dropped")["w"] = 4
        a.shared_dict("dropped").flush()
        assert not a.shared_dict("dropped", persist=False).persistent  # stops saving; disk kept
        a.shared_dict("dropped")["w"] = 5
        a.end_all()
        b = make(data_dir=tmp_path / "main")
        assert b.shared_dict("scratch").to_dict() == {}
        assert b.shared_dict("normal").to_dict() == {"z": 3}
        assert b.shared_dict("dropped").to_dict() == {"w": 4}
        c = make(name="c")  # no data_dir: opt in per store
        assert c.shared_dict("elsewhere", persist=other).to_dict() == {"y": 2}
        with pytest.raises(mpstore.ConfigurationError, match="needs"):
            c.shared_dict("nope", persist=True)


def test_a_store_a_peer_sent_first_can_still_be_saved_per_store(tmp_path: Path) -> None:
    with nodes() as make:
        a = make("a")  # no data_dir
        b = make("b")
        b.shared_dict("list").update({"milk": 1, "eggs": 12})
        a.wait_for_peers(1, timeout=10)
        deadline = time.monotonic() + 10
        while "list" not in a._node.store.docsync.docs:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        mine = a.shared_dict("list", persist=tmp_path)  # held in memory already: saved whole
        mine.wait_for(lambda s: len(s) == 2, timeout=10)
        assert mine.persistent
        mine["bread"] = 1
        b.shared_dict("list").wait_for(lambda s: "bread" in s, timeout=10)
        b.shared_dict("list")["jam"] = 2  # remote, after the switch: saved too
        mine.wait_for(lambda s: "jam" in s, timeout=10)
        a.end_all()
        b.end_all()
        c = make("c")
        assert c.shared_dict("list", persist=tmp_path).to_dict() == {
            "milk": 1,
            "eggs": 12,
            "bread": 1,
            "jam": 2,
        }
        c.end_all()
        # Saved data there already and a peer's copy held in memory: refused, nothing mixed.
        d = make("d")
        e = make("e")
        e.shared_dict("list")["other"] = True
        d.wait_for_peers(1, timeout=10)
        deadline = time.monotonic() + 10
        while "list" not in d._node.store.docsync.docs:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(mpstore.ConfigurationError, match="already has saved data"):
            d.shared_dict("list", persist=tmp_path)


def test_durable_store_writes_are_committed_when_they_return(tmp_path: Path) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path)
        d = a.shared_dict("d", durable=True)
        d["x"] = 1
        db = a._node.store._persist._default  # type: ignore[union-attr]
        assert not a._runtime.call(db.dirty)  # nothing waits: committed before returning
        lazy = a.shared_dict("lazy")
        lazy["y"] = 1
        assert a._runtime.call(db.dirty)  # batched: committed within FLUSH_DELAY
        time.sleep(_persist.FLUSH_DELAY * 4)
        deadline = time.monotonic() + 5
        while a._runtime.call(db.dirty):
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_inspect_lists_keys_size_and_history(tmp_path: Path) -> None:
    with nodes() as make:
        a = make(data_dir=tmp_path)
        d = a.shared_dict("s")
        for i in range(10):
            d[f"k{i % 3}"] = i
            a._runtime.call(lambda: None)  # one transaction (history entry) per write
        a.shared_dict("t")["only"] = 1
        a.end_all()
    engine = load_engine(ENGINE)
    path, size, stores = _persist.inspect(tmp_path, engine.new_doc)
    assert path.endswith(_persist.DB_FILE) and size > 0
    by_name = {s.name: s for s in stores}
    assert by_name["s"].keys == ["k0", "k1", "k2"] and by_name["s"].history == 10
    assert by_name["t"].keys == ["only"] and by_name["t"].history == 1


def test_appends_are_committed_before_a_compaction_and_survive_its_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = load_engine(ENGINE)
    db = _persist.Database(tmp_path)
    store = db.log("s")
    doc = _persist.LoggedDoc(_persist.load_doc(store, engine.new_doc), store)
    for i in range(_persist.COMPACT_MIN_ROWS + 5):
        doc.transact({"k": str(i)}, [])
    assert store.compaction_due(len(db._pending))

    def broken() -> tuple[bytes, int]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "snapshot_now", broken)
    with pytest.raises(mpstore.PersistError, match="disk is full"):
        db.flush()
    assert not db._pending and store.log_rows == _persist.COMPACT_MIN_ROWS + 5  # the rows are in
    db._close_conn()  # the process dies before any retry
    db._release()
    db = _persist.Database(tmp_path)
    try:
        again = _persist.load_doc(db.log("s"), engine.new_doc)
        assert again.get("k") == str(_persist.COMPACT_MIN_ROWS + 4)
    finally:
        db.close()


@pytest.mark.parametrize("engine", ["python", "pycrdt"])
def test_a_saved_document_answers_like_its_engine(tmp_path: Path, engine: str) -> None:
    """The document of a saved store wraps the engine's; it inherited the base class's defaults
    for waiting() (always False: a gap in a peer's updates was never asked for), encode_diff_parts()
    (one part: no streamed snapshots) and deleted_last() instead of asking the engine."""
    if engine == "pycrdt" and not _has_pycrdt():
        pytest.skip("pycrdt is not installed")
    eng = load_engine(engine)
    persistence = _persist.Persistence(tmp_path)
    try:
        doc = persistence.new_doc("s", eng.new_doc)
        assert isinstance(doc, _persist.LoggedDoc)
        src = eng.new_doc()
        first = src.transact({"a": '"1"'}, ())
        second = src.transact({"b": '"2"'}, ())
        doc.apply_update(second)  # the first is missing: the document must say it waits
        assert doc.waiting() == doc.inner.waiting() is True
        doc.apply_update(first)
        assert not doc.waiting()
        doc.apply_update(src.transact({}, ["a"]))  # a deletion only
        assert doc.deleted_last() is doc.inner.deleted_last() is True
        for i in range(50):
            doc.apply_update(src.transact({f"k{i}": '"' + "x" * 200 + '"'}, ()))
        parts = list(doc.encode_diff_parts(b"\x00", 2048))
        assert len(parts) == len(list(doc.inner.encode_diff_parts(b"\x00", 2048)))
    finally:
        persistence.close()
