"""Strangers on Multipeer Connectivity (the framework simulation): a device that copies a node id
cannot disturb a live link, and failed proofs are counted per device, not for all of MC."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import Recorder, connected, wait_until
from tests.mc import sim
from tests.mc.conftest import adapter, loop, make_bridge, nodes, world  # noqa: F401
from tests.mc.helpers import Node
from tests.mc.test_wrapper_mc import mc_platform  # noqa: F401


def _order(a: Recorder, b: Recorder) -> tuple[Recorder, Recorder]:
    """(the one whose node id invites, the one invited)."""
    ka, kb = a.my_peer.id, b.my_peer.id
    return (a, b) if (len(ka), ka) < (len(kb), kb) else (b, a)


@pytest.mark.parametrize("secret", [None, "table 4"])
def test_a_device_copying_a_node_id_never_kicks_a_live_link(
    mc_platform: str,  # noqa: F811
    world: sim.World,  # noqa: F811
    nodes: Callable[..., Node],  # noqa: F811
    secret: str | None,
) -> None:
    kw: dict[str, Any] = {"transport": "mc", "peer_timeout": 2.0, "handshake_timeout": 2.0}
    if secret:
        kw["secret"] = secret
    ann, bob = Recorder("Ann", "chat", **kw), Recorder("Bob", "chat", **kw)
    try:
        wait_until(connected(ann, bob), timeout=10)
        small, large = _order(ann, bob)
        before = world.invitations
        # Mal's device advertises the smaller node's id and invites the larger node with it.
        mal = nodes("Mal", node_id=small.my_peer.id, invite_timeout=2.0)
        mal.start()
        wait_until(lambda: world.invitations > before, timeout=5)
        time.sleep(4.0)  # two handshake timeouts
        assert [p.display_name for p in large.get_peers()] == [small.my_peer.display_name]
        assert large.names("removed") == [] and small.names("removed") == []
        large.send({"still": "here"})
        wait_until(lambda: small.messages() == [{"still": "here"}], timeout=5)
    finally:
        for m in (ann, bob):
            m.end_all()


def test_failed_proofs_on_mc_shut_out_no_one_else(
    mc_platform: str,  # noqa: F811
    world: sim.World,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every MC device once shared one failure key: five wrong-secret devices locked out all."""
    import logging

    kw: dict[str, Any] = {"transport": "mc", "peer_timeout": 2.0}
    made: list[Recorder] = []
    try:
        with caplog.at_level(logging.WARNING, logger="mpstore"):
            ann = Recorder("Ann", "chat", secret="table 4", **kw)
            made.append(ann)
            made += [Recorder(f"Eve{i}", "chat", secret=f"guess {i}", **kw) for i in range(6)]
            wait_until(lambda: caplog.text.count("authentication with") >= 6, timeout=15)
        bob = Recorder("Bob", "chat", secret="table 4", **kw)
        made.append(bob)
        wait_until(connected(ann, bob), timeout=10)
        assert [p.display_name for p in ann.get_peers()] == ["Bob"]
    finally:
        for m in made:
            m.end_all()


def test_an_advertisement_copying_a_node_id_does_not_keep_the_real_node_out(
    world: sim.World,  # noqa: F811
    nodes: Callable[..., Node],  # noqa: F811
) -> None:
    """Mal advertises Ann's node id after Bob found Ann. When Bob's link to Ann ends and the
    one to Mal fails its handshake (closed by Bob's node), Bob must still invite the real Ann
    (the copy used to replace her as the one to invite, for good)."""
    lo, hi = sorted(("1" * 16, "f" * 16))
    bob = nodes("Bob", node_id=lo, invite_timeout=2.0)  # Bob invites
    ann = nodes("Ann", node_id=hi, invite_timeout=2.0)
    ann.start()
    bob.start()
    assert bob.wait_links(1) and ann.wait_links(1)

    def live_to(name: str) -> list[Any]:
        return [e[1] for e in bob.rec.kinds("up") if e[2] == f"mc:{name}" and e[1] in bob.rec.live()]

    mal = nodes("Mal", node_id=hi, invite_timeout=2.0)
    mal.start()
    time.sleep(0.5)  # Bob has found Mal's copy of Ann's node id
    (to_ann,) = live_to("Ann")
    bob.close_link(to_ann, "no sign of life")  # as Bob's node does when heartbeats fail
    assert bob.rec.wait(lambda: bool(live_to("Mal")), timeout=5)
    bob.close_link(live_to("Mal")[0], "handshake not finished")  # a copy never proves anything
    assert bob.rec.wait(lambda: bool(live_to("Ann")), timeout=8), bob.rec.events


def test_sealed_mc_links_carry_messages_and_stores(
    mc_platform: str,  # noqa: F811
    world: sim.World,  # noqa: F811
) -> None:
    """With a secret every frame on MC is sealed: app messages and a store with a value larger
    than a frame (fragmented inside the seal) still arrive whole."""
    kw: dict[str, Any] = {"transport": "mc", "secret": "table 4"}
    ann, bob = Recorder("Ann", "chat", **kw), Recorder("Bob", "chat", **kw)
    try:
        wait_until(connected(ann, bob), timeout=10)
        big = "x" * 100_000
        ann.send({"big": big})
        wait_until(lambda: bob.messages() == [{"big": big}], timeout=10)
        store = ann.shared_dict("notes")
        store["big"] = big
        other = bob.shared_dict("notes")
        other.wait_for(lambda s: s.get("big") == big, timeout=10)
    finally:
        ann.end_all()
        bob.end_all()
