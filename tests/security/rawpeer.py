"""A hand-driven LAN peer for hostile tests: TLS, the LAN preface and decision, then any frames.

It speaks the LAN transport's stream framing itself, so a test can stop anywhere in the
handshake, replay recorded frames, choose its TLS identity (and so its channel binding) and its
source address, or drive a real :class:`~mpstore._session.LinkSession` over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from mpstore._peer import new_peer_id
from mpstore._session import Event, Hello, LinkSession, SessionConfig
from mpstore.transports._lan._framing import (
    Decision,
    FrameDecoder,
    Preface,
    decode_decision,
    encode_decision,
    encode_frame_header,
)
from mpstore.transports._lan._tls import TlsIdentity, channel_binding
from mpstore.transports.lan import LanTransport

__all__ = ["RawPeer"]


class RawPeer:
    """One TCP connection to a LAN peer, driven by hand."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        identity: TlsIdentity | None,
        peer_id: str,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.peer_id = peer_id
        ssl_object = writer.get_extra_info("ssl_object")
        self.binding = channel_binding(ssl_object, identity.certificate_der) if identity else b""
        self._decoder = FrameDecoder(LanTransport.max_frame_size)
        self._ready: list[bytes] = []
        self.sent: list[bytes] = []
        """Frames sent after the LAN link handshake (the session's frames), in order."""
        self.received: list[bytes] = []
        """Frames received, in order (only the session's frames once link() succeeded)."""
        self.eof = False

    @classmethod
    async def connect(
        cls,
        address: tuple[str, int],
        *,
        identity: TlsIdentity | None = None,
        peer_id: str | None = None,
        source_host: str | None = None,
        tls: bool = True,
    ) -> RawPeer:
        """Open TCP (and TLS unless ``tls`` is False) from ``source_host`` if given."""
        if tls and identity is None:
            identity = TlsIdentity()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                *address,
                ssl=identity.client_context if tls and identity else None,
                server_hostname="mpstore" if tls else None,
                local_addr=(source_host, 0) if source_host else None,
            ),
            5,
        )
        return cls(reader, writer, identity if tls else None, peer_id or new_peer_id())

    # -- stream frames -----------------------------------------------------------------------
    async def write_frame(self, frame: bytes) -> None:
        """Send one frame of the LAN stream (nothing once the other end hung up)."""
        if self.eof:
            return
        try:
            self.writer.write(encode_frame_header(len(frame)) + frame)
            await self.writer.drain()
        except (ConnectionError, OSError):
            self.eof = True

    async def send(self, frame: bytes) -> None:
        """Send one session frame (recorded in ``sent``)."""
        self.sent.append(frame)
        await self.write_frame(frame)

    async def recv(self, timeout: float) -> bytes | None:
        """The next frame, or None on end of stream or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                data = await asyncio.wait_for(self.reader.read(65536), remaining)
            except asyncio.TimeoutError:
                return None
            except (OSError, ConnectionError):
                data = b""
            if not data:
                self.eof = True
                return None
            self._ready.extend(self._decoder.feed(data))
        frame = self._ready.pop(0)
        self.received.append(frame)
        return frame

    async def wait_closed(self, timeout: float) -> bool:
        """Read (and keep) frames until the other end hangs up; False if it has not by ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            await self.recv(deadline - time.monotonic())
        return self.eof

    async def link(self, service: str) -> bool:
        """The LAN link handshake: prefaces both ways, then the smaller id's decision."""
        await self.write_frame(Preface(service, self.peer_id).encode())
        frame = await self.recv(5)
        if frame is None:
            return False
        remote = Preface.decode(frame)
        if self.peer_id < remote.peer_id:
            await self.write_frame(encode_decision(Decision(True)))
            accepted = True
        else:
            frame = await self.recv(5)
            accepted = frame is not None and decode_decision(frame).accept
        self.received.clear()
        return accepted

    def close(self) -> None:
        """Drop the connection."""
        with contextlib.suppress(Exception):
            self.writer.transport.abort()

    # -- a real session over this connection -------------------------------------------------
    def session(self, key: bytes | None, name: str = "raw", binding: bytes | None = None) -> LinkSession:
        """A LinkSession for this connection (its hello and proof bound to our TLS channel)."""
        hello = Hello(self.peer_id, name, {}, LinkSession.new_nonce())
        config = SessionConfig(max_frame_size=LanTransport.max_frame_size, max_message_rate=None)
        return LinkSession(hello, config, time.monotonic(), key, self.binding if binding is None else binding)

    async def drive(
        self,
        session: LinkSession,
        until: Callable[[list[Event]], bool],
        timeout: float = 5.0,
        accept: bool = True,
    ) -> list[Event]:
        """Pump frames between the session and the connection until ``until(events)`` or timeout;
        accept the peer once it said hello (and proved) unless ``accept`` is False."""
        events: list[Event] = []
        deadline = time.monotonic() + timeout
        while True:
            for out, _ in session.frames_to_send():
                await self.send(out)
            events += session.events()
            if until(events) or time.monotonic() > deadline or self.eof:
                return events
            got = await self.recv(min(0.05, max(0.0, deadline - time.monotonic())))
            if got is not None:
                session.receive_frame(got, time.monotonic())
            if (
                accept
                and not session.accepted_locally
                and session.remote_hello is not None
                and session.state.value == "handshake"
            ):
                session.accept()
