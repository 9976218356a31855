"""A steady stream of frames must not starve the heartbeat timer (the link then dropped as silent)."""

from __future__ import annotations

import time

import mpstore


class Counting(mpstore.MultipeerConnectivity):
    def __init__(self, *args: object, **kwargs: object) -> None:
        self.removed: list[str] = []
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        self.removed.append(peer.display_name)


def test_a_peer_writing_every_millisecond_keeps_its_link() -> None:
    # Before the fix, every frame re-armed the receiver's overdue timer MIN_TICK later, so its
    # heartbeat never went out and the writer dropped it after peer_timeout, again and again.
    net = mpstore.MemoryNetwork()
    a = Counting("a", "stream", transport=net, peer_timeout=1.5)
    b = Counting("b", "stream", transport=net, peer_timeout=1.5)
    try:
        a.wait_for_peers(1, timeout=10)
        store = b.shared_dict("x")
        end = time.monotonic() + 4.0
        i = 0
        while time.monotonic() < end:
            store["k"] = i
            i += 1
            time.sleep(0.001)
        assert a.removed == [] and b.removed == [], (a.removed, b.removed)
        a.shared_dict("x").wait_for(lambda d: d.get("k") == i - 1, timeout=10)
    finally:
        a.end_all()
        b.end_all()
