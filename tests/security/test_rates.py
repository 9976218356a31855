"""Advertised message rates have a floor: a peer advertising a crawl cannot stall or fail our
sends, and one slow peer never fails a broadcast to the others (memory network)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import mpstore
from mpstore import _core
from mpstore._session import MIN_MESSAGE_RATE, Hello, advertised_rate
from tests.helpers import Recorder, connected, wait_until


def test_advertised_rates_have_a_floor() -> None:
    def hello(rate: Any) -> Hello:
        return Hello("a" * 32, "A", extra={"rate": rate})

    assert advertised_rate(hello(0.001)) == MIN_MESSAGE_RATE
    assert advertised_rate(hello(5000)) == 5000.0
    for nonsense in (0, -1, True, "fast", None, float("nan"), float("inf")):
        assert advertised_rate(hello(nonsense)) is None
    with pytest.raises(mpstore.ConfigurationError):
        mpstore.MultipeerConnectivity("Ann", "chat", transport=mpstore.MemoryNetwork(), max_message_rate=1)


def test_a_peer_advertising_a_crawl_does_not_fail_a_broadcast(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _core.Hello

    def crawling(peer_id: str, display_name: str, *args: Any, **kwargs: Any) -> Hello:
        if display_name == "Slow":
            kwargs["extra"] = {"rate": 0.001}  # a hostile (or broken) peer's hello
        return real(peer_id, display_name, *args, **kwargs)

    monkeypatch.setattr(_core, "Hello", crawling)
    net = mpstore.MemoryNetwork()
    ann = Recorder("Ann", "chat", transport=net, send_timeout=2.0)
    cid = Recorder("Cid", "chat", transport=net)
    slow = Recorder("Slow", "chat", transport=net)
    try:
        wait_until(connected(ann, cid, slow))
        start = time.monotonic()
        for i in range(30):
            ann.send({"n": i})  # to everyone, the crawling peer included
        elapsed = time.monotonic() - start
        wait_until(lambda: len(cid.messages()) == 30, timeout=10)
        assert cid.messages() == [{"n": i} for i in range(30)]
        wait_until(lambda: len(slow.messages()) == 30, timeout=10)
        # Paced at three quarters of the floor (75 a second, after a burst of 100): well under 2 s.
        assert elapsed < 2.0, elapsed
    finally:
        for m in (ann, cid, slow):
            m.end_all()
