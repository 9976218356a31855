"""The LAN transport across network namespaces: real mDNS, real TLS, killed processes, cut links.

Each test builds its own namespaces (see tests/netns.py); mDNS runs only inside them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

import pytest

from tests.netns import NetnsLan, wait_for

pytestmark = pytest.mark.netns

TIMEOUT = 3.0  # peer_timeout of the agents


def _names(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


def _mesh(lan: NetnsLan, n: int, timeout: float) -> float:
    names = _names(n)

    def full() -> bool:
        return all(sorted(lan.agents[i].peer_names()) == sorted(set(names) - {names[i]}) for i in range(n))

    return wait_for(full, timeout, interval=0.2, what=f"{n} peers to see each other")


def _start(lan: NetnsLan, n: int, *extra: str) -> None:
    for i in range(n):
        lan.spawn(i, f"p{i}", "--peer-timeout", str(TIMEOUT), *extra)


def _inbox(lan: NetnsLan, i: int) -> list[tuple[str, object]]:
    return [(m["from"], m["message"]) for m in lan.agents[i].call("inbox")["inbox"]]


def test_three_peers_discover_each_other_and_exchange_messages(
    netns_lan: Callable[[int], NetnsLan],
) -> None:
    lan = netns_lan(3)
    _start(lan, 3)
    _mesh(lan, 3, timeout=20)
    a0, a1, a2 = (lan.agents[i] for i in range(3))
    a0.call("send", message={"to": "all"})
    a1.call("send", message="just p2", to=["p2"])
    a2.call("send", message=[1, 2, 3], to=["p0", "p1"])
    wait_for(
        lambda: len(_inbox(lan, 2)) == 2 and len(_inbox(lan, 1)) == 2 and len(_inbox(lan, 0)) == 1,
        5,
        what="messages",
    )
    assert sorted(_inbox(lan, 0), key=str) == [("p2", [1, 2, 3])]
    assert sorted(_inbox(lan, 1), key=str) == sorted([("p0", {"to": "all"}), ("p2", [1, 2, 3])], key=str)
    assert sorted(_inbox(lan, 2), key=str) == sorted([("p0", {"to": "all"}), ("p1", "just p2")], key=str)
    for i in range(3):  # one connection per pair: each peer joined exactly once everywhere
        events = lan.agents[i].call("events")["events"]
        assert [e["event"] for e in events] == ["added", "added"], events
    # zeroconf runs on mpstore's core loop: no thread of its own.
    threads = lan.agents[0].call("threads")["threads"]
    assert [t for t in threads if not t.startswith("mpstore-")] == ["MainThread"], threads


@pytest.mark.parametrize("version", ["all", "v6"])
def test_ipv4_and_ipv6_discovery_links_three_peers(
    netns_lan: Callable[[int], NetnsLan], version: str
) -> None:
    lan = netns_lan(3)
    _start(lan, 3, "--ip-version", version)
    _mesh(lan, 3, timeout=20)
    lan.agents[0].call("send", message="dual stack")
    wait_for(lambda: ("p0", "dual stack") in _inbox(lan, 2), 5, what="message")


def test_chosen_interfaces_by_name_and_by_address(netns_lan: Callable[[int], NetnsLan]) -> None:
    lan = netns_lan(2)
    lan.spawn(0, "p0", "--interface", "eth0")
    lan.spawn(1, "p1", "--interface", lan.address(1))
    _mesh(lan, 2, timeout=20)


def test_eight_peers_form_a_full_mesh(netns_lan: Callable[[int], NetnsLan]) -> None:
    lan = netns_lan(8)
    _start(lan, 8)
    _mesh(lan, 8, timeout=45)
    for i in range(8):
        events = lan.agents[i].call("events")["events"]
        assert len(events) == 7 and all(e["event"] == "added" for e in events), events


def test_killed_peer_is_removed_within_the_timeout_and_rejoins(
    netns_lan: Callable[[int], NetnsLan],
) -> None:
    lan = netns_lan(3)
    _start(lan, 3)
    _mesh(lan, 3, timeout=20)
    lan.agents[2].kill()
    t0 = time.monotonic()
    wait_for(
        lambda: all(lan.agents[i].peer_names() == [f"p{1 - i}"] for i in (0, 1)),
        TIMEOUT + 3,
        what="the killed peer removed",
    )
    assert time.monotonic() - t0 < TIMEOUT + 2.5
    lan.spawn(2, "p2", "--peer-timeout", str(TIMEOUT))
    _mesh(lan, 3, timeout=20)


def test_cut_link_longer_than_the_timeout_then_restored_reconnects(
    netns_lan: Callable[[int], NetnsLan],
) -> None:
    lan = netns_lan(3)
    _start(lan, 3)
    _mesh(lan, 3, timeout=20)
    lan.cut(2)
    wait_for(lambda: lan.agents[0].peer_names() == ["p1"], TIMEOUT + 3, what="p2 gone for p0")
    wait_for(lambda: lan.agents[2].peer_names() == [], TIMEOUT + 3, what="p2 alone")
    time.sleep(1.0)
    lan.restore(2)
    _mesh(lan, 3, timeout=25)
    lan.agents[0].call("send", message="after the cut")
    wait_for(lambda: ("p0", "after the cut") in _inbox(lan, 2), 5, what="message after the cut")


def test_stop_looking_refuses_a_newcomer_and_start_admits_it(
    netns_lan: Callable[[int], NetnsLan],
) -> None:
    lan = netns_lan(3)
    lan.spawn(0, "p0", "--peer-timeout", str(TIMEOUT))
    lan.spawn(1, "p1", "--peer-timeout", str(TIMEOUT))
    _mesh(lan, 2, timeout=20)
    for i in (0, 1):
        lan.agents[i].call("stop")
    lan.spawn(2, "p2", "--peer-timeout", str(TIMEOUT))
    time.sleep(5.0)
    assert lan.agents[2].peer_names() == []
    assert lan.agents[0].peer_names() == ["p1"] and lan.agents[1].peer_names() == ["p0"]
    for i in (0, 1):
        lan.agents[i].call("start")
    _mesh(lan, 3, timeout=20)


def test_garbage_and_half_open_connections_do_not_stop_a_peer(
    netns_lan: Callable[[int], NetnsLan],
) -> None:
    lan = netns_lan(3)
    lan.spawn(0, "p0", "--peer-timeout", str(TIMEOUT))
    lan.spawn(1, "p1", "--peer-timeout", str(TIMEOUT))
    _mesh(lan, 2, timeout=20)
    port = lan.agents[0].hello["port"]
    # From a third namespace: garbage bytes, and connections that never say anything.
    lan.spawn(2, "mallory", "--no-discovery", "--service", "other")
    lan.agents[2].call("poke", host=lan.address(0), port=port, garbage=True, count=3)
    lan.agents[2].call("poke", host=lan.address(0), port=port, count=5)
    for k in range(20):
        lan.agents[1].call("send", message=k)
    wait_for(lambda: len(_inbox(lan, 0)) == 20, 5, what="messages past the garbage")
    assert [m for _, m in _inbox(lan, 0)] == list(range(20))
    time.sleep(TIMEOUT)
    assert lan.agents[0].peer_names() == ["p1"] and lan.agents[1].peer_names() == ["p0"]
    events = lan.agents[0].call("events")["events"]
    assert [e["event"] for e in events] == ["added"]


def test_peers_command_lists_services_with_their_discovery_info(
    netns_lan: Callable[[int], NetnsLan],
) -> None:
    lan = netns_lan(3)
    lan.spawn(0, "Ann", "--info", "team=red")
    lan.spawn(1, "Bob", "--info", "team=blue,seat=2")
    res = lan.run_in(2, sys.executable, "-m", "mpstore", "peers", "--service", "nstest", "--wait", "3")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = sorted(res.stdout.splitlines())
    assert lines == [
        f"Ann\t{lan.address(0)}:{lan.agents[0].hello['port']}\tteam=red",
        f"Bob\t{lan.address(1)}:{lan.agents[1].hello['port']}\tseat=2 team=blue",
    ]


def test_frozen_peer_is_removed_by_the_heartbeat_timeout(netns_lan: Callable[[int], NetnsLan]) -> None:
    lan = netns_lan(2)
    _start(lan, 2)
    _mesh(lan, 2, timeout=20)
    os.kill(lan.agents[1].pid, signal.SIGSTOP)  # its TCP connection stays open, it just goes silent
    try:
        took = wait_for(lambda: lan.agents[0].peer_names() == [], TIMEOUT + 3, what="frozen peer removed")
        assert TIMEOUT * 0.8 < took < TIMEOUT + 2.5
    finally:
        lan.agents[1].kill()


def test_a_stuck_peer_makes_reliable_sends_time_out_with_bounded_memory(
    netns_lan: Callable[[int], NetnsLan],
) -> None:
    lan = netns_lan(3)
    for i in range(3):
        lan.spawn(i, f"p{i}", "--peer-timeout", "30", "--send-timeout", "1.5")
    _mesh(lan, 3, timeout=20)
    os.kill(lan.agents[1].pid, signal.SIGSTOP)  # p1 stops reading; its TCP window fills
    try:
        rss_before = lan.agents[0].call("send_until_stuck", to="p2", size=1000, count=1)["rss_kib"]
        res = lan.agents[0].call("send_until_stuck", to="p1", size=256 * 1024, count=2000, timeout=60)
        assert res["failure"] == "SendTimeout", res
        # 2000 x 256 KiB = 500 MiB were offered; far less was ever held.
        assert res["sent"] < 400, res
        assert res["rss_kib"] - rss_before < 64 * 1024, res
        # The other peer is not slowed down.
        t0 = time.monotonic()
        res2 = lan.agents[0].call("send_until_stuck", to="p2", size=1000, count=200)
        assert res2["failure"] is None and time.monotonic() - t0 < 5, res2
        wait_for(lambda: len(_inbox(lan, 2)) == 201, 5, what="p2 got everything")
    finally:
        lan.agents[1].kill()
