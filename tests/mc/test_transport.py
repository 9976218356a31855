"""MCTransport over each adapter over the simulated framework, with a recording listener."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from mpstore import ServiceTypeNotDeclared, TransportError
from mpstore.transports.mc.transport import INFO_KEY, MAX_REMOTE_PEERS

from . import sim
from .helpers import LoopThread, Node

NodeMaker = Callable[..., Node]


def ids(n: int) -> list[str]:
    """Node ids in increasing order (the first invites the others)."""
    return [f"{i:02x}" * 8 for i in range(1, n + 1)]


def test_two_nodes_one_invitation_one_link_each(nodes: NodeMaker, world: sim.World) -> None:
    lo, hi = ids(2)
    a, b = nodes("Ann", node_id=lo), nodes("Bob", node_id=hi)
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    time.sleep(0.05)
    assert world.invitations == 1  # only the smaller id invites
    assert world.collisions == 0
    assert len(a.rec.kinds("up")) == 1 and len(b.rec.kinds("up")) == 1
    assert a.rec.kinds("up")[0][2] == "mc:Bob"


def test_reliable_frames_arrive_whole_and_in_order(nodes: NodeMaker) -> None:
    a, b = nodes("Ann"), nodes("Bob")
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    la, lb = a.rec.live()[0], b.rec.live()[0]
    sent = [bytes([i % 256]) * (1 + i * 37 % 5000) for i in range(200)]
    assert all(a.send(la, f) for f in sent)
    assert b.send(lb, b"back")
    assert b.rec.wait(lambda: len(b.rec.frames()) == 200)
    assert b.rec.frames(lb) == sent
    assert a.rec.wait(lambda: a.rec.frames() == [b"back"])


def test_frame_over_max_or_unknown_link_is_refused(nodes: NodeMaker) -> None:
    a, b = nodes("Ann"), nodes("Bob")
    a.start()
    b.start()
    assert a.wait_links(1)
    link = a.rec.live()[0]
    assert not a.send(link, b"x" * (a.transport.max_frame_size + 1))
    assert a.send(link, b"x" * a.transport.max_frame_size)
    assert not a.send("mc-nope", b"x")


def test_four_nodes_full_mesh_without_collisions(nodes: NodeMaker, world: sim.World) -> None:
    ns = [nodes(f"P{i}") for i in range(4)]
    for n in ns:
        n.start()
    for n in ns:
        assert n.wait_links(3), n.rec.events
    assert world.collisions == 0
    assert world.invitations == 6


def test_discovery_info_carries_node_id_and_user_info(nodes: NodeMaker, world: sim.World) -> None:
    a = nodes("Ann", info={"team": "red"})
    a.start()
    assert a.rec.wait(lambda: bool(world.advertisers))
    info = world.advertisers[0].discoveryInfo()
    assert info["team"] == "red"
    assert info[INFO_KEY] == "1." + a.local.peer_id


def test_failed_connection_is_retried_with_a_fresh_session(nodes: NodeMaker, world: sim.World) -> None:
    world.fail_next_connections = 1
    a, b = nodes("Ann"), nodes("Bob")
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    assert world.invitations == 2
    inviter_sessions = {id(at.inviter_session) for at in world.attempts}
    assert len(inviter_sessions) == 2  # a fresh MCSession for the retry
    # The failed attempt never surfaced as a link.
    assert len(a.rec.kinds("up")) == 1 and a.rec.kinds("down") == []
    assert len(b.rec.kinds("up")) == 1 and b.rec.kinds("down") == []


def test_two_failures_give_up_until_found_again(
    nodes: NodeMaker, world: sim.World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mpstore.transports.mc")
    world.fail_next_connections = 2
    lo, hi = ids(2)
    a, b = nodes("Ann", node_id=lo), nodes("Bob", node_id=hi)
    a.start()
    b.start()
    assert not a.wait_links(1, timeout=0.5)
    assert world.invitations == 2
    assert a.rec.events == [] and b.rec.events == []
    assert "could not connect to 'Bob' after 2 attempts" in caplog.text
    b.stop()  # Bob stops advertising: Ann loses him, then finds him again
    b.start()
    assert a.wait_links(1) and b.wait_links(1)


def test_invitation_timeout_then_one_retry(nodes: NodeMaker, world: sim.World) -> None:
    lo, hi = ids(2)
    b = nodes("Bob", node_id=hi)
    b.start()
    a = nodes("Ann", node_id=lo, invite_timeout=0.2)
    world.drop_invitations = True  # Bob is found, but invitations never reach him
    a.start()
    assert a.rec.wait(lambda: world.invitations == 2, timeout=3)
    time.sleep(0.4)
    assert world.invitations == 2
    assert a.rec.events == []
    assert all(at.done and at.why == "timed out" for at in world.attempts)


def test_decline_when_not_looking(nodes: NodeMaker, world: sim.World) -> None:
    lo, hi = ids(2)
    a, b = nodes("Ann", node_id=lo), nodes("Bob", node_id=hi)
    b.start()
    b.stop()
    # Bob is no longer advertising; an invitation that reaches him anyway is declined.
    a.start()
    time.sleep(0.1)
    assert a.rec.events == [] and b.rec.events == []


def test_stop_keeps_links_and_refuses_new_peers(nodes: NodeMaker, world: sim.World) -> None:
    a, b = nodes("Ann"), nodes("Bob")
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    a.stop()
    b.stop()
    c = nodes("Cid")
    c.start()
    time.sleep(0.2)
    assert c.rec.events == []
    assert len(a.rec.live()) == 1 and len(b.rec.live()) == 1
    la = a.rec.live()[0]
    assert a.send(la, b"still here")
    assert b.rec.wait(lambda: b.rec.frames() == [b"still here"])
    a.start()
    assert a.wait_links(2) and c.wait_links(1)


def test_close_link_reports_down_once_on_both_sides(nodes: NodeMaker, world: sim.World) -> None:
    lo, hi = ids(2)
    a, b = nodes("Ann", node_id=lo), nodes("Bob", node_id=hi)
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    la = a.rec.live()[0]
    a.close_link(la, "refused")
    assert a.rec.kinds("down") == [("down", la, "refused")]
    assert b.rec.wait(lambda: len(b.rec.kinds("down")) == 1)
    time.sleep(0.3)
    assert len(a.rec.kinds("down")) == 1 and len(b.rec.kinds("down")) == 1
    assert not a.send(la, b"gone")
    # Closed by us: the inviter does not come straight back.
    assert len(a.rec.kinds("up")) == 1


def test_remote_drop_is_rejoined_once(nodes: NodeMaker, world: sim.World) -> None:
    lo, hi = ids(2)
    a, b = nodes("Ann", node_id=lo), nodes("Bob", node_id=hi)
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    b.close_link(b.rec.live()[0], "bye")  # Bob leaves; Ann still sees him advertising
    assert a.rec.wait(lambda: len(a.rec.kinds("down")) == 1)
    assert a.wait_links(1) and b.wait_links(1)  # Ann re-invites once
    assert len(a.rec.kinds("up")) == 2
    b.close_link(b.rec.live()[0], "bye again")
    assert a.rec.wait(lambda: len(a.rec.kinds("down")) == 2)
    time.sleep(0.3)
    assert a.rec.live() == []  # no endless rejoin loop


def test_unreliable_frames_may_drop_reliable_never(nodes: NodeMaker, world: sim.World) -> None:
    a, b = nodes("Ann"), nodes("Bob")
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    world.unreliable_loss = 0.5
    la = a.rec.live()[0]
    unreliable = [b"u%d" % i for i in range(200)]
    reliable = [b"r%d" % i for i in range(200)]
    for u, r in zip(unreliable, reliable, strict=True):
        assert a.send(la, u, reliable=False)
        assert a.send(la, r, reliable=True)
    assert b.rec.wait(lambda: [f for f in b.rec.frames() if f[:1] == b"r"] == reliable)
    world.idle()

    def unreliable_got() -> list[bytes]:
        return [f for f in b.rec.frames() if f[:1] == b"u"]

    # Every unreliable frame is delivered or counted as dropped (wait: the machine may be loaded).
    assert b.rec.wait(lambda: world.dropped_frames == 200 - len(unreliable_got()), timeout=5)
    got = unreliable_got()
    assert 0 < len(got) < 200 and set(got) <= set(unreliable)


def test_eight_device_limit_is_enforced_with_a_warning(
    nodes: NodeMaker, world: sim.World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mpstore.transports.mc")
    ns = [nodes(f"P{i}", node_id=nid) for i, nid in enumerate(ids(9))]
    for n in ns[:8]:
        n.start()
    for n in ns[:8]:
        assert n.wait_links(7), (n.name, n.rec.events)
    ns[8].start()
    time.sleep(0.3)
    assert ns[8].rec.events == []
    assert all(len(n.rec.live()) == MAX_REMOTE_PEERS for n in ns[:8])
    assert sum(n.transport.full_refusals for n in ns) >= 8
    assert "at most 8 devices" in caplog.text and "'P8'" in caplog.text


def test_background_loss_is_silent_until_the_session_acts(nodes: NodeMaker, world: sim.World) -> None:
    lo, hi = ids(2)
    a, b = nodes("Ann", node_id=lo), nodes("Bob", node_id=hi)
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    la = a.rec.live()[0]
    world.background("Bob")
    assert a.send(la, b"into the void")
    time.sleep(0.2)
    assert a.rec.kinds("down") == [] and b.rec.frames() == []  # the framework says nothing
    a.close_link(la, "peer timed out")  # what the session's heartbeats do
    world.foreground("Bob")
    assert b.rec.wait(lambda: len(b.rec.kinds("down")) == 1)  # Bob learns his session died
    b.stop()
    b.start()  # the app rebuilds on return
    assert a.wait_links(1) and b.wait_links(1)
    assert len(a.rec.kinds("up")) == 2


def test_service_type_not_declared(nodes: NodeMaker, world: sim.World) -> None:
    world.declared_service_types = {"other"}
    a = nodes("Ann")
    a.start()
    assert a.rec.wait(lambda: bool(a.failures))
    err = a.failures[0]
    assert isinstance(err, ServiceTypeNotDeclared) and isinstance(err, TransportError)
    assert "-72008" in str(err) and "NSBonjourServices" in str(err) and "_chat._tcp" in str(err)
    assert a.transport.failure is err
    assert len(a.failures) == 1


def test_close_releases_delegates_and_answers_everything(nodes: NodeMaker, world: sim.World) -> None:
    a, b = nodes("Ann"), nodes("Bob")
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    a.stop()
    a.start()  # retires an advertiser and a browser
    assert len(world.made) == 6
    a.close()
    assert b.rec.wait(lambda: len(b.rec.kinds("down")) == 1)
    n_events = len(a.rec.events)
    assert a.rec.kinds("down")[0][2] == "transport closed"
    b.close()
    world.idle()
    gc.collect()
    time.sleep(0.05)
    assert len(a.rec.events) == n_events
    for obj in [*world.sessions, *world.made]:
        assert obj.delegate() is None, obj
    assert world.advertisers == []


def test_events_after_close_are_dropped(nodes: NodeMaker, world: sim.World) -> None:
    a = nodes("Ann")
    a.start()
    a.close()
    b = nodes("Bob")
    b.start()
    time.sleep(0.1)
    assert a.rec.events == [] and b.rec.events == []


def test_foreign_peers_without_node_id_are_ignored(nodes: NodeMaker, world: sim.World) -> None:
    a = nodes("Ann")
    a.start()
    # An app speaking plain MC on the same service type, without our discovery info.
    other = sim.MCPeerID.alloc().initWithDisplayName_("stranger")
    adv = sim.MCNearbyServiceAdvertiser.alloc().initWithPeer_discoveryInfo_serviceType_(other, {}, "chat")
    adv.startAdvertisingPeer()
    time.sleep(0.1)
    adv.stopAdvertisingPeer()
    assert world.invitations == 0 and a.rec.events == []


def test_delegate_calls_come_from_the_framework_thread(
    nodes: NodeMaker, world: sim.World, adapter: Any
) -> None:
    a, b = nodes("Ann"), nodes("Bob")
    a.start()
    b.start()
    assert a.wait_links(1)
    assert world.delegate_calls > 0 and len(world.framework_thread_ids) == 1


def test_ghost_link_closed_late_is_followed_by_the_new_identity(nodes: NodeMaker, world: sim.World) -> None:
    lo, hi = ids(2)
    a, b = nodes("Ann", node_id=lo), nodes("Bob", node_id=hi)
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    la = a.rec.live()[0]
    world.background("Bob")
    world.foreground("Bob")
    assert b.rec.wait(lambda: len(b.rec.kinds("down")) == 1)
    b.stop()
    b.start()  # Bob is back under a new MCPeerID; Ann still holds the ghost link
    time.sleep(0.2)
    assert a.rec.live() == [la] and b.rec.live() == []
    a.close_link(la, "peer timed out")  # Ann's heartbeats give up on the ghost
    assert a.wait_links(1) and b.wait_links(1)
    assert a.rec.live() != [la]


def test_invitation_from_a_rebuilt_peer_comes_up_beside_the_ghost(nodes: NodeMaker, world: sim.World) -> None:
    lo, hi = ids(2)
    a, b = nodes("Ann", node_id=lo), nodes("Bob", node_id=hi)  # Ann invites
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    lb = b.rec.live()[0]
    world.background("Ann")
    world.foreground("Ann")
    assert a.rec.wait(lambda: len(a.rec.kinds("down")) == 1)
    a.stop()
    a.start()  # Ann is back and invites Bob, who still holds a ghost link to her
    # The invitation only claims Ann's id, so it comes up beside the ghost instead of ending it;
    # the node ends the ghost when it fails its heartbeats (here, by hand) or the new link proves
    # the group secret, and the new link then holds Ann's slot.
    assert a.wait_links(1) and b.wait_links(2)
    assert lb in b.rec.live()
    b.close_link(lb, "no sign of life")
    assert b.wait_links(1) and b.rec.live() != [lb]


def test_framework_queue_never_waits_for_a_busy_core(
    nodes: NodeMaker, world: sim.World, make_bridge: Callable[[], Any]
) -> None:
    ann_core = LoopThread()  # Ann's core thread, apart from Bob's
    a = Node(ann_core, make_bridge(), "Ann")
    try:
        b = nodes("Bob")
        a.start()
        b.start()
        assert a.wait_links(1) and b.wait_links(1)
        lb = b.rec.live()[0]
        busy = threading.Event()

        def block_core() -> None:
            busy.set()
            time.sleep(3.0)

        ann_core.loop.call_soon_threadsafe(block_core)
        assert busy.wait(1)
        t0 = time.monotonic()
        calls = world.delegate_calls
        for i in range(50):
            assert b.send(lb, b"%d" % i)
        # Ann's core is stuck, yet the framework got every frame into her delegate at once.
        assert b.rec.wait(lambda: world.delegate_calls >= calls + 50, timeout=2.5)
        assert time.monotonic() - t0 < 2.9  # within the 3 s that Ann's core is blocked
        assert a.rec.frames() == []  # nothing reached Ann's listener while her core was busy
        assert a.rec.wait(lambda: len(a.rec.frames()) == 50)
        assert a.rec.frames() == [b"%d" % i for i in range(50)]
    finally:
        a.close()
        ann_core.stop()


def test_invitation_to_an_earlier_identity_joins_with_that_identity(
    nodes: NodeMaker, world: sim.World
) -> None:
    lo, hi = ids(2)
    a, b = nodes("Ann", node_id=lo), nodes("Bob", node_id=hi)
    world.invitation_delay = 0.3
    b.start()
    a.start()
    assert a.rec.wait(lambda: world.invitations == 1)
    b.stop()
    b.start()  # Bob renews his MCPeerID while Ann's invitation to the old one is in the air
    assert a.wait_links(1) and b.wait_links(1)
    # The session that accepted was made with the MCPeerID the invitation was addressed to.
    accepted = [at for at in world.attempts if at.invitee_session is not None]
    assert accepted and all(at.invitee_session.myPeerID()._uid == at.invitee_uid for at in accepted)
