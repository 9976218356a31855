"""Two groups of mpstore peers in separate network namespaces, with no route between them but a
route to the server's namespace, converge through a real Yjs server (both dialects)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import cleanup_leftovers, netns_unavailable, wait_for
from tests.yserver.servers import DIALECTS, NodeServer, require_node
from tests.yserver.topology import TwoGroups

pytestmark = pytest.mark.netns


@pytest.fixture
def two_groups(tmp_path: Path) -> Iterator[TwoGroups]:
    reason = netns_unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"namespace tests must run in CI, but: {reason}")
        pytest.skip(f"namespace tests skipped: {reason}")
    require_node()
    cleanup_leftovers()
    net = TwoGroups(2, tmp_path)
    try:
        yield net
    finally:
        net.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_groups_without_a_route_converge_through_the_server(
    dialect: str, two_groups: TwoGroups, tmp_path: Path
) -> None:
    net = two_groups
    token = "tok" if dialect == "hocuspocus" else None
    server = NodeServer(
        dialect, tmp_path / "server.log", host="0.0.0.0", token=token, namespace=net.server_ns
    )
    try:
        server.start()
        # No route between the groups: a0 cannot even reach b0's address.
        probe = net.run_in(net.namespace("a", 0), "ip", "route", "get", net.address("b", 0))
        assert probe.returncode != 0, probe.stdout
        agents = {(g, i): net.spawn(g, i, secret="group-secret") for g in "ab" for i in range(2)}
        for g in "ab":
            wait_for(
                lambda g=g: all(agents[(g, i)].call("peers")["peers"] == [f"{g}{1 - i}"] for i in range(2)),
                40,
                interval=0.3,
                what=f"group {g} mesh",
            )
        # One peer per group connects to the server; the other reaches it only through that peer.
        for g in "ab":
            url = f"ws://{net.server_address(g)}:{server.port}"
            agents[(g, 0)].call("connect", url=url, dialect=dialect, token=token, store="board")
        wait_for(
            lambda: all(agents[(g, 0)].call("server")["state"] == "synced" for g in "ab"), 30, what="synced"
        )
        for (g, i), agent in agents.items():
            agent.call("set_many", store="board", prefix=f"{g}{i}-", count=25)
        expected = {f"{g}{i}-{k}": k for g in "ab" for i in range(2) for k in range(25)}
        wait_for(
            lambda: all(a.call("items", store="board")["items"] == expected for a in agents.values()),
            60,
            interval=0.3,
            what="convergence through the server",
        )
        # Still no path between the groups' peers: mpstore saw only its own group.
        for (g, i), agent in agents.items():
            assert agent.call("peers")["peers"] == [f"{g}{1 - i}"]
    finally:
        server.kill()
