"""Test helpers: a recording MultipeerConnectivity and bounded waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import mpstore


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Recorder(mpstore.MultipeerConnectivity):
    """Records every callback as (name, peer, message) with the thread it ran on."""

    def __init__(self, *args: Any, refuse: set[str] | None = None, **kwargs: Any) -> None:
        self.events: list[tuple[str, Any, Any]] = []
        self.threads: set[str] = set()
        self.refuse = refuse or set()
        self.asked: list[Any] = []
        self._lock = threading.Lock()
        kwargs.setdefault("peer_timeout", 1.0)
        super().__init__(*args, **kwargs)

    def _record(self, name: str, peer: Any, message: Any = None) -> None:
        with self._lock:
            self.events.append((name, peer, message))
            self.threads.add(threading.current_thread().name)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        self._record("added", peer)

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        self._record("removed", peer)

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        self._record("receive", from_peer, message)

    def accept_peer(self, peer: mpstore.PeerID) -> bool:
        with self._lock:
            self.asked.append(peer)
        return peer.display_name not in self.refuse

    def messages(self, from_peer: Any = None) -> list[Any]:
        with self._lock:
            return [
                m for (n, p, m) in self.events if n == "receive" and (from_peer is None or p == from_peer)
            ]

    def names(self, kind: str) -> list[str]:
        with self._lock:
            return [p.display_name for (n, p, _m) in self.events if n == kind]


def connected(*nodes: mpstore.MultipeerConnectivity) -> Callable[[], bool]:
    """A predicate: every node sees every other node."""

    def check() -> bool:
        for node in nodes:
            peers = {p.id for p in node.get_peers()}
            if peers != {other.my_peer.id for other in nodes if other is not node}:
                return False
        return True

    return check
