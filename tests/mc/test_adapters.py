"""Adapter details: encodings, blocks, memory, class names on re-run, platform selection."""

from __future__ import annotations

import ctypes
import gc
import importlib
import sys
from typing import Any

import pytest

from mpstore import TransportUnavailable
from mpstore.transports import mc

from . import sim
from .helpers import LoopThread, Node

_OU = "mpstore.transports.mc._objc_util"
_PO = "mpstore.transports.mc._pyobjc"


def _connect_pair(loop: LoopThread, make: Any) -> tuple[Node, Node]:
    a = Node(loop, make(), "Ann", node_id="01" * 8)
    b = Node(loop, make(), "Bob", node_id="02" * 8)
    a.start()
    b.start()
    assert a.wait_links(1) and b.wait_links(1)
    return a, b


def test_objc_util_encodings_match_apple(objc_util_fake: Any) -> None:
    mod = importlib.import_module(_OU)
    classes = mod.delegate_classes()
    declared = {}
    for cls in classes.values():
        for selector, (encoding, _imp, _f) in objc_util_fake.classes[cls.name].methods.items():
            declared[selector] = encoding
    expected = dict(sim.DELEGATE_ENCODINGS)
    del expected["session:didReceiveCertificate:fromPeer:certificateHandler:"]  # accept all
    assert declared == expected
    state = objc_util_fake.classes[classes["session"].name].methods["session:peer:didChangeState:"][2]
    assert state.argtypes[-1] is ctypes.c_longlong


def test_fake_objc_util_turns_an_undeclared_nsinteger_into_none(objc_util_fake: Any) -> None:
    # Why the encodings matter: without one, objc_util treats every argument as an object.
    seen: list[Any] = []

    def session_peer_didChangeState_(_self, _cmd, s, p, state):  # type: ignore[no-untyped-def]
        seen.append(state)  # (objc_util refuses annotated methods)

    cls = objc_util_fake.create_objc_class("Naive", methods=[session_peer_didChangeState_])
    inst = objc_util_fake.classes[cls.name]
    _enc, imp, _ = inst.methods["session:peer:didChangeState:"]
    imp(1, 2, 3, 4, 0)
    imp(1, 2, 3, 4, 2)
    assert seen == [None, 2]


def test_objc_util_blocks_are_copied_called_once_and_released(
    objc_util_fake: Any, loop: LoopThread, world: sim.World
) -> None:
    from mpstore.transports.mc._objc_util import ObjCUtilBridge

    a, b = _connect_pair(loop, ObjCUtilBridge)
    a.close()
    b.close()
    world.idle()
    assert objc_util_fake.block_copies == world.invitations == 1
    assert objc_util_fake.block_releases == 1
    assert objc_util_fake.blocks == {}
    assert world.unanswered() == []


def test_objc_util_close_frees_delegates_and_framework_objects(
    objc_util_fake: Any, loop: LoopThread, world: sim.World
) -> None:
    from mpstore.transports.mc._objc_util import ObjCUtilBridge

    a, b = _connect_pair(loop, ObjCUtilBridge)
    assert len(objc_util_fake.live_delegates()) == 6
    a.close()
    b.close()
    world.idle()
    gc.collect()
    assert objc_util_fake.live_delegates() == []
    freed = objc_util_fake.freed
    assert freed.count("MCSession") == 2
    assert freed.count("MCNearbyServiceAdvertiser") == 2
    assert freed.count("MCNearbyServiceBrowser") == 2
    assert freed.count("FakeInstance") == 6


def test_objc_util_rerun_in_the_same_process_gets_fresh_class_names(
    objc_util_fake: Any, loop: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = importlib.import_module(_OU)
    names1 = {c.name for c in first.delegate_classes().values()}
    monkeypatch.delitem(sys.modules, _OU)  # Pythonista unloads user modules on a re-run
    second = importlib.import_module(_OU)
    names2 = {c.name for c in second.delegate_classes().values()}
    assert names1 == {"MpstoreMCSessionDelegate", "MpstoreMCBrowserDelegate", "MpstoreMCAdvertiserDelegate"}
    assert names2 == {n + "_2" for n in names1}
    a, b = _connect_pair(loop, second.ObjCUtilBridge)
    a.close()
    b.close()


def test_pyobjc_signatures_and_block_metadata(pyobjc_fake: Any) -> None:
    mod = importlib.import_module(_PO)
    declared = {}
    for cls in mod.delegate_classes().values():
        for name, value in vars(cls).items():
            if callable(value) and hasattr(value, "__objc_signature__"):
                declared[name.replace("_", ":")] = value.__objc_signature__.decode()
    expected = dict(sim.DELEGATE_ENCODINGS)
    del expected["session:didReceiveCertificate:fromPeer:certificateHandler:"]
    assert declared == expected
    meta = pyobjc_fake.block_metadata[
        (b"NSObject", b"advertiser:didReceiveInvitationFromPeer:withContext:invitationHandler:")
    ]
    assert meta["arguments"][5]["callable"]["arguments"][1]["type"] == b"Z"


def test_pyobjc_rerun_gets_fresh_class_names(
    pyobjc_fake: Any, loop: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = importlib.import_module(_PO)
    first.delegate_classes()
    monkeypatch.delitem(sys.modules, _PO)
    second = importlib.import_module(_PO)
    names = {c.__name__ for c in second.delegate_classes().values()}
    assert "MpstoreMCSessionDelegate2" in names
    a, b = _connect_pair(loop, second.PyObjCBridge)
    a.close()
    b.close()


def test_make_bridge_picks_objc_util_inside_pythonista(objc_util_fake: Any) -> None:
    from mpstore.transports.mc._objc_util import ObjCUtilBridge

    assert mc.in_pythonista()
    assert isinstance(mc.make_bridge(), ObjCUtilBridge)


def test_make_bridge_picks_pyobjc_on_macos(pyobjc_fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpstore.transports.mc._pyobjc import PyObjCBridge

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(mc, "in_pythonista", lambda: False)
    assert isinstance(mc.make_bridge(), PyObjCBridge)


def test_make_bridge_elsewhere_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mc, "in_pythonista", lambda: False)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(TransportUnavailable, match="Pythonista on iOS or with pyobjc"):
        mc.make_bridge()
    with pytest.raises(TransportUnavailable):
        mc.MCTransport()


def test_in_pythonista_is_false_here() -> None:
    assert "objc_util" not in sys.modules
    assert mc.in_pythonista() is False


# ---------------------------------------------------------------- the simulation's own rules


def _session(world: sim.World, name: str) -> tuple[sim.MCPeerID, sim.MCSession]:
    p = sim.MCPeerID.alloc().initWithDisplayName_(name)
    return p, sim.MCSession.alloc().initWithPeer_(p)


class _Rec(sim._SimObject):
    def __init__(self) -> None:
        self.states: list[tuple[str, int]] = []
        self.invites: list[Any] = []

    def session_peer_didChangeState_(self, s: Any, p: Any, state: int) -> None:
        self.states.append((p.displayName(), state))

    def session_didReceiveData_fromPeer_(self, *a: Any) -> None: ...
    def session_didReceiveStream_withName_fromPeer_(self, *a: Any) -> None: ...
    def session_didStartReceivingResourceWithName_fromPeer_withProgress_(self, *a: Any) -> None: ...
    def session_didFinishReceivingResourceWithName_fromPeer_atURL_withError_(self, *a: Any) -> None: ...

    def advertiser_didReceiveInvitationFromPeer_withContext_invitationHandler_(
        self, adv: Any, p: Any, ctx: Any, handler: Any
    ) -> None:
        self.invites.append(handler)

    def browser_foundPeer_withDiscoveryInfo_(self, *a: Any) -> None: ...
    def browser_lostPeer_(self, *a: Any) -> None: ...


def test_sim_crossing_invitations_fail(world: sim.World) -> None:
    (pa, sa), (pb, sb) = _session(world, "A"), _session(world, "B")
    ra, rb = _Rec(), _Rec()
    for s, r in ((sa, ra), (sb, rb)):
        s.setDelegate_(r)
    ads = []
    for p, r in ((pa, ra), (pb, rb)):
        adv = sim.MCNearbyServiceAdvertiser.alloc().initWithPeer_discoveryInfo_serviceType_(p, {}, "x")
        adv.setDelegate_(r)
        adv.startAdvertisingPeer()
        ads.append(adv)
    ba = sim.MCNearbyServiceBrowser.alloc().initWithPeer_serviceType_(pa, "x")
    bb = sim.MCNearbyServiceBrowser.alloc().initWithPeer_serviceType_(pb, "x")
    ba.invitePeer_toSession_withContext_timeout_(pb, sa, b"", 5)
    bb.invitePeer_toSession_withContext_timeout_(pa, sb, b"", 5)
    world.idle(0.2)
    for r, s in ((ra, sa), (rb, sb)):
        for h in r.invites:
            h(True, s if r is rb else sa)
    world.idle(0.5)
    assert world.collisions == 1
    assert ("B", sim.CONNECTED) not in ra.states and ("A", sim.CONNECTED) not in rb.states
    for adv in ads:
        adv.stopAdvertisingPeer()


def test_sim_session_holds_at_most_eight_peers(world: sim.World) -> None:
    host, hs = _session(world, "host")
    rec = _Rec()
    hs.setDelegate_(rec)
    b = sim.MCNearbyServiceBrowser.alloc().initWithPeer_serviceType_(host, "x")
    guests = []
    for i in range(8):
        p, s = _session(world, f"g{i}")
        r = _Rec()
        s.setDelegate_(r)
        adv = sim.MCNearbyServiceAdvertiser.alloc().initWithPeer_discoveryInfo_serviceType_(p, {}, "x")
        adv.setDelegate_(r)
        adv.startAdvertisingPeer()
        guests.append((p, s, r, adv))
        b.invitePeer_toSession_withContext_timeout_(p, hs, b"", 5)
    world.idle(0.3)
    for _p, s, r, _adv in guests:
        for h in r.invites:
            h(True, s)
    world.idle(0.5)
    assert len(hs.connectedPeers()) == 7
    assert ("g7", sim.NOT_CONNECTED) in rec.states
    assert world.full_refusals == 1
    for *_, adv in guests:
        adv.stopAdvertisingPeer()
