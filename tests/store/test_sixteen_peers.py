"""More than Apple's 8: 16 peers on the memory network (full mesh) and in a partial mesh of the
store layers converge, and one edit costs N-1 messages in the full mesh."""

from __future__ import annotations

import random

from store_fakes import FakeNet
from test_store_memory import devices, wait_equal


def test_sixteen_peers_converge_on_the_memory_network() -> None:
    with devices() as make:
        devs = [make(f"P{i}", max_peers=16, peer_timeout=5.0) for i in range(16)]
        for d in devs:
            d.wait_for_peers(15, timeout=60)
        for i, d in enumerate(devs):
            s = d.shared_dict("s")
            s[f"k{i}"] = i
            s["shared"] = i
        final = wait_equal(devs, timeout=60)
        assert {k: v for k, v in final.items() if k != "shared"} == {f"k{i}": i for i in range(16)}
        assert final["shared"] in range(16)

        def sent() -> int:
            return sum(d._node.store.docsync.stats.sent for d in devs)  # type: ignore[union-attr]

        before = sent()
        devs[3].shared_dict("s")["one"] = 1
        wait_equal(devs, timeout=30)
        assert sent() - before == 15


def test_sixteen_peers_converge_in_a_partial_mesh() -> None:
    net = FakeNet(seed=16)
    nodes = [net.add(f"P{i}") for i in range(16)]
    rng = random.Random(16)
    for i in range(1, 16):  # a random tree, then a few extra links
        net.connect(nodes[i], nodes[rng.randrange(i)])
    for _ in range(8):
        a, b = rng.sample(nodes, 2)
        net.connect(a, b)
    for i, node in enumerate(nodes):
        node.store()[f"k{i}"] = i
    net.pump()
    expected = {f"k{i}": i for i in range(16)}
    assert all(n.store().to_dict() == expected for n in nodes)
