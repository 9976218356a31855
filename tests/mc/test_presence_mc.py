"""Presence over the Multipeer Connectivity transport (simulated framework), per adapter."""

from __future__ import annotations

from typing import Any

import mpstore
from tests.helpers import wait_until

from . import sim
from .test_wrapper_mc import mc_platform  # noqa: F401  (fixture)


def test_presence_over_mc(mc_platform: str, world: sim.World) -> None:  # noqa: F811
    kind = "auto" if mc_platform == "objc_util" else "mc"
    made: list[Any] = []
    try:
        for name in ("Ann", "Bob", "Cid"):
            made.append(mpstore.MultipeerConnectivity(name, "chat", transport=kind))
        ann, bob, cid = made
        for m in made:
            m.wait_for_peers(2, timeout=10)
        ann.presence.set({"choosing": True})
        wait_until(lambda: bob.presence.get(ann.my_peer) == {"choosing": True})
        wait_until(lambda: cid.presence.get(ann.my_peer) == {"choosing": True})
        ann.presence.clear()
        wait_until(lambda: bob.presence.states() == {} and cid.presence.states() == {})
    finally:
        for m in made:
            m.end_all()
