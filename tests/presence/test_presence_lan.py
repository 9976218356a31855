"""Presence over the LAN transport on loopback (TLS, static addresses, no multicast)."""

from __future__ import annotations

import pytest

pytest.importorskip("zeroconf")
pytest.importorskip("cryptography")

import mpstore
from mpstore.transports.lan import LanTransport
from tests.helpers import wait_until


def test_presence_over_lan() -> None:
    a = mpstore.MultipeerConnectivity(
        "Ann", "pres", transport=LanTransport(host="127.0.0.1", discovery=False, ip_version="v4")
    )
    try:
        b = mpstore.MultipeerConnectivity(
            "Bob",
            "pres",
            transport=LanTransport(host="127.0.0.1", discovery=False, peers=[a.transport.address]),  # type: ignore[attr-defined]
        )
        try:
            a.wait_for_peers(1, timeout=10)
            b.wait_for_peers(1, timeout=10)
            a.presence.set({"typing": "milk"})
            wait_until(lambda: b.presence.get(a.my_peer) == {"typing": "milk"})
            for i in range(50):  # a burst: the latest arrives
                b.presence.update(cursor=i)
            wait_until(lambda: a.presence.get(b.my_peer) == {"cursor": 49})
        finally:
            b.end_all()
        wait_until(lambda: a.presence.states() == {})
    finally:
        a.end_all()
