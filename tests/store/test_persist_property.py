"""Property: whatever the mix of local writes, remote updates, commits, compactions and crashes,
a reopened store equals the state at its last commit, and its log replays idempotently."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpstore import _persist
from mpstore.engines import load_engine

ENGINE = os.environ.get("MPSTORE_ENGINE") or None
KEYS = ["a", "b", "c", "d"]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(KEYS), st.integers(0, 9)),
        st.tuples(st.just("del"), st.sampled_from(KEYS), st.just(0)),
        st.tuples(st.just("remote"), st.sampled_from(KEYS), st.integers(10, 19)),
        st.tuples(st.just("commit"), st.just(""), st.just(0)),
        st.tuples(st.just("crash"), st.just(""), st.just(0)),
    ),
    max_size=60,
)


def _open(path: Path, engine: Any) -> tuple[_persist.Database, _persist.LoggedDoc]:
    db = _persist.Database(path)  # no scheduler: commits happen only when asked (or when full)
    log = db.log("s")
    return db, _persist.LoggedDoc(_persist.load_doc(log, engine.new_doc), log)


def _crash(db: _persist.Database) -> None:
    """The process dies: nothing pending is written, the lock goes with the connection."""
    db._close_conn()
    db._release()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_reopen_equals_the_last_commit(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, ops: list[Any]
) -> None:
    monkeypatch.setattr(_persist, "COMPACT_MIN_ROWS", 3)  # compact often
    engine = load_engine(ENGINE)
    path = tmp_path_factory.mktemp("prop")
    db, doc = _open(path, engine)
    live: dict[str, str] = {}
    committed: dict[str, str] = {}
    ids = {doc.client_id}
    try:
        for op, key, n in ops:
            if op == "set":
                doc.transact({key: str(n)}, [])
                live[key] = str(n)
            elif op == "del":
                doc.transact({}, [key])
                live.pop(key, None)
            elif op == "remote":
                peer = engine.new_doc()  # a peer that has seen everything, then writes
                peer.apply_update(doc.encode_diff(b"\x00"))
                doc.apply_update(peer.transact({key: str(n)}, []))
                live[key] = str(n)
            elif op == "commit":
                db.flush()
            elif op == "crash":
                _crash(db)
                db, doc = _open(path, engine)
                assert dict(doc.items()) == committed
                assert doc.client_id not in ids  # never an id used before
                ids.add(doc.client_id)
                live = dict(committed)
            assert dict(doc.items()) == live
            if not db._pending:
                committed = dict(live)
        db.flush()
        _crash(db)
        db, doc = _open(path, engine)
        assert dict(doc.items()) == live
        again = engine.new_doc()  # replaying everything twice changes nothing
        for data in [*db.log("s").saved(), *db.log("s").saved()]:
            again.apply_update(data)
        assert dict(again.items()) == live
    finally:
        db.close()
