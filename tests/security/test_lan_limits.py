"""Hostile peers against a real node over the LAN transport on loopback: the limits hold.

A :class:`tests.security.rawpeer.RawPeer` speaks TLS and the LAN framing by hand, so it can stall
anywhere in the handshake, replay recorded frames with the same TLS identity, inject frames
before it is admitted, or send more than a node takes. Loopback only (127.0.0.0/8).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

pytest.importorskip("zeroconf")
pytest.importorskip("cryptography")

from mpstore import _core
from mpstore._auth import derive_key
from mpstore._session import Hello, LinkClosed, PeerOpened
from mpstore._wire import FLAG_MORE, Kind
from mpstore.transports._lan._tls import TlsIdentity
from mpstore.transports.lan import LanTransport
from tests.helpers import Recorder, wait_until
from tests.security.rawpeer import RawPeer

SERVICE = "sec"
SECRET = "correct horse battery staple"
KEY = derive_key(SECRET, SERVICE)


def _lan(**kwargs: Any) -> LanTransport:
    return LanTransport(host="127.0.0.1", discovery=False, ip_version="v4", **kwargs)


@pytest.fixture
def delivered(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(kind, size) of every message a session let through to the node, for every node."""
    seen: list[tuple[int, int]] = []
    original = _core.Node._on_message

    def counting(self: Any, entry: Any, event: Any) -> None:
        seen.append((event.kind, len(event.payload)))
        original(self, entry, event)

    monkeypatch.setattr(_core.Node, "_on_message", counting)
    return seen


@pytest.fixture
def server() -> Iterator[Recorder]:
    """A node holding the group secret, listening on 127.0.0.1."""
    node = Recorder("Server", SERVICE, transport=_lan(), secret=SECRET, peer_timeout=5.0)
    try:
        yield node
    finally:
        node.end_all()


def _address(node: Recorder) -> tuple[str, int]:
    return node.transport.address  # type: ignore[attr-defined, no-any-return]


def _run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _opened(events: list[Any]) -> bool:
    return any(isinstance(e, (PeerOpened, LinkClosed)) for e in events)


def _kinds(frames: list[bytes]) -> list[int]:
    return [f[0] for f in frames if f]


def test_stalled_handshakes_are_dropped_within_the_timeouts(
    server: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Slowloris at every step: each stalled connection is dropped after about 5 s, not before."""
    address = _address(server)

    async def stall(step: str) -> tuple[str, float, bool]:
        t0 = time.monotonic()
        raw = await RawPeer.connect(address, tls=step != "tcp")
        try:
            if step in ("preface", "hello", "proof", "accept"):
                assert await raw.link(SERVICE)
            if step in ("proof", "accept"):
                session = raw.session(KEY)
                hello = session.frames_to_send()[0][0]
                await raw.send(hello)
                if step == "accept":  # prove, but never accept: the server waits for our ACCEPT
                    await raw.drive(session, lambda ev: session.remote_hello is not None, 3, accept=False)
            elif step == "hello":
                pass  # linked, never says hello
            closed = await raw.wait_closed(10)
            return step, time.monotonic() - t0, closed
        finally:
            raw.close()

    async def body() -> list[tuple[str, float, bool]]:
        return list(await asyncio.gather(*(stall(s) for s in ("tcp", "tls", "hello", "proof", "accept"))))

    member = Recorder("Member", SERVICE, transport=_lan(peers=[address]), secret=SECRET, peer_timeout=5.0)
    try:
        with caplog.at_level(logging.INFO):
            results = _run(body())
        for step, seconds, closed in results:
            assert closed, f"{step}: never dropped"
            assert 4.0 < seconds < 7.0, f"{step}: dropped after {seconds:.1f} s"
        assert "handshake not finished within 5 s" in caplog.text
        wait_until(lambda: [p.display_name for p in server.get_peers()] == ["Member"], timeout=5)
        member.send("still here")
        wait_until(lambda: server.messages() == ["still here"])
        assert server.names("added") == ["Member"]
    finally:
        member.end_all()


def test_failed_proofs_from_one_device_shut_it_out_but_not_others(
    server: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Failed proofs are counted per TLS certificate (what a stranger cannot share with a member);
    a stranger that keeps one certificate is shut out after 5."""
    address = _address(server)
    wrong = derive_key("wrong horse", SERVICE)
    identity = TlsIdentity()

    async def attempt() -> RawPeer:
        raw = await RawPeer.connect(address, identity=identity, source_host="127.0.0.2")
        assert await raw.link(SERVICE)
        session = raw.session(wrong)
        await raw.drive(session, _opened, timeout=5)
        await raw.wait_closed(5)
        raw.close()
        return raw

    async def body() -> list[RawPeer]:
        return [await attempt() for _ in range(7)]

    with caplog.at_level(logging.INFO):
        attempts = _run(body())
    for raw in attempts[:5]:  # refused for the wrong proof, after the server's own hello and proof
        assert _kinds(raw.received)[:2] == [Kind.HELLO, Kind.AUTH], raw.received
    for raw in attempts[5:]:  # shut out at once: not even a hello from the server
        assert raw.eof and raw.received == [], raw.received
    # Warnings are rate-limited per device: one for the failures, one for the refusals.
    assert caplog.text.count("authentication with 127.0.0.2") == 1
    assert caplog.text.count("refusing a link from 127.0.0.2") == 1
    # Another address (127.0.0.1) still gets in.
    member = Recorder("Member", SERVICE, transport=_lan(peers=[address]), secret=SECRET, peer_timeout=5.0)
    try:
        wait_until(lambda: [p.display_name for p in server.get_peers()] == ["Member"], timeout=5)
    finally:
        member.end_all()
    assert server.asked == [member.my_peer]


def test_a_replayed_handshake_with_the_same_tls_identity_is_refused(
    server: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The strongest replay: same TLS certificate (so the same channel binding), same peer id,
    byte-for-byte the frames of a join that succeeded: the server's fresh nonce defeats it."""
    address = _address(server)
    identity = TlsIdentity()

    async def body() -> tuple[RawPeer, RawPeer]:
        first = await RawPeer.connect(address, identity=identity)
        assert await first.link(SERVICE)
        session = first.session(KEY)
        events = await first.drive(session, _opened)
        assert any(isinstance(e, PeerOpened) for e in events), events
        session.send(Kind.APP, b'"recorded"')
        await first.drive(session, lambda ev: False, timeout=0.5)
        await asyncio.sleep(0.5)
        first.close()
        await asyncio.sleep(0.5)
        second = await RawPeer.connect(address, identity=identity, peer_id=first.peer_id)
        assert second.binding == first.binding
        assert await second.link(SERVICE)
        for frame in first.sent:
            await second.send(frame)
        await second.wait_closed(5)
        second.close()
        return first, second

    with caplog.at_level(logging.INFO):
        first, second = _run(body())
    assert [f[0] for f in first.sent] == [Kind.HELLO, Kind.AUTH, Kind.ACCEPT, Kind.APP]
    assert second.eof and Kind.REFUSE in _kinds(second.received)
    assert "wrong group secret" in caplog.text
    assert server.names("added") == ["raw"]  # once, for the real join
    assert server.messages() == ["recorded"]


@pytest.mark.parametrize("key", [None, derive_key("wrong horse", SERVICE)], ids=["no-secret", "wrong-secret"])
def test_frames_injected_before_admission_never_reach_the_app_or_the_store(
    server: Recorder, delivered: list[tuple[int, int]], key: bytes | None
) -> None:
    address = _address(server)

    async def body() -> RawPeer:
        raw = await RawPeer.connect(address)
        assert await raw.link(SERVICE)
        session = raw.session(key)
        await raw.send(session.frames_to_send()[0][0])  # our hello
        if key is not None:
            await raw.send(bytes((Kind.AUTH, 0)) + bytes(32))
        for kind in (Kind.APP, Kind.STORE, Kind.ACCEPT, Kind.APP, Kind.STORE):
            await raw.send(bytes((kind, 0)) + b'"injected"')
        await raw.wait_closed(5)
        raw.close()
        return raw

    raw = _run(body())
    assert raw.eof
    time.sleep(0.2)
    assert delivered == [] and server.events == [] and server.asked == []


def test_a_message_over_the_reassembly_limit_ends_the_link(
    delivered: list[tuple[int, int]], caplog: pytest.LogCaptureFixture
) -> None:
    """max_receive_size = max(max_message_size, 64 MiB) + 1 KiB: fragments past it end the link
    as they arrive, before the message is complete; the node keeps serving others."""
    node = Recorder("Server", SERVICE, transport=_lan(), peer_timeout=5.0, max_message_size=1000)
    address = _address(node)
    chunk = bytes((Kind.APP, FLAG_MORE)) + b"x" * (LanTransport.max_frame_size - 2)
    frames_over = (64 * 1024 * 1024 + 1024) // len(chunk) + 1

    async def body() -> tuple[RawPeer, int]:
        raw = await RawPeer.connect(address)
        assert await raw.link(SERVICE)
        session = raw.session(None)
        await raw.drive(session, _opened)
        assert session.is_open
        sent = 0
        for _ in range(frames_over + 200):
            await raw.write_frame(chunk)
            if raw.eof:
                break
            sent += 1
        await raw.wait_closed(10)
        raw.close()
        return raw, sent

    try:
        with caplog.at_level(logging.INFO):
            raw, sent = _run(body(), timeout=60)
        assert raw.eof and sent >= frames_over
        # Refused at the first fragment past the limit, not after the whole message.
        found = re.search(r"message of at least (\d+) bytes is over the limit of 67109888", caplog.text)
        assert found is not None and int(found.group(1)) <= 67109888 + len(chunk) - 2
        assert [k for k, _ in delivered] == []
        member = Recorder("Member", SERVICE, transport=_lan(peers=[address]), peer_timeout=5.0)
        try:
            wait_until(lambda: "Member" in [p.display_name for p in node.get_peers()], timeout=5)
        finally:
            member.end_all()
    finally:
        node.end_all()


def test_an_app_message_over_max_message_size_is_dropped_on_receipt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On receipt, an app message over max_message_size is dropped with a logged warning; the
    link stays and later messages arrive (the sender may simply have a larger limit)."""
    node = Recorder("Server", SERVICE, transport=_lan(), peer_timeout=5.0, max_message_size=1000)
    address = _address(node)

    async def body() -> None:
        raw = await RawPeer.connect(address)
        assert await raw.link(SERVICE)
        session = raw.session(None)
        await raw.drive(session, _opened)
        session.send(Kind.APP, b'"' + b"x" * 999 + b'"')  # 1001 bytes of JSON
        session.send(Kind.APP, b'"' + b"y" * 998 + b'"')  # 1000 bytes: fits
        await raw.drive(session, lambda ev: False, timeout=1.0)
        assert not raw.eof
        raw.close()

    try:
        with caplog.at_level(logging.WARNING):
            _run(body())
        wait_until(lambda: len(node.messages()) == 1)
        assert node.messages() == ["y" * 998]
        assert "dropping a 1001-byte message" in caplog.text
    finally:
        node.end_all()


def test_max_peers_on_the_lan_refuses_the_one_too_many() -> None:
    node = Recorder("Server", SERVICE, transport=_lan(), peer_timeout=5.0, max_peers=2)
    address = _address(node)
    first = Recorder("First", SERVICE, transport=_lan(peers=[address]), peer_timeout=5.0)
    try:
        wait_until(lambda: [p.display_name for p in node.get_peers()] == ["First"], timeout=5)
        second = Recorder("Second", SERVICE, transport=_lan(peers=[address]), peer_timeout=5.0)
        try:
            time.sleep(2.0)
            assert [p.display_name for p in node.get_peers()] == ["First"]
            assert second.get_peers() == [] and second.events == []
        finally:
            second.end_all()
    finally:
        first.end_all()
        node.end_all()


def test_a_hello_over_8_kib_is_refused() -> None:
    node = Recorder("Server", SERVICE, transport=_lan(), peer_timeout=5.0)
    address = _address(node)

    async def body() -> RawPeer:
        raw = await RawPeer.connect(address)
        assert await raw.link(SERVICE)
        hello = Hello(raw.peer_id, "big", {}, "n", extra={"pad": "z" * 8192}).encode()
        assert len(hello) > 8192
        await raw.send(bytes((Kind.HELLO, 0)) + hello)
        await raw.wait_closed(5)
        raw.close()
        return raw

    try:
        raw = _run(body())
        assert raw.eof and Kind.BYE in _kinds(raw.received)
        bye = next(f for f in raw.received if f[0] == Kind.BYE)
        assert (b"hello of" in bye or b"over the limit" in bye) and node.asked == []
    finally:
        node.end_all()


def test_stalled_connections_cannot_pile_up(server: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    """Connections that stall after TLS, or after the link handshake, each hold a socket for
    up to 5 s: at most 64 of each are kept (the rest closed at once), not one per attempt."""
    address = _address(server)

    def held() -> tuple[int, int]:
        def count() -> tuple[int, int]:
            conns = server.transport._conns  # type: ignore[attr-defined]
            waiting = sum(1 for c in conns if not c.outgoing and c.state in ("preface", "decision"))
            return waiting, sum(1 for e in server._node.links.values() if e.peer is None)

        return server._runtime.call(count)

    async def attempt(link: bool) -> RawPeer | None:
        try:
            raw = await RawPeer.connect(address)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            return None  # refused at once
        if link:
            await raw.link(SERVICE)
        return raw

    async def body() -> tuple[tuple[int, int], tuple[int, int]]:
        raws: list[RawPeer | None] = []
        try:
            raws += [await attempt(link=False) for _ in range(100)]  # past TLS, never a preface
            await asyncio.sleep(0.3)
            after_tls = held()
            for raw in raws:  # make room: these go away
                if raw is not None:
                    raw.close()
            await asyncio.sleep(0.3)
            raws += [await attempt(link=True) for _ in range(100)]  # linked, never a hello
            await asyncio.sleep(0.3)
            return after_tls, held()
        finally:
            for raw in raws:
                if raw is not None:
                    raw.close()

    with caplog.at_level(logging.INFO):
        after_tls, after_link = _run(body(), timeout=60)
    assert after_tls[0] == 64, after_tls
    assert after_link[1] <= 64 and after_link[0] <= 64, after_link
    assert "handshakes in progress" in caplog.text
    member = Recorder("Member", SERVICE, transport=_lan(peers=[address]), secret=SECRET, peer_timeout=5.0)
    try:
        wait_until(lambda: [p.display_name for p in server.get_peers()] == ["Member"], timeout=10)
    finally:
        member.end_all()


def test_a_frame_over_the_lan_frame_size_ends_the_link(caplog: pytest.LogCaptureFixture) -> None:
    """256 KiB on the LAN: one byte more, announced in a frame header, ends an open link before
    the body is read."""
    node = Recorder("Server", SERVICE, transport=_lan(), peer_timeout=5.0)
    address = _address(node)

    async def body() -> RawPeer:
        raw = await RawPeer.connect(address)
        assert await raw.link(SERVICE)
        session = raw.session(None)
        await raw.drive(session, _opened)
        assert session.is_open
        largest = bytes((Kind.APP, 0)) + b'"' + b"x" * (LanTransport.max_frame_size - 4) + b'"'
        # One write: the largest frame and, right behind it, a header one byte over the limit.
        # The frame is still delivered before the link ends.
        raw.writer.write(
            len(largest).to_bytes(4, "big") + largest + (LanTransport.max_frame_size + 1).to_bytes(4, "big")
        )
        await raw.wait_closed(5)
        raw.close()
        return raw

    try:
        with caplog.at_level(logging.INFO):
            raw = _run(body())
        assert raw.eof
        assert f"frame of {LanTransport.max_frame_size + 1} bytes is over the limit" in caplog.text
        wait_until(lambda: len(node.messages()) == 1)
        assert node.messages() == ["x" * (LanTransport.max_frame_size - 4)]  # the largest allowed
    finally:
        node.end_all()
