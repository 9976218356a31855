"""Issue 10 part 2 over the LAN transport on loopback: back-pressure from the user's call to the
socket. A transport with a small send buffer makes the failures of old deterministic: a send that
returned was lost when the buffer overflowed, and a store bigger than the buffer never reached a
newcomer."""

from __future__ import annotations

import queue
from typing import Any

import pytest

pytest.importorskip("zeroconf")
pytest.importorskip("cryptography")

import mpstore
from mpstore.transports.lan import LanTransport

MiB = 1 << 20


class Peer(mpstore.MultipeerConnectivity):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.removed: list[str] = []
        super().__init__(*args, **kwargs)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        self.removed.append(peer.display_name)

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        self.inbox.put(message)


def _lan(max_buffer: int = 32 * MiB, **kwargs: Any) -> LanTransport:
    return LanTransport(host="127.0.0.1", discovery=False, ip_version="v4", max_buffer=max_buffer, **kwargs)


def test_back_to_back_16_mib_sends_all_arrive() -> None:
    ann = Peer("Ann", "bp", transport=_lan(), peer_timeout=10.0)
    addr = ann.transport.address  # type: ignore[attr-defined]
    bob = Peer("Bob", "bp", transport=_lan(max_buffer=24 * MiB, peers=[addr]), peer_timeout=10.0)
    try:
        bob.wait_for_peers(1, timeout=10)
        ann.wait_for_peers(1, timeout=10)
        big = "z" * (16 * MiB - 64)
        for i in range(4):
            bob.send([i, big])  # each returned: each must arrive (the link stays up)
        got = [ann.inbox.get(timeout=60) for _ in range(4)]
        assert [g[0] for g in got] == [0, 1, 2, 3] and all(g[1] == big for g in got)
        assert not ann.removed and not bob.removed
    finally:
        bob.end_all()
        ann.end_all()


def _store_reaches_newcomer(megabytes: int, max_buffer: int) -> None:
    old = Peer("Old", "bigstore", transport=_lan(max_buffer=max_buffer), peer_timeout=10.0)
    new: Peer | None = None
    try:
        s = old.shared_dict("s")
        blob = "b" * MiB
        for i in range(megabytes):
            s[f"k{i}"] = f"{i}:{blob}"
        addr = old.transport.address  # type: ignore[attr-defined]
        new = Peer("New", "bigstore", transport=_lan(peers=[addr]), peer_timeout=10.0)
        d = new.shared_dict("s")
        d.wait_for(lambda d: len(d) == megabytes, timeout=120)
        assert d[f"k{megabytes - 1}"] == f"{megabytes - 1}:{blob}"
        assert not old.removed and not new.removed  # no link dropped on the way
    finally:
        if new is not None:
            new.end_all()
        old.end_all()


def test_a_store_larger_than_the_send_buffer_reaches_a_newcomer() -> None:
    _store_reaches_newcomer(48, max_buffer=8 * MiB)


@pytest.mark.slow
def test_a_200_mb_store_reaches_a_newcomer() -> None:
    _store_reaches_newcomer(200, max_buffer=32 * MiB)
