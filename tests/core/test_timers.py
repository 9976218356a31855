"""The core schedules its timer from the sessions' deadlines instead of polling."""

from __future__ import annotations

import time
from typing import Any

import pytest

import mpstore
from mpstore import _core
from mpstore._session import SessionConfig
from tests.helpers import wait_until


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts: dict[str, int] = {}
    original = _core.Node._tick

    def counting(self: Any) -> None:
        counts[self.local.display_name] = counts.get(self.local.display_name, 0) + 1
        original(self)

    monkeypatch.setattr(_core.Node, "_tick", counting)
    return counts


def test_a_lone_node_never_wakes_up(ticks: dict[str, int]) -> None:
    with mpstore.MultipeerConnectivity("Ann", "timers", transport=mpstore.MemoryNetwork()):
        time.sleep(1.5)
    assert ticks.get("Ann", 0) == 0  # polling every 250 ms would have made 6


def test_idle_peers_wake_for_heartbeats_only_and_still_time_out(ticks: dict[str, int]) -> None:
    net = mpstore.MemoryNetwork()
    with (
        mpstore.MultipeerConnectivity("Ann", "timers", transport=net, peer_timeout=3.0) as ann,
        mpstore.MultipeerConnectivity("Bob", "timers", transport=net, peer_timeout=3.0) as bob,
    ):
        ann.wait_for_peers(1, timeout=10)
        bob.wait_for_peers(1, timeout=10)
        heartbeat = SessionConfig(peer_timeout=3.0).heartbeat_interval
        ticks.clear()
        time.sleep(3.0)
        # One wake-up per heartbeat (plus a little slack), not one every 250 ms (12 in 3 s).
        assert ticks.get("Ann", 0) <= 3.0 / heartbeat + 2, (ticks, heartbeat)
        assert ticks.get("Ann", 0) >= 1
        net.kill(bob)
        started = time.monotonic()
        wait_until(lambda: not ann.get_peers(), timeout=10)
        assert time.monotonic() - started < 3.0 + 1.5


def test_a_timer_that_fails_on_one_link_stays_armed(monkeypatch: pytest.MonkeyPatch) -> None:
    # A link whose reading is paused (push-back) gets no pump from incoming frames: only the
    # timer sends its heartbeats, so one failing link must not leave the timer unarmed.
    from mpstore import _session

    net = mpstore.MemoryNetwork()
    with (
        mpstore.MultipeerConnectivity("Ann", "timers", transport=net) as ann,
        mpstore.MultipeerConnectivity("Bob", "timers", transport=net) as bob,
    ):
        ann.wait_for_peers(1, timeout=10)
        bob.wait_for_peers(1, timeout=10)

        def broken(self: Any, now: float) -> None:
            raise RuntimeError("a bug in one link's timer")

        monkeypatch.setattr(_session.LinkSession, "handle_timer", broken)
        node = ann._node

        def tick_with_every_deadline_due() -> float | None:
            for entry in node.links.values():
                entry.session._last_sent = -1e9  # a heartbeat is due now
            node._tick()
            return node._tick_at

        armed = ann._runtime.call(tick_with_every_deadline_due, timeout=5)
        assert armed is not None
