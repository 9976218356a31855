"""Relay properties through a real server: reconnection costs a diff, and nothing loops."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.yserver.servers import DIALECTS, CutProxy, running
from tests.yserver.test_loopback import groups


def _big_store(a: Any, conn: Any, keys: int) -> Any:
    store = a.shared_dict("big")
    with store.batch():
        for k in range(keys):
            store[f"key-{k:05d}"] = "x" * 40
    wait_until(lambda: conn.bytes_out > keys * 40, timeout=15)  # the whole store went up
    return store


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_dropped_connection_resyncs_by_diff(dialect: str, tmp_path: Path) -> None:
    with running(dialect, tmp_path) as server, groups() as make:
        proxy = CutProxy(server.port)
        try:
            a, b = make("a", "a"), make("b", "b")
            # b keeps the document open on the server while a's link drops.
            b.connect_server(server.url, "big", dialect=dialect).wait_synced(15)
            conn = a.connect_server(proxy.url, "big", dialect=dialect, max_backoff=1.0)
            conn.wait_synced(15)
            store = _big_store(a, conn, 3000)
            b.shared_dict("big").wait_for(lambda d: len(d) == 3000, timeout=30)
            snapshot = conn.bytes_out
            proxy.cut()
            wait_until(lambda: not conn.synced, timeout=30)
            store["offline"] = "one small edit"
            before_out, before_in = conn.bytes_out, conn.bytes_in
            conn.wait_synced(30)
            b.shared_dict("big").wait_for(lambda d: d.get("offline") == "one small edit", timeout=30)
            sent, got = conn.bytes_out - before_out, conn.bytes_in - before_in
            assert sent < 2000, f"{sent} bytes sent after reconnecting (the store is {snapshot} bytes)"
            assert got < 2000, f"{got} bytes received after reconnecting"
        finally:
            proxy.close()


def test_hocuspocus_restart_with_persistence_resyncs_by_diff(tmp_path: Path) -> None:
    # (@y/websocket-server 0.1.1 sends its step 1 before LevelDB has loaded the document, so
    # the first sync after its restart carries a whole snapshot from each client: see docs.)
    data = tmp_path / "data"
    with running("hocuspocus", tmp_path, data_dir=data, debounce_ms=100) as server, groups() as make:
        a = make("a", "a")
        conn = a.connect_server(server.url, "big", dialect="hocuspocus", max_backoff=1.0)
        conn.wait_synced(15)
        store = _big_store(a, conn, 3000)
        snapshot = conn.bytes_out
        wait_until(lambda: any(p.stat().st_size > 3000 * 40 for p in data.glob("*.ydoc")), timeout=15)
        server.kill()
        wait_until(lambda: not conn.synced, timeout=30)
        store["offline"] = "one small edit"
        before = conn.bytes_out
        server.start()
        conn.wait_synced(30)
        late = make("late", "c")
        late.connect_server(server.url, "big", dialect="hocuspocus").wait_synced(15)
        late.shared_dict("big").wait_for(
            lambda d: d.get("offline") == "one small edit" and len(d) == 3001, 30
        )
        sent = conn.bytes_out - before
        assert sent < 2000, f"{sent} bytes after reconnecting (the store is {snapshot} bytes)"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_nothing_loops_between_local_peers_and_the_server(dialect: str, tmp_path: Path) -> None:
    with running(dialect, tmp_path) as server, groups() as make:
        a1, a2, b = make("a1", "a"), make("a2", "a"), make("b", "b")
        a1.wait_for_peers(1, timeout=10)
        # Both peers of group a are connected to each other and to the server: two paths.
        conns = [n.connect_server(server.url, "s", dialect=dialect) for n in (a1, a2, b)]
        for c in conns:
            c.wait_synced(15)
        stores = [n.shared_dict("s") for n in (a1, a2, b)]
        for i, s in enumerate(stores):
            s[f"k{i}"] = i
        for s in stores:
            s.wait_for(lambda d: len(d) == 3, timeout=15)
        time.sleep(1.0)
        counts = [(c.frames_in, c.frames_out) for c in conns]
        time.sleep(3.0)  # shorter than the 20 s keepalive: a quiet system sends nothing
        assert [(c.frames_in, c.frames_out) for c in conns] == counts
        # Each edit crossed each server link a bounded number of times (no echo storm).
        assert all(c.frames_out < 20 for c in conns), [c.frames_out for c in conns]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_periodic_resync_keeps_the_link_and_costs_a_state_vector(dialect: str, tmp_path: Path) -> None:
    with running(dialect, tmp_path) as server, groups() as make:
        a, b = make("a", "a"), make("b", "b")
        conn = a.connect_server(server.url, "big", dialect=dialect, resync_interval=0.5)
        conn.wait_synced(15)
        b.connect_server(server.url, "big", dialect=dialect).wait_synced(15)
        _big_store(a, conn, 1000)
        b.shared_dict("big").wait_for(lambda d: len(d) == 1000, timeout=30)
        time.sleep(1.0)
        before_out, before_in, t0 = conn.bytes_out, conn.bytes_in, time.monotonic()
        time.sleep(3.0)  # about six resyncs
        elapsed = time.monotonic() - t0
        sent, got = conn.bytes_out - before_out, conn.bytes_in - before_in
        assert conn.synced and conn.connects == 1
        resyncs = elapsed / 0.5
        assert 0 < sent < 300 * resyncs and got < 300 * resyncs, (sent, got)
        b.shared_dict("big")["after"] = 1
        a.shared_dict("big").wait_for(lambda d: d.get("after") == 1, timeout=15)
