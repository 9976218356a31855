"""Restart alone, then meet: saved stores resync by state vectors, sending only what is missing.

Also the compaction bound: 100,000 writes to 100 keys leave a small file that reopens fast.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mpstore
from mpstore import _persist
from mpstore._wire import Kind

ENGINE = os.environ.get("MPSTORE_ENGINE") or None


class Quiet(mpstore.MultipeerConnectivity):
    def peer_added(self, peer: Any) -> None:
        pass

    def peer_removed(self, peer: Any) -> None:
        pass


@contextlib.contextmanager
def nodes(net: mpstore.MemoryNetwork) -> Iterator[Callable[..., Quiet]]:
    made: list[Quiet] = []

    def make(name: str, **kwargs: Any) -> Quiet:
        mc = Quiet(name, "restart", transport=net, engine=ENGINE, peer_timeout=1.0, **kwargs)
        made.append(mc)
        return mc

    try:
        yield make
    finally:
        for mc in made:
            mc.end_all()


class StoreBytes:
    """Counts the store traffic of one node, both directions (core thread only)."""

    def __init__(self, mc: mpstore.MultipeerConnectivity) -> None:
        self.sent = 0
        self.received = 0
        node = mc._node
        send, manager = node.send_to_peer, node.store
        assert manager is not None
        message = manager.message

        def counting_send(peer: Any, kind: int, payload: bytes) -> None:
            if kind == Kind.STORE:
                self.sent += len(payload)
            send(peer, kind, payload)

        def counting_message(peer: Any, payload: bytes) -> None:
            self.received += len(payload)
            message(peer, payload)

        node.send_to_peer = counting_send  # type: ignore[method-assign]
        manager.message = counting_message  # type: ignore[method-assign]


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_restart_alone_then_meet_sends_only_the_missing_edits(tmp_path: Path) -> None:
    big = {f"item{i}": {"name": f"thing {i}", "note": "x" * 80} for i in range(2000)}
    with nodes(mpstore.MemoryNetwork()) as make:
        a = make("a", data_dir=tmp_path / "a")
        b = make("b", data_dir=tmp_path / "b")
        a.shared_dict("list").update(big)
        b.shared_dict("list")["from_b"] = 1
        _wait(lambda: len(a.shared_dict("list")) == len(b.shared_dict("list")) == 2001)
        store_size = a._runtime.call(lambda: len(a._node.store.docsync.docs["list"].encode_diff(b"\x00")))
        a.end_all()
        b.end_all()

    net = mpstore.MemoryNetwork()
    with nodes(net) as make:
        a = make("a", data_dir=tmp_path / "a")
        count = StoreBytes(a)
        mine = a.shared_dict("list")
        assert len(mine) == 2001 and mine["item7"] == big["item7"]  # at once, alone
        assert a.get_peers() == []
        doc = a._runtime.call(lambda: a._node.store.docsync.docs["list"])
        before = a._runtime.call(doc.state_vector)
        edits = {f"offline{i}": f"edit {i}" for i in range(20)}
        for k, v in edits.items():
            mine[k] = v
        mine.flush()
        missing = a._runtime.call(lambda: len(doc.encode_diff(before)))

        b = make("b", data_dir=tmp_path / "b")
        theirs = b.shared_dict("list")
        theirs.wait_for(lambda s: all(k in s for k in edits), timeout=30)
        _wait(lambda: mine.to_dict() == theirs.to_dict())
        time.sleep(0.3)  # anything still in flight is counted too
        sent, received = a._runtime.call(lambda: (count.sent, count.received))
    print(
        f"\nrestart then meet: store {store_size} B, missing edits {missing} B; "
        f"a sent {sent} B, received {received} B"
    )
    # Envelopes, two state vectors and the neighbour list are small and fixed; the store is not.
    assert sent <= 2 * missing + 512, (sent, missing)
    assert received <= 512, received
    assert sent + received < store_size / 20


def test_compaction_bounds_size_and_reopen_time(tmp_path: Path) -> None:
    compaction_bound(tmp_path, 20_000)


@pytest.mark.slow
def test_compaction_bounds_size_and_reopen_time_100k(tmp_path: Path) -> None:
    compaction_bound(tmp_path, 100_000)


def compaction_bound(tmp_path: Path, writes: int) -> None:
    with nodes(mpstore.MemoryNetwork()) as make:
        a = make("a", data_dir=tmp_path)
        d = a.shared_dict("s")
        t0 = time.perf_counter()
        for i in range(writes):
            d[f"k{i % 100}"] = i
            a._runtime.call(lambda: None)  # one transaction (log row) per write: the worst case
        d.flush()
        took = time.perf_counter() - t0
        a.end_all()
    path = tmp_path / _persist.DB_FILE
    size = path.stat().st_size
    con = sqlite3.connect(path)
    rows = con.execute("SELECT count(*) FROM updates").fetchone()[0]
    snapshot = con.execute("SELECT length(snapshot) FROM stores").fetchone()[0]
    con.close()
    with nodes(mpstore.MemoryNetwork()) as make:
        t0 = time.perf_counter()
        b = make("b", data_dir=tmp_path)
        d = b.shared_dict("s")
        reopen = time.perf_counter() - t0
        assert d.to_dict() == {f"k{j}": writes - 100 + j for j in range(100)}
    print(
        f"\n{writes} writes to 100 keys in {took:.1f} s: file {size / 1024:.0f} KiB "
        f"(snapshot {snapshot / 1024:.0f} KiB, {rows} log rows); reopen {reopen * 1000:.0f} ms"
    )
    # Bounded by the compaction rule: the log stays under the snapshot's weight, and the file
    # holds the snapshot, the log and SQLite's free pages from earlier snapshots.
    assert rows <= max(_persist.COMPACT_MIN_ROWS, snapshot // _persist.ROW_COST) + _persist.FLUSH_ROWS
    assert size < 8 * snapshot + (1 << 20), (size, snapshot)
