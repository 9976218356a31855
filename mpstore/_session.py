"""Sans-IO session over one link: hello, accept/refuse, heartbeats, messages, goodbye.

No sockets, threads or clocks: frames come in through :meth:`LinkSession.receive_frame`, time
comes in as ``now``, frames to send are collected with :meth:`LinkSession.frames_to_send`, and
what happened comes out as events.

Handshake (symmetric; both ends run the same steps)::

    both send HELLO --> each validates the other's HELLO --> HelloReceived
    the owner decides: accept() sends ACCEPT, refuse(reason) sends REFUSE and closes
    open (PeerOpened) once we have accepted AND received the peer's ACCEPT

With a group secret, each end proves after the hellos that it holds the key, with an HMAC over
both hellos, the link's channel binding and the prover's role (AUTH); HelloReceived is reported
only once the peer's proof checks out, so an outsider never reaches the owner's admission logic.
Where the link has no channel binding (Multipeer Connectivity, memory), every frame after a
side's proof is sealed with keys of that link (:class:`~mpstore._auth.FrameSeal`), so a relay
that forwarded the handshake can neither read nor change what follows.

Until the session is open, a message may be no larger than a hello (reassembly is capped), so
an unauthenticated link cannot make us buffer more than that.

Nothing but PING, BYE and unknown kinds is accepted before the session is open; a peer is never
reported open unless both ends accepted. A link that stays silent for ``peer_timeout`` closes.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ._auth import (
    SEAL_OVERHEAD,
    FrameSeal,
    hello_role,
    is_sealed,
    link_key,
    make_proof,
    transcript_hash,
    verify_proof,
)
from ._errors import MpstoreError, ProtocolError
from ._peer import is_peer_id, validate_discovery_info, validate_display_name
from ._wire import FLAG_UNRELIABLE, Kind, Message, Reassembler, split_message

__all__ = [
    "DELIVERED_KINDS",
    "MIN_MESSAGE_RATE",
    "PROTOCOL_VERSION",
    "Event",
    "Hello",
    "HelloReceived",
    "LinkClosed",
    "LinkSession",
    "MessageReceived",
    "PeerOpened",
    "SessionConfig",
    "advertised_rate",
]

log = logging.getLogger("mpstore.session")

PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1
MAX_HELLO_SIZE = 8192
MAX_REASON_SIZE = 512
AUTH_SCHEME = "psk2"
#: The floor under message rates: a peer that advertises less is paced as if it advertised this
#: (so one peer cannot stall or fail our sends), and our own ``max_message_rate`` may not be lower.
MIN_MESSAGE_RATE = 100.0


#: The message kinds an open session hands to its owner (MessageReceived); others are its own.
DELIVERED_KINDS = frozenset((Kind.APP, Kind.STORE, Kind.PRESENCE, Kind.FILE))
#: Rate-limited kinds, as plain ints: a frame of one of these with no flags is a whole message.
_WHOLE_KINDS = frozenset((int(Kind.APP), int(Kind.STORE), int(Kind.PRESENCE)))


@dataclass(frozen=True)
class SessionConfig:
    """Timing and size limits of a session."""

    peer_timeout: float = 5.0
    handshake_timeout: float = 5.0
    max_frame_size: int = 64 * 1024
    max_receive_size: int = 64 * 1024 * 1024
    max_message_rate: float | None = 5000.0
    """Messages (APP and STORE) per second a peer may send, on average; None for no limit."""

    @property
    def heartbeat_interval(self) -> float:
        """Send a PING when nothing else was sent for this long."""
        return max(0.01, self.peer_timeout / 4)


@dataclass(frozen=True)
class Hello:
    """What a node says about itself when a link opens."""

    peer_id: str
    display_name: str
    discovery_info: Mapping[str, str] = field(default_factory=dict)
    nonce: str = ""
    auth: str = ""
    version: int = PROTOCOL_VERSION
    min_version: int = MIN_PROTOCOL_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The HELLO payload (JSON)."""
        body: dict[str, Any] = dict(self.extra)
        body.update(
            mpstore=self.version,
            min=self.min_version,
            id=self.peer_id,
            name=self.display_name,
            info=dict(self.discovery_info),
            nonce=self.nonce,
        )
        if self.auth:
            body["auth"] = self.auth
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        """Parse and validate a HELLO payload; raise ProtocolError if it is not acceptable."""
        if len(payload) > MAX_HELLO_SIZE:
            raise ProtocolError(f"hello of {len(payload)} bytes is over {MAX_HELLO_SIZE}")
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ProtocolError("hello is not JSON") from None
        if not isinstance(body, dict):
            raise ProtocolError("hello is not a JSON object")
        version, min_version = body.get("mpstore"), body.get("min", 1)
        if type(version) is not int or type(min_version) is not int:
            raise ProtocolError("hello has no protocol version")
        if version < MIN_PROTOCOL_VERSION or min_version > PROTOCOL_VERSION:
            raise ProtocolError(
                f"incompatible protocol: peer speaks {min_version}..{version}, "
                f"we speak {MIN_PROTOCOL_VERSION}..{PROTOCOL_VERSION}"
            )
        peer_id, nonce, auth = body.get("id"), body.get("nonce", ""), body.get("auth", "")
        if not is_peer_id(peer_id):
            raise ProtocolError("hello has no valid peer id")
        if not isinstance(nonce, str) or len(nonce) > 128:
            raise ProtocolError("hello has an invalid nonce")
        if not isinstance(auth, str) or len(auth) > 32:
            raise ProtocolError("hello has an invalid auth scheme")
        try:
            name = validate_display_name(body.get("name"))
            info = validate_discovery_info(body.get("info", {}))
        except MpstoreError as exc:
            raise ProtocolError(f"hello: {exc}") from None
        known = {"mpstore", "min", "id", "name", "info", "nonce", "auth"}
        extra = {k: v for k, v in body.items() if k not in known}
        assert isinstance(peer_id, str)
        return cls(peer_id, name, info, nonce, auth, version, min_version, extra)


class State(Enum):
    """Where a link session stands."""

    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


# The members as module constants: an Enum member is slow to look up on the per-message path.
_OPEN = State.OPEN
_CLOSED = State.CLOSED


@dataclass(frozen=True)
class HelloReceived:
    """The peer introduced itself; the owner must call accept() or refuse()."""

    hello: Hello


@dataclass(frozen=True)
class PeerOpened:
    """Both ends accepted: the peer is connected."""

    hello: Hello


@dataclass(slots=True)
class MessageReceived:
    """A message (APP, STORE or PRESENCE) arrived on an open session (treat it as read-only)."""

    kind: int
    payload: bytes
    reliable: bool


@dataclass(frozen=True)
class LinkClosed:
    """The session ended; ``clean`` if the peer said goodbye or we closed it ourselves."""

    reason: str
    clean: bool
    was_open: bool
    auth_failed: bool = False


Event = HelloReceived | PeerOpened | MessageReceived | LinkClosed


class LinkSession:
    """The protocol state of one link, driven by plain calls."""

    def __init__(
        self,
        hello: Hello,
        config: SessionConfig,
        now: float,
        key: bytes | None = None,
        channel_binding: bytes = b"",
    ) -> None:
        self.config = config
        self._key = key
        self._channel_binding = channel_binding
        self._sealing = key is not None and not channel_binding
        self._inner_frame_size = config.max_frame_size - (SEAL_OVERHEAD if self._sealing else 0)
        self._seal: FrameSeal | None = None
        self._seal_out = False
        self._seal_in = False
        self._role = 0
        if key is not None and hello.auth != AUTH_SCHEME:
            hello = Hello(**{**hello.__dict__, "auth": AUTH_SCHEME})
        self.local_hello = hello
        self._hello_bytes = hello.encode()
        self.remote_hello: Hello | None = None
        self._pending_hello: Hello | None = None
        self._transcript = b""
        self._tokens = float(2 * (config.max_message_rate or 0))
        self._tokens_at = now
        self.state = State.HANDSHAKE
        self.close_reason: str | None = None
        self._started = now
        self._last_received = now
        self._last_sent = now
        self._accepted_locally = False
        self._accepted_remotely = False
        # Until open, no message may be larger than a hello (nothing larger is legitimate yet).
        self._reassembler = Reassembler(config.max_frame_size, min(config.max_receive_size, MAX_HELLO_SIZE))
        self._out: list[tuple[bytes, bool]] = []
        self._events: list[Event] = []
        self._queue(Kind.HELLO, self._hello_bytes)

    @staticmethod
    def new_nonce() -> str:
        """A fresh random nonce for a hello."""
        return secrets.token_hex(16)

    # -- output ---------------------------------------------------------------------------
    def frames_to_send(self) -> list[tuple[bytes, bool]]:
        """Frames queued since the last call, as (frame, reliable), in order."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        """Events produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    @property
    def accepted_locally(self) -> bool:
        """True once this end accepted the peer (open or waiting for the peer's ACCEPT)."""
        return self._accepted_locally and self.state is not State.CLOSED

    @property
    def is_open(self) -> bool:
        """True once both ends accepted and until the session closes."""
        return self.state is State.OPEN

    # -- input ----------------------------------------------------------------------------
    def receive_frames(self, frames: Iterable[bytes], now: float) -> None:
        """Take frames that arrived together, in order: the same as :meth:`receive_frame` for
        each, with a short path for the common frame (a whole reliable message, unsealed)."""
        reassembler = self._reassembler
        rate = self.config.max_message_rate
        events = self._events
        for frame in frames:
            state = self.state
            if state is _CLOSED:
                return
            if (
                state is _OPEN
                and not self._seal_in
                and 2 <= len(frame) <= reassembler.max_frame_size
                and frame[1] == 0
                and frame[0] in _WHOLE_KINDS
                and reassembler.idle
                and len(frame) - 2 <= reassembler.max_message_size
            ):
                # What Reassembler.feed() and _handle() would do with it, without their general path.
                self._last_received = now
                if rate is not None:
                    try:
                        self._spend_token(now)
                    except ProtocolError as exc:
                        self._fail(str(exc))
                        return
                events.append(MessageReceived(frame[0], bytes(frame[2:]), True))
            else:
                self.receive_frame(frame, now)

    def receive_frame(self, frame: bytes, now: float) -> None:
        """Take one frame from the link; a protocol violation closes the session."""
        if self.state is State.CLOSED:
            return
        self._last_received = now
        try:
            frame = self._unseal(frame)
            message = self._reassembler.feed(frame)
            if message is not None:
                self._handle(message, now)
        except ProtocolError as exc:
            self._fail(str(exc))

    def handle_timer(self, now: float) -> None:
        """Send a heartbeat if due; close if the peer fell silent or the handshake took too long."""
        if self.state is State.CLOSED:
            return
        if self.state is State.HANDSHAKE and now - self._started > self.config.handshake_timeout:
            self._fail(f"handshake not finished within {self.config.handshake_timeout:g} s")
            return
        if now - self._last_received > self.config.peer_timeout:
            self._close_now(f"no sign of life for {self.config.peer_timeout:g} s", clean=False)
            return
        if now - self._last_sent >= self.config.heartbeat_interval:
            self._queue(Kind.PING, b"")
            self._last_sent = now

    def next_deadline(self) -> float | None:
        """The next time handle_timer() has something to do, or None when closed."""
        if self.state is State.CLOSED:
            return None
        deadlines = [
            self._last_received + self.config.peer_timeout,
            self._last_sent + self.config.heartbeat_interval,
        ]
        if self.state is State.HANDSHAKE:
            deadlines.append(self._started + self.config.handshake_timeout)
        return min(deadlines)

    # -- decisions and sending ---------------------------------------------------------------
    def accept(self) -> None:
        """Accept the peer that said hello; the session opens when the peer accepts too."""
        if self.state is not State.HANDSHAKE or self.remote_hello is None:
            return
        self._accepted_locally = True
        self._queue(Kind.ACCEPT, b"")
        self._maybe_open()

    def refuse(self, reason: str) -> None:
        """Refuse the peer: tell it why and close."""
        if self.state is State.CLOSED:
            return
        self._queue(Kind.REFUSE, _reason_bytes(reason))
        self._close_now(f"refused: {reason}", clean=True)

    def send(self, kind: int, payload: bytes, reliable: bool = True, now: float | None = None) -> None:
        """Queue one message on an open session (fragmented as needed)."""
        if self.state is not _OPEN:
            return
        room = self._inner_frame_size - 2
        if len(payload) > room:
            reliable = True
        elif reliable and not self._seal_out:  # the common case: one plain frame
            self._out.append((bytes((kind, 0)) + payload, True))
            if now is not None:
                self._last_sent = now
            return
        for frame in split_message(kind, payload, self._inner_frame_size, reliable):
            self._emit(frame, reliable)
        if now is not None:
            self._last_sent = now

    def close(self, reason: str = "goodbye") -> None:
        """Say goodbye and close."""
        if self.state is State.CLOSED:
            return
        self._queue(Kind.BYE, _reason_bytes(reason))
        self._close_now(reason, clean=True)

    def note_sent(self, now: float) -> None:
        """Record that frames were handed to the transport at ``now`` (heartbeat bookkeeping)."""
        self._last_sent = now

    def note_drained(self, now: float) -> None:
        """The transport took our bytes again after holding them back: the peer is reading them.

        A sign of life like a frame from it: a peer busy taking in a large stream from us (a
        store snapshot) may not get to answer for longer than ``peer_timeout``, and is not
        silent. A dead or stuck peer stops draining, and then the timeout runs as before.
        """
        if self.state is State.OPEN and now > self._last_received:
            self._last_received = now

    def link_lost(self, reason: str) -> None:
        """The transport reported the link down."""
        if self.state is not State.CLOSED:
            self._close_now(reason, clean=False)

    # -- internals --------------------------------------------------------------------------
    def _handle(self, message: Message, now: float) -> None:
        kind, payload = message.kind, message.payload
        if kind == Kind.PING:
            return
        if kind == Kind.BYE:
            self._close_now(f"peer left: {_reason_text(payload)}", clean=True)
            return
        if kind == Kind.REFUSE:
            self._close_now(f"peer refused us: {_reason_text(payload)}", clean=True)
            return
        if kind == Kind.HELLO:
            if self.remote_hello is not None or self._pending_hello is not None:
                raise ProtocolError("second hello on one link")
            hello = Hello.decode(payload)
            if self._key is None:
                if hello.auth:
                    self._refuse_auth("the peer requires a group secret and we have none")
                    return
                self.remote_hello = hello
                self._events.append(HelloReceived(hello))
                return
            if not hello.auth:
                self._refuse_auth("a group secret is required to join")
                return
            if hello.auth != AUTH_SCHEME:
                self._refuse_auth(
                    f"the peer uses group-secret scheme {hello.auth!r}, we use {AUTH_SCHEME!r}: "
                    f"both need the same mpstore release"
                )
                return
            try:
                self._role = hello_role(self._hello_bytes, payload)
            except ValueError:
                self._refuse_auth("the peer sent our own hello back (a reflection)")
                return
            self._pending_hello = hello
            self._transcript = transcript_hash(self._hello_bytes, payload, self._channel_binding)
            proof = make_proof(self._key, self.local_hello.peer_id, self._transcript, self._role)
            self._queue(Kind.AUTH, proof)
            if self._sealing:
                self._seal = FrameSeal(link_key(self._key, self._transcript), self._role)
                self._seal_out = True
            return
        if kind == Kind.AUTH:
            pending = self._pending_hello
            if pending is None or self._key is None:
                raise ProtocolError("proof out of order")
            if not verify_proof(self._key, pending.peer_id, self._transcript, payload, 1 - self._role):
                self._refuse_auth("authentication failed: wrong group secret")
                return
            self._seal_in = self._seal is not None
            self._pending_hello = None
            self.remote_hello = pending
            self._events.append(HelloReceived(pending))
            return
        if kind == Kind.ACCEPT:
            if self.remote_hello is None or self._accepted_remotely:
                raise ProtocolError("accept out of order")
            self._accepted_remotely = True
            self._maybe_open()
            return
        if self.state is not State.OPEN:
            if kind in DELIVERED_KINDS:
                raise ProtocolError(f"message of kind {kind:#04x} before the session opened")
            return
        if kind in (Kind.APP, Kind.STORE, Kind.PRESENCE):
            self._spend_token(now)
            self._events.append(MessageReceived(kind, payload, message.reliable))
        elif kind == Kind.FILE:
            # Not rate-limited per message: chunks come only when the receiver asked for them,
            # and the file layer bounds what a peer can make it queue.
            self._events.append(MessageReceived(kind, payload, message.reliable))
        # Other kinds are unknown to this version: ignored for forward compatibility.

    def _spend_token(self, now: float) -> None:
        rate = self.config.max_message_rate
        if rate is None:
            return
        self._tokens = min(2 * rate, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1:
            raise ProtocolError(f"over {rate:g} messages per second")
        self._tokens -= 1

    def _unseal(self, frame: bytes) -> bytes:
        """The inner frame of a sealed one; ProtocolError if sealing is broken or skipped."""
        if not self._seal_in:
            if is_sealed(frame):
                raise ProtocolError("a sealed frame before the peer's proof")
            return frame
        assert self._seal is not None
        if not is_sealed(frame):
            # Only a goodbye or refusal may come unsealed (it can only end the link).
            if frame[:1] in (bytes((Kind.BYE,)), bytes((Kind.REFUSE,))):
                return frame
            raise ProtocolError("an unsealed frame after the handshake")
        try:
            inner, reliable = self._seal.open(frame)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        if len(inner) >= 2 and bool(inner[1] & FLAG_UNRELIABLE) == reliable:
            raise ProtocolError("a sealed frame's channel does not match its contents")
        return inner

    def _emit(self, frame: bytes, reliable: bool) -> None:
        if self._seal_out:
            assert self._seal is not None
            frame = self._seal.seal(frame, reliable)
        self._out.append((frame, reliable))

    def _refuse_auth(self, reason: str) -> None:
        log.info("closing link: %s", reason)
        self._queue(Kind.REFUSE, _reason_bytes(reason), plain=True)
        was_open = self.state is State.OPEN
        self.state = State.CLOSED
        self.close_reason = reason
        self._events.append(LinkClosed(reason, clean=False, was_open=was_open, auth_failed=True))

    def _maybe_open(self) -> None:
        if (
            self.state is State.HANDSHAKE
            and self._accepted_locally
            and self._accepted_remotely
            and self.remote_hello is not None
        ):
            self.state = State.OPEN
            self._reassembler.max_message_size = self.config.max_receive_size
            self._events.append(PeerOpened(self.remote_hello))

    def _queue(self, kind: int, payload: bytes, plain: bool = False) -> None:
        for frame in split_message(kind, payload, self._inner_frame_size, True):
            if plain:
                self._out.append((frame, True))
            else:
                self._emit(frame, True)

    def _fail(self, reason: str) -> None:
        log.info("closing link: protocol error: %s", reason)
        self._queue(Kind.BYE, _reason_bytes(f"protocol error: {reason}"))
        self._close_now(f"protocol error: {reason}", clean=False)

    def _close_now(self, reason: str, clean: bool) -> None:
        was_open = self.state is State.OPEN
        self.state = State.CLOSED
        self.close_reason = reason
        self._events.append(LinkClosed(reason, clean, was_open))


def _reason_bytes(reason: str) -> bytes:
    return reason.encode("utf-8", "replace")[:MAX_REASON_SIZE]


def _reason_text(payload: bytes) -> str:
    return payload[:MAX_REASON_SIZE].decode("utf-8", "replace") or "no reason given"


def advertised_rate(hello: Hello) -> float | None:
    """The message rate a peer's hello advertises, raised to :data:`MIN_MESSAGE_RATE`; None if
    it advertises none (or nonsense)."""
    rate = hello.extra.get("rate")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not rate > 0:
        return None
    return max(float(rate), MIN_MESSAGE_RATE) if rate < float("inf") else None
