"""Random schedules of starts, stops, closes, failures and sends: the link rules always hold."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import sim
from .helpers import LoopThread, Node

NAMES = ["Ann", "Bob", "Cid"]
OPS = ["start", "stop", "close", "send", "fail_next", "drop_invitations"]


def _check_link_rules(node: Node) -> None:
    """Per link: one up, then frames, then at most one down; names of live links distinct."""
    state: dict[Any, str] = {}
    for kind, link, *_ in list(node.rec.events):
        if kind == "up":
            assert link not in state, f"{node.name}: second link_up for {link}"
            state[link] = "up"
        elif kind == "frame":
            assert state.get(link) == "up", f"{node.name}: frame on {link} while {state.get(link)}"
        elif kind == "down":
            assert state.get(link) == "up", f"{node.name}: link_down for {link} never up"
            state[link] = "down"
    addresses = [e[2] for e in node.rec.events if e[0] == "up" and e[1] in node.rec.live()]
    assert len(addresses) == len(set(addresses)), f"{node.name}: two live links to one peer"


def _check_order(node: Node) -> None:
    """Reliable frames from one sender arrive in the order sent (gaps only across links)."""
    last: dict[str, int] = {}
    for frame in node.rec.frames():
        sender, seq = frame.decode().split(":")
        assert int(seq) > last.get(sender, -1), f"{node.name}: {frame!r} out of order"
        last[sender] = int(seq)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, len(NAMES) - 1)), max_size=10))
def test_random_schedules_keep_the_link_rules_and_converge(
    make_bridge: Callable[[], Any], world: sim.World, schedule: list[tuple[str, int]]
) -> None:
    loop = LoopThread()
    ns = [
        Node(loop, make_bridge(), name, node_id=f"{i + 1:02x}" * 8, invite_timeout=2.0)
        for i, name in enumerate(NAMES)
    ]
    seq = 0
    try:
        for n in ns:
            n.start()
        for op, i in schedule:
            n = ns[i]
            if op == "start":
                n.start()
            elif op == "stop":
                n.stop()
            elif op == "close" and n.rec.live():
                n.close_link(n.rec.live()[0], "test")
            elif op == "send":
                for link in n.rec.live():
                    n.send(link, f"{n.name}:{seq}".encode())
                seq += 1
            elif op == "fail_next":
                world.fail_next_connections += 1
            elif op == "drop_invitations":
                world.drop_invitations = not world.drop_invitations
            time.sleep(0.03)
        world.drop_invitations = False
        world.fail_next_connections = 0
        for n in ns:  # everyone looks again: a fresh identity each, found anew
            n.stop()
        for n in ns:
            n.start()
        for n in ns:
            assert n.rec.wait(lambda n=n: len(n.rec.live()) == len(NAMES) - 1, timeout=5), (
                n.name,
                n.rec.events,
            )
        for n in ns:
            _check_link_rules(n)
            _check_order(n)
    finally:
        world.drop_invitations = False
        world.fail_next_connections = 0
        try:
            for n in ns:
                n.close()
        finally:
            loop.stop()
    world.idle(1.0)
    assert world.unanswered() == []
    assert world.crashes == []
