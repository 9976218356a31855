"""Issue 12 point 5 over the LAN transport on loopback: a peer process that stops reading
(SIGSTOP: its TCP connection stays open, its socket buffer fills) does not hold a broadcast
back from the others, and is cut as a failed link when a broadcast has waited send_timeout."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("zeroconf")
pytest.importorskip("cryptography")

import mpstore
from mpstore.transports.lan import LanTransport

ROOT = Path(__file__).resolve().parents[2]
SEND_TIMEOUT = 4.0
# Ann must not drop the frozen peer for silence first (that is the heartbeat test's case).
PEER_TIMEOUT = 60.0


class Peer(mpstore.MultipeerConnectivity):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.inbox: queue.Queue[tuple[Any, float]] = queue.Queue()
        self.removed: list[str] = []
        super().__init__(*args, **kwargs)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        self.removed.append(peer.display_name)

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        self.inbox.put((message, time.monotonic()))


def _lan(**kwargs: Any) -> LanTransport:
    return LanTransport(host="127.0.0.1", discovery=False, ip_version="v4", **kwargs)


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def _frozen_cat() -> Iterator[tuple[Peer, Peer, mpstore.PeerID, list[float]]]:
    """Ann and Bob here, Cat a child process, SIGSTOPped, and Ann's link to it held; the list
    gets the time the hold was first seen."""
    opts: dict[str, Any] = {"peer_timeout": PEER_TIMEOUT, "send_timeout": SEND_TIMEOUT}
    ann = Peer("Ann", "slowlan", transport=_lan(), **opts)
    addr = ann.transport.address  # type: ignore[attr-defined]
    bob = Peer("Bob", "slowlan", transport=_lan(peers=[addr]), **opts)
    cat = subprocess.Popen(
        [sys.executable, "-m", "tests.lan.peer_agent", "--name", "Cat", "--service", "slowlan",
         "--host", "127.0.0.1", "--no-discovery", "--static", f"{addr[0]}:{addr[1]}",
         "--peer-timeout", str(PEER_TIMEOUT), "--send-timeout", str(SEND_TIMEOUT)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    stopped = False
    held_at: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not held_at and not done.wait(0.01):
            if any(p.display_name == "Cat" and p.id in ann._node.blocked for p in ann.get_peers()):
                held_at.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert cat.stdout is not None
        assert json.loads(cat.stdout.readline())["kind"] == "ready"
        ann.wait_for_peers(2, timeout=20)
        cat_id = next(p for p in ann.get_peers() if p.display_name == "Cat")

        os.kill(cat.pid, signal.SIGSTOP)  # Cat stops reading; its TCP window fills
        stopped = True
        blob = "x" * (256 * 1024)
        for _ in range(400):  # at most 100 MiB; the kernel's and asyncio's buffers fill first
            if cat_id.id in ann._node.blocked:
                break
            try:
                ann.send(blob, to_peer=cat_id)
            except mpstore.SendTimeout:
                break
        _wait(lambda: cat_id.id in ann._node.blocked, 10, "Ann's link to Cat to be held")
        _wait(lambda: bool(held_at), 5, "the watcher to see the hold")
        yield ann, bob, cat_id, held_at
    finally:
        done.set()
        watcher.join()
        if stopped:
            os.kill(cat.pid, signal.SIGCONT)
        cat.kill()
        cat.communicate(timeout=30)
        bob.end_all()
        ann.end_all()


def test_a_frozen_peer_does_not_hold_a_broadcast_back_from_the_others() -> None:
    with _frozen_cat() as (ann, bob, cat_id, _):
        t0 = time.monotonic()
        ann.send("to everyone")  # before: SendTimeout after SEND_TIMEOUT, and Bob got nothing
        returned = time.monotonic() - t0
        message, at = bob.inbox.get(timeout=10)
        assert message == "to everyone"
        assert at - t0 < SEND_TIMEOUT / 2, at - t0  # Bob was not held back by Cat
        assert SEND_TIMEOUT * 0.5 < returned < SEND_TIMEOUT + 3, returned
        assert cat_id not in ann.get_peers()
        _wait(lambda: "Cat" in ann.removed, 5, "Ann's peer_removed(Cat)")

        t1 = time.monotonic()
        ann.send("next")
        assert time.monotonic() - t1 < SEND_TIMEOUT / 2  # not held for a send_timeout
        assert bob.inbox.get(timeout=10)[0] == "next"


def test_a_frozen_peer_is_cut_after_twice_send_timeout_without_progress() -> None:
    # No send waits for it: the core sees its TLS/TCP buffer not shrink and closes the link.
    with _frozen_cat() as (ann, bob, cat_id, held):
        t_write = time.monotonic()
        ann_store, bob_store = ann.shared_dict("s"), bob.shared_dict("s")
        ann_store["while frozen"] = 1
        _wait(lambda: bob_store.get("while frozen") == 1, 10, "Bob's store to get the write")
        assert time.monotonic() - t_write < SEND_TIMEOUT
        _wait(lambda: "Cat" in ann.removed, 4 * SEND_TIMEOUT, "Cat to be cut")
        cut_after = time.monotonic() - held[0]
        assert 2 * SEND_TIMEOUT * 0.9 < cut_after < 2 * SEND_TIMEOUT * 1.25 + 3, cut_after
        assert cat_id not in ann.get_peers()
