"""MultipeerConnectivity over the LAN transport on loopback (static addresses, no multicast)."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest

pytest.importorskip("zeroconf")
pytest.importorskip("cryptography")

import mpstore
from mpstore.transports.lan import LanTransport


class Chat(mpstore.MultipeerConnectivity):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        super().__init__(*args, **kwargs)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        self.inbox.put(("added", peer.display_name))

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        self.inbox.put(("removed", peer.display_name))

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        self.inbox.put((from_peer.display_name, message))


def _lan(**kwargs: Any) -> LanTransport:
    return LanTransport(host="127.0.0.1", discovery=False, ip_version="v4", **kwargs)


def _next(mc: Chat, timeout: float = 5.0) -> tuple[str, Any]:
    return mc.inbox.get(timeout=timeout)


def test_two_peers_chat_over_tls_and_leave_cleanly() -> None:
    threads = set(threading.enumerate())
    # peer_timeout well above the bound below: a clean end must not be mistaken for a timeout.
    ann = Chat("Ann", "chat", transport=_lan(), peer_timeout=10.0)
    addr = ann.transport.address  # type: ignore[attr-defined]
    bob = Chat("Bob", "chat", transport=_lan(peers=[addr]), peer_timeout=10.0)
    try:
        assert [p.display_name for p in ann.wait_for_peers(1, timeout=5)] == ["Bob"]
        assert [p.display_name for p in bob.wait_for_peers(1, timeout=5)] == ["Ann"]
        assert _next(ann) == ("added", "Bob") and _next(bob) == ("added", "Ann")
        for i in range(200):
            bob.send({"n": i, "text": "x" * (i * 97)})
        ann.send("hello", to_peer=ann.get_peers()[0])
        big = "y" * (3 * 1024 * 1024)  # fragmented by the session over 256 KiB frames
        ann.send(big)
        got = [_next(ann) for _ in range(200)]
        assert got == [("Bob", {"n": i, "text": "x" * (i * 97)}) for i in range(200)]
        assert _next(bob) == ("Ann", "hello")
        assert _next(bob, 10) == ("Ann", big)
        t0 = time.monotonic()
        bob.end_all()
        assert _next(ann) == ("removed", "Bob")
        assert time.monotonic() - t0 < 5.0  # a clean end is seen at once, not at the timeout
        assert ann.get_peers() == []
    finally:
        bob.end_all()
        ann.end_all()
    deadline = time.monotonic() + 3
    while set(threading.enumerate()) - threads and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not set(threading.enumerate()) - threads


def test_stop_looking_keeps_peers_and_refuses_newcomers() -> None:
    ann = Chat("Ann", "chat", transport=_lan(), peer_timeout=2.0)
    addr = ann.transport.address  # type: ignore[attr-defined]
    bob = Chat("Bob", "chat", transport=_lan(peers=[addr]), peer_timeout=2.0)
    cid = None
    try:
        ann.wait_for_peers(1, timeout=5)
        ann.stop_looking_for_peers()
        cid = Chat("Cid", "chat", transport=_lan(peers=[addr]), peer_timeout=2.0)
        time.sleep(1.5)
        assert [p.display_name for p in ann.get_peers()] == ["Bob"]
        assert cid.get_peers() == []
        bob.send("still here")
        assert _next(ann) == ("added", "Bob")
        assert _next(ann) == ("Bob", "still here")
        ann.start_looking_for_peers()
        assert {p.display_name for p in ann.wait_for_peers(2, timeout=10)} == {"Bob", "Cid"}
    finally:
        for mc in (cid, bob, ann):
            if mc is not None:
                mc.end_all()


class Picky(Chat):
    """Raises on every seventh message (after recording it): the next ones must still come."""

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        super().receive(message, from_peer)
        if isinstance(message, int) and message % 7 == 3:
            raise RuntimeError(f"the app failed on {message}")


def test_a_burst_arrives_in_order_and_a_failing_receive_loses_none_of_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Over the LAN a read's frames reach the dispatcher as one batch of messages: one callback
    # that raises must not take the rest of its batch with it.
    ann = Picky("Ann", "chat", transport=_lan(), peer_timeout=5.0, max_message_rate=None)
    addr = ann.transport.address  # type: ignore[attr-defined]
    bob = Chat("Bob", "chat", transport=_lan(peers=[addr]), peer_timeout=5.0, max_message_rate=None)
    try:
        ann.wait_for_peers(1, timeout=5)
        bob.wait_for_peers(1, timeout=5)
        assert _next(ann) == ("added", "Bob")
        n = 5000
        for i in range(n):
            bob.send(i)
        got = [_next(ann, 30) for _ in range(n)]
        assert got == [("Bob", i) for i in range(n)]
        failed = [r for r in caplog.records if r.exc_info and "the app failed" in str(r.exc_info[1])]
        assert len(failed) == len([i for i in range(n) if i % 7 == 3])
    finally:
        bob.end_all()
        ann.end_all()
