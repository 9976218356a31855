"""The LAN transport: DNS-SD/mDNS discovery (zeroconf) and TLS 1.3 over TCP.

One TCP connection per pair of peers. Both ends send a preface (service type, peer id) as their
first frame; the end with the smaller peer id then decides whether this connection becomes the
pair's link, so two peers that dial each other at the same moment still keep exactly one. With
discovery, only the smaller id dials (the larger one dials too, after a grace delay, if nothing
came). See ``docs/LAN.md`` for the wire format, back-pressure and timeouts.

A preface is not authenticated, so it never displaces or blocks a link (``mpstore._pairing``):
only a connection with the same TLS certificate as a peer id's link is its duplicate or its
replacement; one with another certificate is reported alongside, and the node's sessions
(hello, group-secret proof) settle which one is the peer.

zeroconf and cryptography are imported only when a :class:`LanTransport` is made; without them
it raises :class:`mpstore.TransportUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, ProtocolError, TransportError, TransportUnavailable
from .._pairing import Connection, Verdict, connection_verdict
from ._lan._framing import (
    PROTOCOL_VERSION,
    Decision,
    FrameDecoder,
    Preface,
    decode_decision,
    encode_decision,
    encode_frame_header,
)
from .base import LinkId, LinkListener, LocalNode, Transport

if TYPE_CHECKING:
    from ._lan._discovery import Discovery, Found
    from ._lan._tls import TlsIdentity

__all__ = ["LanTransport", "load_discovery"]

log = logging.getLogger("mpstore.lan")

_INSTALL_HINT = 'the LAN transport needs zeroconf and cryptography: pip install "mpstore[lan]"'
_FLUSH_AT = 64 * 1024
_CLOSE_GRACE = 5.0
_BACKOFF_MAX = 5.0
_GIVE_UP_AFTER = 120.0
_STABLE_LINK = 10.0
_MAX_HANDSHAKES = 64
#: Discovered peers we keep dialing at once; more announcements are ignored until some go.
_MAX_TARGETS = 256
#: Addresses tried per discovered peer (a spoofed announcement could list many).
_MAX_ADDRESSES = 4
#: Dials in progress at once; others wait for a slot.
_MAX_DIALS = 16


def _load_deps() -> None:
    try:
        import cryptography  # noqa: F401
        import zeroconf  # noqa: F401
    except ImportError as exc:
        raise TransportUnavailable(f"{_INSTALL_HINT} ({exc})") from None


def load_discovery() -> type[Discovery]:
    """The mDNS discovery class (for ``mpstore peers``); TransportUnavailable without zeroconf."""
    _load_deps()
    from ._lan._discovery import Discovery

    return Discovery


@dataclass
class _Target:
    """Somewhere to dial: a discovered peer (id known) or a static address (id learned)."""

    key: str
    addresses: tuple[tuple[str, int], ...]
    peer_id: str | None
    static: bool
    failures: int = 0
    failing_since: float | None = None
    dialing: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    dead: bool = False


class _Conn(asyncio.Protocol):
    """One TLS connection: handshake, framing, write coalescing and flow control."""

    def __init__(self, owner: LanTransport, target: _Target | None) -> None:
        self.owner = owner
        self.target = target
        self.outgoing = target is not None
        self.state = "tls"
        self.link: int | None = None
        self.remote_id: str | None = None
        self.address: str | None = None
        self.binding = b""
        self.identity: bytes | None = None
        self.reason = ""
        self.paused = False
        self.up_since = 0.0
        self.done: asyncio.Future[bool] = owner._loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder(owner.max_frame_size)
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None

    # asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        owner = self.owner
        peer = transport.get_extra_info("peername")
        if peer:
            self.address = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
        if owner._closing:
            self.fail("transport closing")
            return
        owner._conns.add(self)
        high = owner._high_water
        transport.set_write_buffer_limits(high=high, low=high // 4)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert owner._tls is not None
        from ._lan._tls import channel_binding, peer_certificate_id

        ssl_object = transport.get_extra_info("ssl_object")
        self.binding = channel_binding(ssl_object, owner._tls.certificate_der)
        self.identity = peer_certificate_id(ssl_object)
        self.state = "preface"
        self._timer = owner._loop.call_later(owner._connect_timeout, self._handshake_timeout)
        assert owner._local is not None
        self.write(Preface(owner._local.service_type, owner._local.peer_id).encode())

    def data_received(self, data: bytes) -> None:
        if self.state in ("closing", "closed"):
            return
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as exc:
            self.fail(f"garbage from the peer: {exc}")
            return
        for i, frame in enumerate(frames):
            if self.state == "up":
                # The rest of this read goes to the listener in one call (one pump, not one per frame).
                self.owner._deliver(self, frames if i == 0 else frames[i:])
                break
            if self.state == "preface":
                try:
                    preface = Preface.decode(frame)
                except ProtocolError as exc:
                    self.fail(f"garbage from the peer: {exc}")
                    return
                self.owner._on_preface(self, preface)
            elif self.state == "decision":
                try:
                    decision = decode_decision(frame)
                except ProtocolError as exc:
                    self.fail(f"garbage from the peer: {exc}")
                    return
                self.owner._on_decision(self, decision)
            else:
                return
        try:
            self._decoder.check()
        except ProtocolError as exc:
            self.fail(f"garbage from the peer: {exc}")

    def eof_received(self) -> bool | None:
        if not self.reason:
            self.reason = "closed by the peer"
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.reason:
            self.reason = f"connection lost: {exc!r}" if exc else "closed by the peer"
        self._cancel_timers()
        self._out.clear()
        self._out_size = 0
        self.state = "closed"
        self.owner._on_lost(self)
        if not self.done.done():
            self.done.set_result(False)

    def pause_writing(self) -> None:
        self.paused = True
        self.owner._writable(self, False)

    def resume_writing(self) -> None:
        self.paused = False
        self.owner._writable(self, True)

    # our side ----------------------------------------------------------------------------
    def _handshake_timeout(self) -> None:
        self._timer = None
        self.fail("no handshake within the connect timeout")

    def mark_up(self, link: int) -> None:
        """The connection became the pair's link."""
        self.state = "up"
        self.link = link
        self.up_since = time.monotonic()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.done.done():
            self.done.set_result(True)

    def pending(self) -> int:
        """Bytes queued here or in the TLS/TCP buffers, not yet handed to the kernel."""
        t = self._transport
        return self._out_size + (t.get_write_buffer_size() if t is not None else 0)

    def write(self, frame: bytes) -> None:
        """Queue one frame; small frames are coalesced until the loop's next turn."""
        self._out.append(encode_frame_header(len(frame)))
        self._out.append(frame)
        self._out_size += len(frame) + 4
        if self._out_size >= _FLUSH_AT:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = self.owner._loop.call_soon(self.flush)
            self.owner._unflushed[self] = None

    def write_many(self, frames: Iterable[bytes]) -> None:
        """Queue frames in order; as :meth:`write` each, with one flush decision for all."""
        out = self._out
        size = 0
        for frame in frames:
            out.append(encode_frame_header(len(frame)))
            out.append(frame)
            size += len(frame) + 4
        self._out_size += size
        if self._out_size >= _FLUSH_AT:
            self.flush()
        elif self._flush_handle is None and out:
            self._flush_handle = self.owner._loop.call_soon(self.flush)
            self.owner._unflushed[self] = None

    def flush(self) -> None:
        """Hand everything queued to TLS now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
            self.owner._unflushed.pop(self, None)
        if not self._out or self._transport is None or self._transport.is_closing():
            return
        data = b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        self._transport.write(data)

    def close(self, reason: str) -> None:
        """Flush and close; abort if the peer does not take the rest within a grace period."""
        if self.state in ("closing", "closed"):
            return
        self.reason = self.reason or reason
        self.state = "closing"
        self.flush()
        self._cancel_timers()
        if self._transport is not None:
            self._transport.close()
            self._timer = self.owner._loop.call_later(_CLOSE_GRACE, self.abort)

    def fail(self, reason: str) -> None:
        """End the connection at once with a logged reason."""
        if self.state == "closed":
            return
        self.reason = self.reason or reason
        log.info("lan: connection %s ended: %s", self.address or "?", self.reason)
        self.state = "closing"
        self.abort()

    def abort(self) -> None:
        """Drop the connection without flushing."""
        self._cancel_timers()
        if self._transport is not None:
            self._transport.abort()

    def _cancel_timers(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self.owner._unflushed.pop(self, None)


class LanTransport(Transport):
    """Peers on the local network: mDNS discovery, one TLS 1.3 TCP connection per pair."""

    name = "lan"
    max_frame_size = 256 * 1024

    def __init__(
        self,
        interfaces: Sequence[str] | None = None,
        port: int = 0,
        peers: Iterable[tuple[str, int]] = (),
        discovery: bool = True,
        ip_version: str = "all",
        host: str | None = None,
        connect_timeout: float = 5.0,
        max_buffer: int = 32 * 1024 * 1024,
        high_water: int = 1024 * 1024,
        fallback_dial_delay: float = 3.0,
    ) -> None:
        _load_deps()
        if ip_version not in ("v4", "v6", "all"):
            raise ConfigurationError("ip_version must be 'v4', 'v6' or 'all'")
        if not 0 <= port <= 65535:
            raise ConfigurationError("port must be in 0..65535")
        if high_water <= 0 or max_buffer < high_water:
            raise ConfigurationError("need 0 < high_water <= max_buffer")
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._port = port
        self._static = [(str(h), int(p)) for h, p in peers]
        for h, p in self._static:
            if not 0 < p <= 65535:
                raise ConfigurationError(f"peer {h}:{p}: port must be in 1..65535")
        self._discovery_enabled = discovery
        self._ip_version = ip_version
        self._host = host
        self._connect_timeout = connect_timeout
        self._max_buffer = max_buffer
        self._high_water = high_water
        self._fallback_delay = fallback_dial_delay

        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._listener: LinkListener | None = None
        self._local: LocalNode | None = None
        self._tls: TlsIdentity | None = None
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._discovery: Discovery | None = None
        self._disc_chain: asyncio.Task[None] | None = None
        self._looking = False
        self._closing = False
        self._closed = False
        self._conns: set[_Conn] = set()
        self._unflushed: dict[_Conn, None] = {}  # connections whose flush is scheduled
        self._handshaking: set[asyncio.Task[None]] = set()
        self._links: dict[int, _Conn] = {}
        self._by_peer: dict[str, list[_Conn]] = {}
        self._targets: dict[str, _Target] = {}
        self._next_link = 0
        self._address: tuple[str, int] | None = None

    # public ------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) this transport listens on, once open."""
        if self._address is None:
            raise TransportError("the LAN transport is not open")
        return self._address

    def open(self, loop: asyncio.AbstractEventLoop, listener: LinkListener, local: LocalNode) -> None:
        """Make the TLS identity and bind the listening socket (accepting starts later)."""
        if self._loop is not None:
            raise TransportError("the LAN transport is already open")
        from ._lan._tls import TlsIdentity

        self._loop = loop
        self._listener = listener
        self._local = local
        self._tls = TlsIdentity()
        self._sock = self._bind()
        host, port = self._sock.getsockname()[:2]
        self._address = (host, port)
        self._accepting = loop.create_task(self._accept_loop(self._sock))

    def start_discovery(self) -> None:
        """Accept incoming connections, dial static peers, advertise and browse."""
        if self._closing or self._looking:
            return
        self._looking = True
        for host, port in self._static:
            key = f"addr:{host}:{port}"
            target = self._targets.get(key)
            if target is None:
                target = self._targets[key] = _Target(key, ((host, port),), None, static=True)
            target.dead = False
            self._maybe_dial(target)
        if self._discovery_enabled:
            self._chain(self._start_discovery())

    def stop_discovery(self) -> None:
        """Stop advertising, browsing and dialing; refuse new incoming connections."""
        if not self._looking:
            return
        self._looking = False
        for target in self._targets.values():
            self._cancel_target(target)
        for target in self._targets.values():
            if target.dialing is not None:
                target.dialing.cancel()
        for task in list(self._handshaking):
            task.cancel()
        for conn in list(self._conns):
            if conn.state in ("preface", "decision"):
                conn.fail("stopped looking for peers")
        if self._discovery_enabled:
            self._chain(self._stop_discovery())

    def send(self, link: LinkId, frame: bytes, reliable: bool = True) -> bool:
        """Queue one frame; False if the link is unknown, or full (see docs/LAN.md)."""
        conn = self._links.get(link)  # type: ignore[call-overload]
        if conn is None or conn.state != "up":
            return False
        if len(frame) > self.max_frame_size:
            raise TransportError(f"frame of {len(frame)} bytes over max_frame_size")
        pending = conn.pending()
        if not reliable and (conn.paused or pending >= self._high_water):
            return False
        if pending + len(frame) > self._max_buffer:
            conn.fail(f"send buffer over {self._max_buffer} bytes: the peer is not reading")
            return False
        conn.write(frame)
        return True

    def flush(self) -> None:
        """Write what every connection holds for the loop's next turn now (the end of a burst)."""
        while self._unflushed:
            conn = next(iter(self._unflushed))
            conn.flush()  # removes it
            self._unflushed.pop(conn, None)

    def send_frames(self, link: LinkId, frames: Sequence[bytes]) -> None:
        """Queue several reliable frames in order, coalesced into the next TLS write."""
        conn = self._links.get(link)  # type: ignore[call-overload]
        if conn is None or conn.state != "up":
            return
        size = 0
        for frame in frames:
            if len(frame) > self.max_frame_size:
                raise TransportError(f"frame of {len(frame)} bytes over max_frame_size")
            size += len(frame)
        if conn.pending() + size > self._max_buffer:
            conn.fail(f"send buffer over {self._max_buffer} bytes: the peer is not reading")
            return
        conn.write_many(frames)

    def pause_reading(self, link: LinkId, paused: bool) -> None:
        """Stop or resume reading the socket of ``link`` (TCP then pushes back on the peer)."""
        conn = self._links.get(link)  # type: ignore[call-overload]
        transport = getattr(conn, "_transport", None)
        if conn is None or transport is None or transport.is_closing():
            return
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def close_link(self, link: LinkId, reason: str = "closed") -> None:
        """Close one link after flushing what was queued; link_down follows."""
        conn = self._links.get(link)  # type: ignore[call-overload]
        if conn is not None:
            log.info("lan: closing link to %s: %s", conn.address, reason)
            conn.close(reason)
            # The link is over for both of us now, even if flushing to a dead peer takes the
            # whole grace period: report it (after this call returns) and free the pair's slot.
            self._loop.call_soon(self._detach, conn)

    def buffered(self, link: LinkId) -> int | None:
        """Bytes queued here or in the TLS/TCP buffers, not yet handed to the kernel."""
        conn: _Conn | None = self._links.get(link)  # type: ignore[call-overload]
        return None if conn is None else conn.pending()

    def channel_binding(self, link: LinkId) -> bytes:
        """SHA-256 over both TLS certificates in a canonical order (same bytes on both ends)."""
        conn = self._links.get(link)  # type: ignore[call-overload]
        return conn.binding if conn is not None else b""

    def peer_key(self, link: LinkId) -> str | None:
        """The SHA-256 of the peer's TLS certificate (what a stranger cannot share with it)."""
        conn: _Conn | None = self._links.get(link)  # type: ignore[call-overload]
        if conn is None or conn.identity is None:
            return None
        return "tls:" + conn.identity.hex()

    async def aclose(self) -> None:
        """Close every link and release sockets, tasks and zeroconf."""
        if self._closed:
            return
        if self._loop is None:  # never opened
            self._closed = True
            return
        self._closing = True
        self._looking = False
        for target in self._targets.values():
            self._cancel_target(target)
        for target in self._targets.values():
            if target.dialing is not None:
                target.dialing.cancel()
        dials = [t.dialing for t in self._targets.values() if t.dialing is not None]
        accepts = list(self._handshaking)
        for task in accepts:
            task.cancel()
        if self._discovery_enabled:
            self._chain(self._stop_discovery())
        chain = self._disc_chain
        for conn in list(self._conns):
            conn.close("transport closed")
        waits = [c.done for c in self._conns]
        if waits:
            await asyncio.wait(waits, timeout=1.0)
        for conn in list(self._conns):
            conn.abort()
        for link, conn in list(self._links.items()):
            self._report_down(link, conn, "transport closed")
        self._closed = True
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._sock is not None:
            self._sock.close()
        if dials or accepts:
            await asyncio.gather(*dials, *accepts, return_exceptions=True)
        if chain is not None:
            with contextlib.suppress(Exception):
                await chain
        # Let aborted connections run connection_lost before we return.
        for _ in range(3):
            if not self._conns:
                break
            await asyncio.sleep(0)
        self._listener = None

    # sockets and discovery ---------------------------------------------------------------
    def _bind(self) -> socket.socket:
        host = self._host
        if host is None:
            host = "0.0.0.0" if self._ip_version == "v4" else "::"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(self._ip_version == "v6"))
            sock.bind((host, self._port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if host == "::" and self._host is None and self._ip_version == "all":
                log.info("lan: no IPv6 here (%s); listening on IPv4 only", exc)
                self._ip_version = "v4"
                return self._bind()
            raise TransportError(f"cannot listen on {host}:{self._port}: {exc}") from exc
        return sock

    async def _accept_loop(self, sock: socket.socket) -> None:
        # Our own accept loop (not loop.create_server) so that every socket is ours to close,
        # including those still in their TLS handshake when we stop looking or close.
        while True:
            try:
                client, addr = await self._loop.sock_accept(sock)
            except OSError as exc:
                log.warning("lan: accept failed: %r", exc)
                await asyncio.sleep(0.1)
                continue
            if self._closing or not self._looking:
                log.debug("lan: refused a connection from %s: not accepting new peers", addr)
                client.close()
            elif len(self._handshaking) + self._unlinked_incoming() >= _MAX_HANDSHAKES:
                log.info("lan: refused %s: %d handshakes in progress", addr, _MAX_HANDSHAKES)
                client.close()
            else:
                task = self._loop.create_task(self._handshake(client, addr))
                self._handshaking.add(task)
                task.add_done_callback(self._handshaking.discard)

    def _unlinked_incoming(self) -> int:
        """Incoming connections past TLS still in their link handshake (each holds a socket)."""
        return sum(1 for c in self._conns if not c.outgoing and c.state in ("preface", "decision"))

    async def _handshake(self, client: socket.socket, addr: Any) -> None:
        assert self._tls is not None
        try:
            await self._loop.connect_accepted_socket(
                lambda: _Conn(self, None),
                client,
                ssl=self._tls.server_context,
                ssl_handshake_timeout=self._connect_timeout,
            )
        except asyncio.CancelledError:
            client.close()
            raise
        except Exception as exc:
            log.info("lan: TLS handshake with %s failed: %r", addr, exc)
            client.close()

    def _chain(self, coro: Any) -> None:
        previous = self._disc_chain

        async def run() -> None:
            if previous is not None:
                with contextlib.suppress(BaseException):
                    await previous
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lan: discovery failed: %r", exc)

        self._disc_chain = self._loop.create_task(run())

    async def _start_discovery(self) -> None:
        if not self._looking or self._discovery is not None:
            return
        from ._lan._discovery import Discovery

        assert self._local is not None and self._address is not None
        self._discovery = Discovery(
            service_type=self._local.service_type,
            peer_id=self._local.peer_id,
            display_name=self._local.display_name,
            discovery_info=self._local.discovery_info,
            port=self._address[1],
            interfaces=self._interfaces,
            ip_version=self._ip_version,
            on_found=self._on_found,
            on_lost=self._on_lost_service,
        )
        await self._discovery.start()

    async def _stop_discovery(self) -> None:
        disc, self._discovery = self._discovery, None
        if disc is not None:
            await disc.stop()

    def _on_found(self, found: Found) -> None:
        assert self._local is not None
        if self._closing or found.peer_id == self._local.peer_id:
            return
        if found.version != PROTOCOL_VERSION:
            log.info("lan: ignoring %s: protocol version %s", found.name, found.version)
            return
        key = f"id:{found.peer_id}"
        target = self._targets.get(key)
        addresses = found.addresses[:_MAX_ADDRESSES]
        if target is None:
            if sum(1 for t in self._targets.values() if not t.static) >= _MAX_TARGETS:
                log.info("lan: ignoring %s: already %d discovered peers", found.name, _MAX_TARGETS)
                return
            target = self._targets[key] = _Target(key, addresses, found.peer_id, static=False)
        target.addresses = addresses or target.addresses
        target.dead = False
        if self._not_first(target):
            self._schedule(target, self._not_first(target))
        else:
            self._maybe_dial(target)

    def _on_lost_service(self, peer_id: str) -> None:
        target = self._targets.pop(f"id:{peer_id}", None)
        if target is not None:
            self._cancel_target(target)

    # dialing -----------------------------------------------------------------------------
    def _linked(self, target: _Target) -> bool:
        return target.peer_id is not None and target.peer_id in self._by_peer

    def _maybe_dial(self, target: _Target) -> None:
        if not self._looking or target.dead or target.dialing is not None or self._linked(target):
            return
        if sum(1 for t in self._targets.values() if t.dialing is not None) >= _MAX_DIALS:
            self._schedule(target, random.uniform(0.2, 0.6))  # wait for a slot
            return
        if target.timer is not None:
            target.timer.cancel()
            target.timer = None
        target.dialing = self._loop.create_task(self._dial(target))

    def _schedule(self, target: _Target, delay: float) -> None:
        if not self._looking or target.dead or target.dialing is not None or target.timer is not None:
            return
        target.timer = self._loop.call_later(delay, self._fire, target)

    def _fire(self, target: _Target) -> None:
        target.timer = None
        self._maybe_dial(target)

    def _cancel_target(self, target: _Target) -> None:
        if target.timer is not None:
            target.timer.cancel()
            target.timer = None

    def _retry(self, target: _Target) -> None:
        now = time.monotonic()
        target.failures += 1
        if target.failing_since is None:
            target.failing_since = now
        if not target.static and now - target.failing_since > _GIVE_UP_AFTER:
            log.info("lan: giving up on %s until it is announced again", target.key)
            target.dead = True
            return
        delay = min(_BACKOFF_MAX, 0.2 * 2 ** min(target.failures, 10))
        self._schedule(target, self._not_first(target) + delay * random.uniform(0.8, 1.2))

    def _not_first(self, target: _Target) -> float:
        """Extra delay before dialing a discovered peer that should dial us (its id is smaller)."""
        assert self._local is not None
        if target.static or target.peer_id is None or self._local.peer_id < target.peer_id:
            return 0.0
        return self._fallback_delay

    async def _dial(self, target: _Target) -> None:
        assert self._tls is not None
        conn: _Conn | None = None
        try:
            for host, port in target.addresses:
                try:
                    _, proto = await asyncio.wait_for(
                        self._loop.create_connection(
                            lambda: _Conn(self, target),
                            host,
                            port,
                            ssl=self._tls.client_context,
                            server_hostname="mpstore",
                            ssl_handshake_timeout=self._connect_timeout,
                        ),
                        self._connect_timeout * 2,
                    )
                except (OSError, asyncio.TimeoutError) as exc:
                    log.debug("lan: dialing %s:%s failed: %r", host, port, exc)
                    continue
                conn = proto
                break
            ok = conn is not None and await conn.done
        except asyncio.CancelledError:
            if conn is not None:
                conn.abort()
            raise
        finally:
            target.dialing = None
        if ok:
            target.failing_since = None
        elif not (
            target.dead or (conn is not None and conn.reason.startswith("refused by the peer: duplicate"))
        ):
            log.debug("lan: no link to %s: %s", target.key, conn.reason if conn else "unreachable")
            self._retry(target)

    # connection events -------------------------------------------------------------------
    def _on_preface(self, conn: _Conn, preface: Preface) -> None:
        local = self._local
        assert local is not None
        if preface.version != PROTOCOL_VERSION:
            self._refuse(conn, f"protocol version {preface.version}, we speak {PROTOCOL_VERSION}")
            return
        if preface.service_type != local.service_type:
            self._refuse(conn, f"service type {preface.service_type!r} is not ours")
            return
        if preface.peer_id == local.peer_id:
            from ._lan._tls import certificate_id

            assert self._tls is not None
            if conn.identity == certificate_id(self._tls.certificate_der):
                self._refuse(conn, "connected to ourselves", forever=True)
            else:  # a stranger claiming our id: an ordinary failure, never the end of a target
                self._refuse(conn, "the peer claims our own peer id")
            return
        conn.remote_id = preface.peer_id
        if conn.target is not None and conn.target.static:
            conn.target.peer_id = preface.peer_id
        if local.peer_id < preface.peer_id:  # we decide for this pair
            verdict, _ = connection_verdict(self._held(preface.peer_id), conn.identity, we_decide=True)
            if not conn.outgoing and not self._looking:
                self._reject(conn, "not accepting new peers")
            elif verdict is Verdict.REFUSE:
                self._reject(conn, "duplicate: the pair already has a link")
            else:
                conn.write(encode_decision(Decision(True)))
                self._up(conn)
        else:
            conn.state = "decision"

    def _on_decision(self, conn: _Conn, decision: Decision) -> None:
        if not decision.accept:
            conn.fail(f"refused by the peer: {decision.reason}")
            return
        assert conn.remote_id is not None
        verdict, held = connection_verdict(self._held(conn.remote_id), conn.identity, we_decide=False)
        if verdict is Verdict.REPLACE and held is not None:
            old = held.key
            # The same TLS certificate: the same peer, which dropped the old connection.
            self._detach(old, redial=False)
            old.close("superseded by a newer connection from the same peer")
        self._up(conn)

    def _held(self, peer_id: str) -> Sequence[Connection[_Conn]]:
        return [Connection(c, c.identity) for c in self._by_peer.get(peer_id, ())]

    def _refuse(self, conn: _Conn, reason: str, *, forever: bool = False) -> None:
        if conn.target is not None and forever:
            conn.target.dead = True
        log.info("lan: refusing connection %s: %s", conn.address, reason)
        conn.close(reason)  # flushes our preface, so the other end learns who we are

    def _reject(self, conn: _Conn, reason: str) -> None:
        conn.write(encode_decision(Decision(False, reason)))
        conn.reason = reason
        conn.close(reason)

    def _up(self, conn: _Conn) -> None:
        assert conn.remote_id is not None
        link = self._next_link
        self._next_link += 1
        conn.mark_up(link)
        self._links[link] = conn
        self._by_peer.setdefault(conn.remote_id, []).append(conn)
        if self._listener is not None and not self._closed:
            try:
                self._listener.link_up(link, conn.address)
            except Exception:
                log.exception("lan: link_up listener failed")

    def _deliver(self, conn: _Conn, frames: list[bytes]) -> None:
        listener = self._listener
        if listener is None or self._closed or conn.link is None:
            return
        try:
            link_frames = getattr(listener, "link_frames", None)
            if link_frames is not None:
                link_frames(conn.link, frames)
            else:
                for frame in frames:
                    listener.link_frame(conn.link, frame)
        except Exception:
            log.exception("lan: link_frame listener failed")

    def _writable(self, conn: _Conn, writable: bool) -> None:
        link = conn.link
        if link is None or conn.state != "up":
            return
        self._loop.call_soon(self._report_writable, link, conn, writable)

    def _report_writable(self, link: int, conn: _Conn, writable: bool) -> None:
        if self._links.get(link) is conn and self._listener is not None and not self._closed:
            try:
                self._listener.link_writable(link, writable)
            except Exception:
                log.exception("lan: link_writable listener failed")

    def _on_lost(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        self._detach(conn)

    def _detach(self, conn: _Conn, *, redial: bool = True) -> None:
        """Report a link down once, free the pair's slot, and plan a redial if we dial it."""
        link = conn.link
        if link is None or self._links.get(link) is not conn:
            return
        self._report_down(link, conn, conn.reason)
        if not redial:
            return
        lived = time.monotonic() - conn.up_since
        for target in self._targets.values():
            if target.peer_id == conn.remote_id and conn.remote_id is not None:
                if lived < _STABLE_LINK:
                    self._retry(target)
                else:
                    target.failures = 0
                    self._schedule(target, self._not_first(target) + random.uniform(0.05, 0.3))

    def _report_down(self, link: int, conn: _Conn, reason: str) -> None:
        self._links.pop(link, None)
        held = self._by_peer.get(conn.remote_id) if conn.remote_id is not None else None
        if held is not None and conn in held:
            held.remove(conn)
            if not held:
                del self._by_peer[conn.remote_id]  # type: ignore[arg-type]
        log.info("lan: link %s to %s down: %s", link, conn.address, reason)
        if self._listener is not None and not self._closed:
            try:
                self._listener.link_down(link, reason)
            except Exception:
                log.exception("lan: link_down listener failed")

    def __repr__(self) -> str:
        where = f"{self._address[0]}:{self._address[1]}" if self._address else "closed"
        return f"<LanTransport {where} links={len(self._links)}>"
