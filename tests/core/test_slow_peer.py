"""Issue 12 point 5: one peer that stops reading does not fail a broadcast to the others.

The stall is real on the memory network: the stuck peer's ``receive`` callback blocks, so its
node stops reading the link (push-back) while its heartbeats still go out, and the sender's link
to it stays not writable.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import mpstore
from mpstore._core import APP_QUEUE_LIMIT

SEND_TIMEOUT = 4.0
# Longer than any wait here: no one is dropped for silence, only for not reading.
PEER_TIMEOUT = 60.0


class Peer(mpstore.MultipeerConnectivity):
    def __init__(
        self, *args: Any, stuck: threading.Event | None = None, delay: float = 0.0, **kw: Any
    ) -> None:
        self.got: list[tuple[Any, float]] = []
        self.added: list[str] = []
        self.removed: list[str] = []
        self._stuck = stuck
        self._delay = delay
        super().__init__(*args, **kw)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        self.added.append(peer.display_name)

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        self.removed.append(peer.display_name)

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        if self._stuck is not None:
            self._stuck.wait(120)
        if self._delay:
            time.sleep(self._delay)
        self.got.append((message, time.monotonic()))

    def texts(self) -> list[Any]:
        return [m for m, _ in self.got]


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _group(release: threading.Event, **kw: Any) -> tuple[Peer, Peer, Peer]:
    net = mpstore.MemoryNetwork()
    opts: dict[str, Any] = {
        "transport": net,
        "peer_timeout": PEER_TIMEOUT,
        "send_timeout": SEND_TIMEOUT,
        **kw,
    }
    ann = Peer("Ann", "slow", **opts)
    bob = Peer("Bob", "slow", **opts)
    cat = Peer("Cat", "slow", stuck=release, **opts)
    for mc in (ann, bob, cat):
        mc.wait_for_peers(2, timeout=20)
    return ann, bob, cat


def _stall(ann: Peer, cat_id: mpstore.PeerID) -> float:
    """Send Cat enough that its stuck receive makes its node stop reading Ann's link; return
    when Ann's link to it was first seen held.

    The fill is unreliable, so no fill send ever waits for Cat: a reliable one to Cat alone
    would wait send_timeout once the link is full (and raise), and the hold would then have
    begun a send_timeout before this returns, which the timings below must not be skewed by.
    """
    deadline = time.monotonic() + 10
    sent = 0
    while cat_id.id not in ann._node.blocked:
        if time.monotonic() > deadline:
            raise AssertionError("Ann's link to Cat was never held")
        if sent < 2 * APP_QUEUE_LIMIT:
            ann.send({"fill": sent}, to_peer=cat_id, reliable=False)
            sent += 1
        else:
            time.sleep(0.005)
    return time.monotonic()


def _cat(ann: Peer) -> mpstore.PeerID:
    return next(p for p in ann.get_peers() if p.display_name == "Cat")


def test_a_broadcast_reaches_the_healthy_peers_and_cuts_the_one_that_stopped_reading() -> None:
    release = threading.Event()
    ann, bob, cat = _group(release)
    try:
        ann_store, bob_store, cat_store = (mc.shared_dict("s") for mc in (ann, bob, cat))
        ann_store["before"] = 1
        _wait(lambda: cat_store.get("before") == 1 and bob_store.get("before") == 1, 10, "the first sync")
        cat_id = _cat(ann)
        _stall(ann, cat_id)
        # The store's traffic to Bob does not wait for Cat's held link.
        t_store = time.monotonic()
        ann_store["held"] = 3
        _wait(lambda: bob_store.get("held") == 3, 10, "Bob's store to get the write")
        assert time.monotonic() - t_store < SEND_TIMEOUT / 2
        assert cat_id.id in ann._node.blocked

        t0 = time.monotonic()
        ann.send("to everyone")  # before: SendTimeout after SEND_TIMEOUT, and Bob got nothing
        returned = time.monotonic() - t0
        _wait(lambda: "to everyone" in bob.texts(), 10, "Bob to get the broadcast")
        got_at = next(at for m, at in bob.got if m == "to everyone") - t0
        # Bob is not held back by Cat: well under the time Ann gives Cat.
        assert got_at < SEND_TIMEOUT / 2, got_at
        # The send returned once Cat had its send_timeout, with Cat cut as a failed link.
        assert SEND_TIMEOUT * 0.5 < returned < SEND_TIMEOUT + 3, returned
        assert cat_id not in ann.get_peers()
        _wait(lambda: "Cat" in ann.removed, 5, "Ann's peer_removed(Cat)")
        assert [p.display_name for p in ann.get_peers()] == ["Bob"]

        # The store is not held back by Cat either, and later broadcasts go at once.
        ann_store["during"] = 2
        t1 = time.monotonic()
        ann.send("next")
        assert time.monotonic() - t1 < SEND_TIMEOUT / 2  # not held for a send_timeout
        _wait(lambda: bob_store.get("during") == 2 and "next" in bob.texts(), 10, "Bob to get the rest")

        # Cat comes back: it reconnects and its store catches up by state vector.
        release.set()
        _wait(lambda: len(ann.get_peers()) == 2, 30, "Cat to reconnect")
        _wait(
            lambda: cat_store.get("during") == 2 and cat_store.get("held") == 3, 20, "Cat's store to resync"
        )
        _wait(lambda: ann.added.count("Cat") == 2, 5, "Ann's second peer_added(Cat)")
    finally:
        release.set()
        for mc in (ann, bob, cat):
            mc.end_all()


def test_a_send_naming_the_stalled_peer_still_raises_send_timeout() -> None:
    release = threading.Event()
    ann, bob, cat = _group(release)
    try:
        cat_id = _cat(ann)
        bob_id = next(p for p in ann.get_peers() if p.display_name == "Bob")
        _stall(ann, cat_id)
        t0 = time.monotonic()
        with pytest.raises(mpstore.SendTimeout, match="sent only to"):
            ann.send("to both", to_peer=[bob_id, cat_id])
        assert SEND_TIMEOUT * 0.8 < time.monotonic() - t0 < SEND_TIMEOUT + 3
        # Bob got it at once; Cat stays connected: the caller named it and decides.
        _wait(lambda: "to both" in bob.texts(), 5, "Bob to get the message")
        assert next(at for m, at in bob.got if m == "to both") - t0 < SEND_TIMEOUT / 2
        assert cat_id in ann.get_peers()
        # Still no progress after 2 x send_timeout: the core cuts it, whoever waits.
        _wait(lambda: "Cat" in ann.removed, 3 * SEND_TIMEOUT, "Cat to be cut")
        with pytest.raises(mpstore.NotConnected):
            ann.send("to Cat alone", to_peer=cat_id)
    finally:
        release.set()
        for mc in (ann, bob, cat):
            mc.end_all()


def test_an_honest_slow_reader_paces_a_broadcast_and_is_not_cut() -> None:
    # Cat reads slowly (5 ms per message): Ann's link to it fills and drains again and again
    # (a hold lasts about APP_QUEUE_LIMIT / 2 messages, 0.64 s here, well under send_timeout).
    # Ann is paced by it, and nobody is cut or loses anything.
    net = mpstore.MemoryNetwork()
    opts: dict[str, Any] = {"transport": net, "peer_timeout": 20.0, "send_timeout": 2 * SEND_TIMEOUT}
    ann = Peer("Ann", "pace", **opts)
    bob = Peer("Bob", "pace", **opts)
    cat = Peer("Cat", "pace", delay=0.005, **opts)
    held = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.002):
            held[0] += bool(ann._node.blocked)

    watcher = threading.Thread(target=watch)
    try:
        for mc in (ann, bob, cat):
            mc.wait_for_peers(2, timeout=20)
        watcher.start()
        n, blob = 1500, "x" * 30_000  # big enough that the memory link's buffer fills
        t0 = time.monotonic()
        for i in range(n):
            ann.send([i, blob])
        took = time.monotonic() - t0
        _wait(lambda: len(cat.got) == n and len(bob.got) == n, 90, "everything to arrive")
        assert [m[0] for m in cat.texts()] == list(range(n))
        assert [m[0] for m in bob.texts()] == list(range(n))
        assert ann.removed == [] and len(ann.get_peers()) == 2
        # Paced by Cat: its link was held, and Ann waited for it (Cat needs 7.5 s for all).
        assert held[0] > 0 and took > 2.0, (held[0], took)
    finally:
        done.set()
        if watcher.is_alive():
            watcher.join()
        for mc in (ann, bob, cat):
            mc.end_all()


def test_a_link_that_drains_nothing_for_twice_send_timeout_is_cut_without_any_send() -> None:
    # Only store traffic goes to Cat: no send waits for it, yet it is cut (its queue would
    # otherwise grow with every write for as long as it stays stuck), and Bob is not held back.
    release = threading.Event()
    ann, bob, cat = _group(release)
    try:
        ann_store, bob_store, cat_store = (mc.shared_dict("s") for mc in (ann, bob, cat))
        cat_id = _cat(ann)
        held_at = _stall(ann, cat_id)
        for i in range(50):
            ann_store[f"k{i}"] = "v" * 1000
            time.sleep(0.02)
        _wait(lambda: bob_store.get("k49") == "v" * 1000, 10, "Bob's store to get every write")
        assert time.monotonic() - held_at < SEND_TIMEOUT  # before Cat's cut: not held back
        _wait(lambda: "Cat" in ann.removed, 4 * SEND_TIMEOUT, "Cat to be cut")
        cut_after = time.monotonic() - held_at
        # The bound is 2 x send_timeout without progress, checked every quarter of it.
        assert 2 * SEND_TIMEOUT * 0.9 < cut_after < 2 * SEND_TIMEOUT * 1.25 + 3, cut_after
        assert cat_id not in ann.get_peers()
        release.set()
        _wait(lambda: cat_store.get("k49") == "v" * 1000, 30, "Cat to come back and resync")
    finally:
        release.set()
        for mc in (ann, bob, cat):
            mc.end_all()
