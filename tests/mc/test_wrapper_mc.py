"""The seed's expected usage through MultipeerConnectivity(..., transport='mc'), per adapter."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

import mpstore
from mpstore.transports import mc
from tests.helpers import Recorder, connected, wait_until

from . import sim


@pytest.fixture
def mc_platform(adapter: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make transport='mc' pick this adapter, as it would on its platform."""
    monkeypatch.delenv("MPSTORE_TRANSPORT", raising=False)
    if adapter.kind == "objc_util":
        # Inside Pythonista: objc_util and the pythonista module are importable.
        monkeypatch.setitem(sys.modules, "pythonista", types.ModuleType("pythonista"))
    else:
        monkeypatch.setattr(mc, "in_pythonista", lambda: False)
        monkeypatch.setattr(mc, "sys", types.SimpleNamespace(platform="darwin", modules=sys.modules))
    yield adapter.kind


def _bridge_kind(m: mpstore.MultipeerConnectivity) -> str:
    return type(m.transport._bridge).__name__  # type: ignore[attr-defined]


def test_seed_expected_usage_over_mc(mc_platform: str, world: sim.World) -> None:
    kind = "auto" if mc_platform == "objc_util" else "mc"  # 'auto' means 'mc' in Pythonista
    made: list[Recorder] = []

    def peer(name: str) -> Recorder:
        made.append(Recorder(name, "chat", transport=kind))  # 1. subclass, 2. instantiate
        return made[-1]

    try:
        ann, bob, cid = peer("Ann"), peer("Bob"), peer("Cid")
        assert ann.transport.name == "mc"
        assert _bridge_kind(ann) == ("ObjCUtilBridge" if mc_platform == "objc_util" else "PyObjCBridge")
        for m in (ann, bob, cid):  # 3. wait for peers
            assert len(m.wait_for_peers(2, timeout=10)) == 2
        wait_until(connected(ann, bob, cid))
        wait_until(lambda: sorted(ann.names("added")) == ["Bob", "Cid"])

        for m in (ann, bob, cid):  # 4. stop looking: Dan cannot join
            m.stop_looking_for_peers()
        dan = peer("Dan")
        time.sleep(0.5)
        assert dan.get_peers() == [] and len(ann.get_peers()) == 2

        ann.send({"hello": "all"})  # 5. send and receive
        bob_peer = next(p for p in ann.get_peers() if p.display_name == "Bob")
        big = "x" * 200_000  # many 16 KiB frames
        ann.send(big, to_peer=bob_peer)
        cid.send("unreliable", reliable=False)
        ann_on_bob = next(p for p in bob.get_peers() if p.display_name == "Ann")
        cid_on_bob = next(p for p in bob.get_peers() if p.display_name == "Cid")
        wait_until(lambda: bob.messages(ann_on_bob) == [{"hello": "all"}, big], timeout=10)
        wait_until(lambda: cid.messages() == [{"hello": "all"}])
        time.sleep(0.1)
        assert bob.messages(cid_on_bob) in ([], ["unreliable"])  # unreliable: may drop
        assert len(bob.messages()) in (2, 3)

        cid.end_all()  # 6. react to removal
        wait_until(lambda: ann.names("removed") == ["Cid"] and bob.names("removed") == ["Cid"])
        with pytest.raises(mpstore.Closed):
            cid.send("late")

        ann.start_looking_for_peers()  # 7. look again: Dan joins
        bob.start_looking_for_peers()
        assert len(dan.wait_for_peers(2, timeout=10)) == 2
        wait_until(connected(ann, bob, dan))
        wait_until(lambda: sorted(ann.names("added")) == ["Bob", "Cid", "Dan"])
        assert ann.names("removed") == ["Cid"]
    finally:
        for m in made:  # 8. end_all
            m.end_all()


def test_silent_loss_is_caught_by_heartbeats(mc_platform: str, world: sim.World) -> None:
    ann = Recorder("Ann", "chat", transport="mc", peer_timeout=1.0)
    bob = Recorder("Bob", "chat", transport="mc", peer_timeout=1.0)
    try:
        ann.wait_for_peers(1, timeout=10)
        bob.wait_for_peers(1, timeout=10)
        world.background("Bob")  # the framework never tells Ann
        t0 = time.monotonic()
        wait_until(lambda: ann.names("removed") == ["Bob"], timeout=5)
        assert time.monotonic() - t0 < 3.0
    finally:
        ann.end_all()
        bob.end_all()


def test_mc_limits_are_clear_errors(mc_platform: str, world: sim.World) -> None:
    with pytest.raises(mpstore.ConfigurationError, match="at most 8 devices"):
        Recorder("Ann", "chat", transport="mc", max_peers=9)
    ann = Recorder("Ann", "chat", transport="mc")
    try:
        with pytest.raises(ValueError, match="can never succeed"):
            ann.wait_for_peers(8, timeout=1)
    finally:
        ann.end_all()


def test_undeclared_service_type_raises_from_wait_for_peers(mc_platform: str, world: sim.World) -> None:
    world.declared_service_types = {"pythonista"}
    ann = Recorder("Ann", "chat", transport="mc")
    try:
        with pytest.raises(mpstore.ServiceTypeNotDeclared, match="NSBonjourServices"):
            ann.wait_for_peers(1, timeout=5)
    finally:
        ann.end_all()


def test_refusal_and_secrets_over_mc_without_a_reconnect_storm(mc_platform: str, world: sim.World) -> None:
    ann = Recorder("Ann", "chat", transport="mc", secret="table 4", refuse={"Bob"})
    bob = Recorder("Bob", "chat", transport="mc", secret="table 4")
    eve = Recorder("Eve", "chat", transport="mc", secret="guess")
    cid = Recorder("Cid", "chat", transport="mc", secret="table 4")
    try:
        wait_until(lambda: {p.display_name for p in ann.get_peers()} == {"Cid"}, timeout=10)
        time.sleep(1.0)
        assert {p.display_name for p in ann.get_peers()} == {"Cid"}
        assert {p.display_name for p in bob.get_peers()} == {"Cid"}
        assert eve.get_peers() == [] and "Eve" not in bob.names("added")
        assert "Bob" not in ann.names("added") and "Ann" not in bob.names("added")
        # One invitation per pair, plus at most one rejoin for each of the 4 refused pairs.
        assert 6 <= world.invitations <= 10
    finally:
        for m in (ann, bob, eve, cid):
            m.end_all()


def test_background_and_return_rejoins_once(mc_platform: str, world: sim.World) -> None:
    made = [Recorder(n, "chat", transport="mc", peer_timeout=1.0) for n in ("Ann", "Bob", "Cid")]
    ann, bob, cid = made
    try:
        wait_until(connected(ann, bob, cid), timeout=10)
        world.background("Bob")  # iOS suspends Bob: nobody is told
        wait_until(lambda: ann.names("removed") == ["Bob"] and cid.names("removed") == ["Bob"])
        world.foreground("Bob")  # Bob's sessions died while he was away
        wait_until(lambda: sorted(bob.names("removed")) == ["Ann", "Cid"], timeout=5)
        bob.stop_looking_for_peers()  # the app rebuilds on return
        bob.start_looking_for_peers()
        wait_until(connected(ann, bob, cid), timeout=10)
        wait_until(lambda: ann.names("added").count("Bob") == 2)
        time.sleep(0.5)
        # Exactly one removal and one new addition each way; no duplicate or ghost peer.
        assert ann.names("added").count("Bob") == 2 and ann.names("removed") == ["Bob"]
        assert sorted(bob.names("added")) == ["Ann", "Ann", "Cid", "Cid"]
        assert len(ann.get_peers()) == 2 and len(bob.get_peers()) == 2
    finally:
        for m in made:
            m.end_all()
