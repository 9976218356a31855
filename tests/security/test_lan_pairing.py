"""Strangers cannot disturb a pair on the LAN (loopback only, 127.0.0.0/8): a forged preface never
displaces or blocks a live link, a stranger on a member's address does not lock it out, and a
preface claiming our own id does not end a target for good."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Coroutine
from typing import Any

import pytest

pytest.importorskip("zeroconf")
pytest.importorskip("cryptography")

from mpstore._auth import derive_key
from mpstore._session import LinkClosed, PeerOpened
from mpstore.transports._lan._framing import FrameDecoder, Preface, encode_frame_header
from mpstore.transports._lan._tls import TlsIdentity
from mpstore.transports.lan import LanTransport
from tests.helpers import Recorder, connected, wait_until
from tests.security.rawpeer import RawPeer

SERVICE = "sec"
SECRET = "correct horse battery staple"


def _lan(**kwargs: Any) -> LanTransport:
    return LanTransport(host="127.0.0.1", discovery=False, ip_version="v4", **kwargs)


def _address(node: Recorder) -> tuple[str, int]:
    return node.transport.address  # type: ignore[attr-defined, no-any-return]


def _run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _pair(secret: str | None, **kw: Any) -> tuple[Recorder, Recorder]:
    extra: dict[str, Any] = {"peer_timeout": 5.0, **kw}
    if secret:
        extra["secret"] = secret
    ann = Recorder("Ann", SERVICE, transport=_lan(), **extra)
    bob = Recorder("Bob", SERVICE, transport=_lan(peers=[_address(ann)]), **extra)
    return ann, bob


@pytest.mark.parametrize("secret", [None, SECRET], ids=["no-secret", "secret"])
def test_a_forged_preface_and_accept_never_kick_a_live_link(secret: str | None) -> None:
    ann, bob = _pair(secret)
    try:
        wait_until(connected(ann, bob), timeout=10)
        small, large = sorted((ann, bob), key=lambda m: m.my_peer.id)

        async def attack() -> int:
            kicks = 0
            for _ in range(10):  # the forged preface claims the smaller id and says "accept"
                raw = await RawPeer.connect(_address(large), peer_id=small.my_peer.id)
                if await raw.link(SERVICE):
                    kicks += 1
                await asyncio.sleep(0.1)
                raw.close()
            return kicks

        async def takeover() -> list[Any]:
            # Then the whole hello under the smaller peer's id (what took over its identity).
            raw = await RawPeer.connect(_address(large), peer_id=small.my_peer.id)
            assert await raw.link(SERVICE)
            session = raw.session(derive_key("a guess", SERVICE) if secret else None, name="Mal")
            events = await raw.drive(session, lambda ev: False, timeout=2.0)
            raw.close()
            return events

        asked_before = list(large.asked)
        _run(attack())
        events = _run(takeover())
        time.sleep(0.5)
        assert not any(isinstance(e, PeerOpened) for e in events)
        assert large.asked == asked_before  # the claim never even reached accept_peer
        assert large.names("removed") == [] and small.names("removed") == []
        assert [p.display_name for p in large.get_peers()] == [small.my_peer.display_name]
        large.send({"still": "here"})
        wait_until(lambda: small.messages() == [{"still": "here"}], timeout=5)
    finally:
        ann.end_all()
        bob.end_all()


def test_a_squatter_claiming_a_peer_id_does_not_block_the_real_peer() -> None:
    """A stranger connects first to the deciding end claiming the other peer's id and stalls:
    the real peer is still let in (its connection is kept alongside, and its session wins)."""
    kw: dict[str, Any] = {"peer_timeout": 5.0, "handshake_timeout": 15.0, "secret": SECRET}
    ann = Recorder("Ann", SERVICE, transport=_lan(), **kw)
    bob = Recorder("Bob", SERVICE, transport=_lan(), **kw)  # neither knows the other yet
    try:
        small, large = sorted((ann, bob), key=lambda m: m.my_peer.id)

        async def squat_then_wait() -> None:
            # Squat the pair's slot at the smaller (deciding) end, claiming the larger id ...
            raw = await RawPeer.connect(_address(small), peer_id=large.my_peer.id)
            assert await raw.link(SERVICE)
            # ... then the real larger peer dials the smaller one.
            large.stop_looking_for_peers()
            large.transport._static = [_address(small)]  # type: ignore[attr-defined]
            large.start_looking_for_peers()
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and not connected(ann, bob)():
                await asyncio.sleep(0.05)
            raw.close()

        _run(squat_then_wait())
        assert connected(ann, bob)(), "the real peer was kept out by a stalled squatter"
    finally:
        ann.end_all()
        bob.end_all()


def test_a_stranger_on_a_members_address_does_not_lock_it_out(caplog: pytest.LogCaptureFixture) -> None:
    """Failed proofs are counted per TLS certificate, not per source address: a stranger on the
    member's own host (same IP address) fails many times, and the member still gets in."""
    server = Recorder("Server", SERVICE, transport=_lan(), secret=SECRET, peer_timeout=5.0)
    wrong = derive_key("wrong horse", SERVICE)
    try:
        address = _address(server)

        async def attempt() -> None:
            raw = await RawPeer.connect(address, source_host="127.0.0.1")  # a fresh certificate
            assert await raw.link(SERVICE)
            await raw.drive(
                raw.session(wrong), lambda ev: any(isinstance(e, (PeerOpened, LinkClosed)) for e in ev)
            )
            await raw.wait_closed(5)
            raw.close()

        async def body() -> None:
            for _ in range(7):
                await attempt()

        with caplog.at_level(logging.INFO):
            _run(body())
        assert caplog.text.count("authentication with 127.0.0.1") >= 1
        member = Recorder("Member", SERVICE, transport=_lan(peers=[address]), secret=SECRET, peer_timeout=5.0)
        try:
            wait_until(lambda: [p.display_name for p in server.get_peers()] == ["Member"], timeout=10)
        finally:
            member.end_all()
    finally:
        server.end_all()


def test_a_preface_claiming_our_own_id_does_not_end_a_target_for_good() -> None:
    """A listener that answers with our own peer id (a spoof) is an ordinary failure: we dial it
    again with backoff, instead of marking the target dead for good."""
    identity = TlsIdentity()
    dials: list[float] = []
    node: Recorder | None = None

    async def body() -> None:
        nonlocal node

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            dials.append(time.monotonic())
            decoder = FrameDecoder(LanTransport.max_frame_size)
            frames: list[bytes] = []
            try:
                while not frames:
                    data = await asyncio.wait_for(reader.read(4096), 5)
                    if not data:
                        return
                    frames = decoder.feed(data)
                theirs = Preface.decode(frames[0])
                claim = Preface(SERVICE, theirs.peer_id).encode()  # their own id, back at them
                writer.write(encode_frame_header(len(claim)) + claim)
                await writer.drain()
                await asyncio.wait_for(reader.read(4096), 5)
            except (asyncio.TimeoutError, OSError, ConnectionError, ssl.SSLError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=identity.server_context)
        port = server.sockets[0].getsockname()[1]
        node = Recorder("Ann", SERVICE, transport=_lan(peers=[("127.0.0.1", port)]), peer_timeout=5.0)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and len(dials) < 3:
            await asyncio.sleep(0.05)
        server.close()

    try:
        _run(body())
    finally:
        if node is not None:
            node.end_all()
    assert len(dials) >= 3, f"dialed {len(dials)} time(s): the target was given up for good"


def test_discovered_targets_addresses_and_dials_are_bounded() -> None:
    """Spoofed announcements cannot grow our targets, their address lists or our dials without
    bound (every address here is a closed port on loopback)."""
    from mpstore.transports import lan as lan_module
    from mpstore.transports._lan._discovery import Found

    node = Recorder("Ann", SERVICE, transport=_lan(), peer_timeout=5.0)
    transport: LanTransport = node.transport  # type: ignore[assignment]
    peak = [0]

    def flood() -> None:
        for i in range(400):
            addresses = tuple(("127.0.0.1", 9 + (j % 2)) for j in range(20))
            peer_id = f"{i + 1:032x}"
            transport._on_found(
                Found(f"spoof{i}", peer_id, f"spoof{i}", lan_module.PROTOCOL_VERSION, addresses)
            )
        peak[0] = sum(1 for t in transport._targets.values() if t.dialing is not None)

    try:
        node._runtime.call(flood)
        targets = node._runtime.call(lambda: list(transport._targets.values()))
        assert len(targets) == lan_module._MAX_TARGETS
        assert all(len(t.addresses) <= lan_module._MAX_ADDRESSES for t in targets)
        assert peak[0] <= lan_module._MAX_DIALS
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            dialing = node._runtime.call(lambda: sum(1 for t in transport._targets.values() if t.dialing))
            assert dialing <= lan_module._MAX_DIALS
            time.sleep(0.05)
    finally:
        node.end_all()
