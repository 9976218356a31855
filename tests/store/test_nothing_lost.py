"""Issue 10 parts 3 and 4: writes that returned reach the connected peers, even when the writer
ends at once (end_all, leaving a ``with``), is over its pacing, or has a peer that joined a
moment ago; a gapped update asks for what is missing at once; the runtime never hangs."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import Any

import pytest
from store_fakes import FakeNet
from test_store_memory import Device, devices

import mpstore
from mpstore._errors import Closed
from mpstore._runtime import Runtime


def test_writes_just_made_survive_end_all() -> None:
    with devices() as make:
        a, b = make("A", peer_timeout=10.0), make("B", peer_timeout=10.0)
        a.wait_for_peers(1, timeout=5)
        sa, sb = a.shared_dict("s"), b.shared_dict("s")
        n = 20_000
        for i in range(n):
            sa[f"k{i}"] = i
        a.end_all()
        sb.wait_for(lambda s: len(s) == n, timeout=60)
        assert sb.to_dict() == {f"k{i}": i for i in range(n)}


def test_writes_over_the_pacing_survive_leaving_a_with_block() -> None:
    # B advertises 100 messages/s (the floor): the store may send A->B 20 per second; each
    # 64 KiB value is its own message, so most of these wait for the pacer when A leaves its
    # with block.
    with devices() as make:
        b = make("B", max_message_rate=100.0)
        with make("A") as a:
            a.wait_for_peers(1, timeout=5)
            sa = a.shared_dict("s")
            blob = "x" * (1 << 16)
            for i in range(60):
                sa[f"k{i}"] = blob
                a._runtime.call(lambda: None)  # one transaction each
        sb = b.shared_dict("s")
        sb.wait_for(lambda s: len(s) == 60, timeout=20)


def test_end_all_right_after_a_peer_arrives_keeps_the_writes_held_for_it() -> None:
    with devices() as make:
        make.network.set_latency(0.05)  # type: ignore[attr-defined]
        a = make("A")
        sa = a.shared_dict("s")
        sa["before"] = 0
        b = make("B")
        a.wait_for_peers(1, timeout=5)
        # Within one round trip: B's step 1 has not reached A yet, so A holds these for B.
        for i in range(50):
            sa[f"k{i}"] = i
        a.end_all()
        sb = b.shared_dict("s")
        sb.wait_for(lambda s: len(s) == 51, timeout=10)


def test_a_gapped_update_asks_the_sender_at_once() -> None:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    net.pump()
    sa = a.store()
    sa["x"] = 1
    lost = net.queues[(a.peer.id, b.peer.id)].popleft()  # the link lost it
    assert lost
    sa["y"] = 2  # builds on x's clock: B cannot integrate it without x
    net.pump()
    assert b.store().to_dict() == {"x": 1, "y": 2}


def test_runtime_call_without_timeout_cannot_hang_when_the_loop_stops() -> None:
    rt = Runtime("hang")
    results: list[Any] = []
    posted = threading.Event()
    original_post = rt.post

    def post(fn: Any, *args: Any) -> None:
        original_post(fn, *args)
        posted.set()

    rt.post = post  # type: ignore[method-assign]

    def caller() -> None:
        try:
            results.append(rt.call(lambda: "ran"))
        except Closed as exc:
            results.append(exc)

    original_close = rt.loop.close

    def close() -> None:
        # The post lands after the loop's last run and before it closes.
        threading.Thread(target=caller, daemon=True).start()
        assert posted.wait(5)
        original_close()

    rt.loop.close = close  # type: ignore[method-assign]
    rt.loop.call_soon_threadsafe(rt.loop.stop)
    deadline = time.monotonic() + 5
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    rt.stop()
    assert results and isinstance(results[0], Closed)


class App(Device):
    """The README's pattern: an observer that is a bound method of the object itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scores = self.shared_dict("scores")
        self.sub = self.scores.observe(self.on_change)

    def on_change(self, change: Any) -> None:
        pass


def test_garbage_collection_ends_a_node_whose_observer_is_its_own_method() -> None:
    net = mpstore.MemoryNetwork()
    app = App("ghost", "scores", transport=net)
    ref = weakref.ref(app)
    threads = {t for t in threading.enumerate() if "ghost" in t.name}
    assert threads
    del app
    for _ in range(50):
        gc.collect()
        if ref() is None and not any(t.is_alive() for t in threads):
            break
        time.sleep(0.1)
    assert ref() is None, "the node was never collected"
    assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("kind", ["lambda", "method"])
def test_observers_still_fire_while_the_node_lives(kind: str) -> None:
    with devices() as make:
        a = make("A")
        seen: list[Any] = []

        class Holder:
            def cb(self, change: Any) -> None:
                seen.append(change)

        holder = Holder()
        cb = (lambda change: seen.append(change)) if kind == "lambda" else holder.cb
        sub = a.shared_dict("s").observe(cb)
        del cb, holder  # only the subscription (and the node) keep it
        gc.collect()
        a.shared_dict("s")["k"] = 1
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen
        sub.cancel()
