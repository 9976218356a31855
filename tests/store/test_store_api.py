"""SharedDict as a MutableMapping, batches, observers, wait_for and threads."""

from __future__ import annotations

import threading
import time
from collections.abc import MutableMapping
from typing import Any

import pytest
from store_fakes import FakeNet, FakePeer, Node, ThreadedHost

from mpstore._errors import Closed, Timeout
from mpstore._store import StoreChange, StoreManager
from mpstore._values import MISSING
from mpstore.engines import load_engine


@pytest.fixture
def pair() -> tuple[FakeNet, Node, Node]:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    net.pump()
    return net, a, b


def test_mutable_mapping_behaviour(pair: tuple[FakeNet, Node, Node]) -> None:
    net, a, b = pair
    s = a.store("scores")
    assert isinstance(s, MutableMapping)
    assert s.name == "scores"
    assert a.store("scores") is s
    assert len(s) == 0 and "x" not in s and s.get("x") is None and s.get("x", 5) == 5
    s["ann"] = 3
    s.update({"bob": 1}, eve=2)
    s.update([("zed", 0)])
    assert s["ann"] == 3 and len(s) == 4 and "bob" in s
    assert sorted(s) == ["ann", "bob", "eve", "zed"]
    assert dict(s.items()) == {"ann": 3, "bob": 1, "eve": 2, "zed": 0}
    assert sorted(s.values()) == [0, 1, 2, 3]
    assert s.pop("zed") == 0 and s.pop("zed", "gone") == "gone"
    with pytest.raises(KeyError):
        s.pop("zed")
    del s["eve"]
    with pytest.raises(KeyError):
        del s["eve"]
    with pytest.raises(KeyError):
        _ = s["eve"]
    assert s.setdefault("ann", 100) == 3 and s.setdefault("cat", 7) == 7
    k, v = s.popitem()
    assert k not in s and v in (3, 1, 7)
    assert s == s.to_dict()
    s.clear()
    assert len(s) == 0
    with pytest.raises(KeyError):
        s.popitem()
    net.pump()
    assert b.store("scores").to_dict() == {}


def test_values_come_back_exactly_on_every_replica(pair: tuple[FakeNet, Node, Node]) -> None:
    net, a, b = pair
    value = {"int": 1, "float": 1.0, "big": 2**100, "bytes": b"\x00\x01", "nested": [1, [2.5]]}
    a.store()["v"] = value
    net.pump()
    got = b.store()["v"]
    assert got == value
    assert type(got["int"]) is int and type(got["float"]) is float
    assert type(got["bytes"]) is bytes and got["big"] == 2**100


def test_reads_are_copies(pair: tuple[FakeNet, Node, Node]) -> None:
    _, a, _ = pair
    s = a.store()
    s["l"] = [1, 2]
    s["l"].append(3)
    snapshot = s.to_dict()
    snapshot["l"].append(4)
    assert s["l"] == [1, 2]


def test_bad_keys_and_values_are_refused_before_anything_is_stored(
    pair: tuple[FakeNet, Node, Node],
) -> None:
    net, a, _ = pair
    s = a.store()
    net.frames = 0
    with pytest.raises(TypeError):
        s[1] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        s["k"] = (1, 2)
    with pytest.raises(TypeError):
        s.update({"ok": 1, "bad": {1, 2}})
    assert len(s) == 0 and net.pending() == 0
    with pytest.raises(TypeError):
        a.manager.shared_dict(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        a.manager.shared_dict("")


def test_batch_is_one_transaction_and_reads_its_own_writes(
    pair: tuple[FakeNet, Node, Node],
) -> None:
    net, a, b = pair
    s = a.store()
    s["eve"] = 5
    net.pump()
    seen: list[StoreChange] = []
    b.store().observe(seen.append)
    net.frames = 0
    with s.batch() as t:
        t["bob"] = 1
        del t["eve"]
        assert "eve" not in t and t["bob"] == 1 and len(t) == 1
        with s.batch():  # nested: joins the outer one
            t["ann"] = 2
        assert net.pending() == 0  # nothing sent yet
    assert net.pending() == 1
    net.pump()
    assert len(seen) == 1
    assert dict(seen[0].changes) == {"bob": (MISSING, 1), "eve": (5, MISSING), "ann": (MISSING, 2)}
    assert seen[0].from_peer == a.peer


def test_batch_discards_on_exception(pair: tuple[FakeNet, Node, Node]) -> None:
    net, a, _ = pair
    s = a.store()
    with pytest.raises(RuntimeError), s.batch():
        s["x"] = 1
        raise RuntimeError("boom")
    assert "x" not in s and net.pending() == 0


def test_batch_belongs_to_its_thread(pair: tuple[FakeNet, Node, Node]) -> None:
    _, a, _ = pair
    s = a.store()
    seen: list[bool] = []
    with s.batch():
        s["mine"] = 1
        t = threading.Thread(target=lambda: seen.append("mine" in s))
        t.start()
        t.join(5)
    assert seen == [False] and s["mine"] == 1


def test_observers_get_origins_and_no_ops_are_silent(pair: tuple[FakeNet, Node, Node]) -> None:
    net, a, b = pair
    sa, sb = a.store(), b.store()
    got_a: list[StoreChange] = []
    got_b: list[StoreChange] = []
    sub = sa.observe(got_a.append)
    sb.observe(got_b.append)
    sa["k"] = 1
    net.pump()
    assert [dict(c.changes) for c in got_a] == [{"k": (MISSING, 1)}]
    assert got_a[0].from_peer is None and got_a[0].store == "s"
    assert [dict(c.changes) for c in got_b] == [{"k": (MISSING, 1)}]
    assert got_b[0].from_peer == a.peer
    assert b.host.store_changes[-1][0] == "s"
    # No-ops: same value again, deleting something absent, a duplicate update.
    sa["k"] = 1
    sa.pop("nope", None)
    net.pump()
    assert len(got_a) == 1 and len(got_b) == 1
    sb["k"] = 2.0
    net.pump()
    assert dict(got_a[-1].changes) == {"k": (1, 2.0)} and got_a[-1].from_peer == b.peer
    sub.cancel()
    sub.cancel()
    sb["k"] = 3
    net.pump()
    assert len(got_a) == 2


def test_an_observer_that_raises_does_not_stop_others(
    pair: tuple[FakeNet, Node, Node], caplog: pytest.LogCaptureFixture
) -> None:
    _, a, _ = pair
    s = a.store()
    got: list[StoreChange] = []

    def bad(change: StoreChange) -> None:
        raise ValueError("user bug")

    s.observe(bad)
    s.observe(got.append)
    s["x"] = 1
    assert len(got) == 1
    assert any("observer" in r.message for r in caplog.records)


def test_relayed_edits_name_their_author() -> None:
    net = FakeNet()
    a, b, c = net.add("A"), net.add("B"), net.add("C")
    net.connect(a, b)
    net.connect(b, c)
    got: list[StoreChange] = []
    c.store().observe(got.append)
    a.store()["x"] = 1
    net.pump()
    assert got[-1].from_peer == a.peer


def test_wait_for(pair: tuple[FakeNet, Node, Node]) -> None:
    net, a, b = pair
    sb = b.store()
    with pytest.raises(Timeout):
        sb.wait_for(lambda s: "x" in s, timeout=0.05)
    assert issubclass(Timeout, TimeoutError)
    timer = threading.Timer(0.05, lambda: (a.store().__setitem__("x", 1), net.pump()))
    timer.start()
    started = time.monotonic()
    sb.wait_for(lambda s: s.get("x") == 1, timeout=5)
    assert time.monotonic() - started < 4
    timer.join()
    sb.wait_for(lambda s: True, timeout=0)


def test_closed_store_refuses_writes_and_wakes_waiters() -> None:
    net = FakeNet()
    a = net.add("A")
    s = a.store()
    s["x"] = 1
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            s.wait_for(lambda st: "never" in st, timeout=5)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    a.core(a.manager.close)
    t.join(5)
    assert not t.is_alive() and isinstance(errors[0], Closed)
    with pytest.raises(Closed):
        s["y"] = 2
    with pytest.raises(Closed):
        a.manager.shared_dict("other")
    assert s.to_dict() == {"x": 1}  # the last state stays readable


def test_threads_writing_concurrently_with_a_real_core_thread() -> None:
    net = FakeNet()
    peer = FakePeer("a" * 16, "A")
    host = ThreadedHost(net, peer)
    try:
        manager = StoreManager(host)
        s = manager.shared_dict("s")
        changes: list[StoreChange] = []
        s.observe(changes.append)
        n_threads, per_thread = 4, 100

        def writer(t: int) -> None:
            for i in range(per_thread):
                s[f"t{t}-{i}"] = i
                assert s[f"t{t}-{i}"] == i  # read-your-writes
                if i % 10 == 0:
                    with s.batch():
                        s[f"b{t}-{i}"] = t
                        s.pop(f"t{t}-{i}", None)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        host.drain()
        assert len(s) == n_threads * per_thread
        # Writes queued together may reach observers as one change (a key set and then deleted
        # in it does not show at all): replaying the changes from empty gives the contents.
        replay: dict[str, Any] = {}
        for c in changes:
            for key, (old, new) in c.changes.items():
                assert replay.get(key, MISSING) == old
                if new is MISSING:
                    del replay[key]
                else:
                    replay[key] = new
        assert replay == s.to_dict()
        assert all(c.from_peer is None for c in changes)
        doc_items = host.call(lambda: dict(manager.docsync.doc("s").items()))
        assert len(doc_items) == len(s)
    finally:
        host.stop()
    assert not host.core_thread.is_alive() and not host.disp_thread.is_alive()


def test_observers_run_on_the_dispatcher_thread() -> None:
    net = FakeNet()
    peer = FakePeer("b" * 16, "B")
    host = ThreadedHost(net, peer)
    try:
        manager = StoreManager(host)
        s = manager.shared_dict("s")
        threads: list[threading.Thread] = []
        s.observe(lambda change: threads.append(threading.current_thread()))
        s["x"] = 1
        host.drain()
        assert threads == [host.disp_thread]
    finally:
        host.stop()


def test_data_arriving_before_open_is_there_on_open(pair: tuple[FakeNet, Node, Node]) -> None:
    net, a, b = pair
    a.store("late")["k"] = [1]
    net.pump()
    assert b.store("late")["k"] == [1]


def test_import_mpstore_does_not_import_pycrdt() -> None:
    import subprocess
    import sys

    code = "import sys, mpstore, mpstore._store; assert 'pycrdt' not in sys.modules, 'leak'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_engine_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pycrdt")
    assert load_engine("pycrdt").name == "pycrdt"
    monkeypatch.setenv("MPSTORE_ENGINE", "pycrdt")
    assert load_engine().name == "pycrdt"
    with pytest.raises(ValueError):
        load_engine("nope")
    assert load_engine("python").name == "python"
    monkeypatch.setenv("MPSTORE_ENGINE", "python")
    assert load_engine().name == "python"


def test_opening_a_store_without_any_engine_says_what_to_install() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['pycrdt'] = None; sys.modules['mpstore.engines._python'] = None\n"
        "import mpstore\n"
        "from mpstore.engines import load_engine\n"
        "try:\n"
        "    load_engine()\n"
        "except mpstore.EngineUnavailable as e:\n"
        "    assert 'pip install' in str(e), e\n"
        "    assert isinstance(e, ImportError)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_wait_for_also_notices_conditions_outside_the_store(
    pair: tuple[FakeNet, Node, Node],
) -> None:
    _, a, _ = pair
    flag = threading.Event()
    threading.Timer(0.05, flag.set).start()
    a.store().wait_for(lambda s: flag.is_set(), timeout=5)
