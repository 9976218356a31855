"""The y-websocket protocol as one page connection sees it (sans-IO: bytes and time in, events out).

A WebSocket binary message is one y-protocols message: a var-uint message type, then its body.

* 0 sync: the sync step or update (the whole message goes to DocSync as it is);
* 1 awareness: var-bytes awareness update (its content goes to presence);
* 2 auth: permission-denied notices, server to client only (ignored when a page sends one);
* 3 query awareness: the client asks for every awareness state.

Limits: a message larger than ``max_message_size`` or more than ``max_message_rate`` messages per
second (a token bucket of two seconds' worth) ends the connection; so does a malformed message.
The page's WebsocketProvider reconnects and resyncs by state vector, so nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .._errors import CorruptUpdate
from .._syncproto import MESSAGE_AWARENESS, MESSAGE_SYNC, decode_message, decode_var_uint, encode_var_uint

__all__ = [
    "AwarenessQuery",
    "AwarenessReceived",
    "Limits",
    "PageConnection",
    "SyncReceived",
    "Violation",
    "awareness_message",
]

MESSAGE_AUTH: Final = 2
MESSAGE_QUERY_AWARENESS: Final = 3

#: WebSocket close codes (RFC 6455): 1003 unsupported data, 1007 invalid data, 1008 policy, 1009 too big.
CLOSE_UNSUPPORTED: Final = 1003
CLOSE_INVALID: Final = 1007
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009


@dataclass(frozen=True)
class Limits:
    """What one page may do, as for peers (SessionConfig, NodeOptions)."""

    max_message_size: int = 64 * 1024 * 1024
    max_message_rate: float | None = 5000.0
    max_connections: int = 64
    max_send_buffer: int = 64 * 1024 * 1024
    """Bytes queued for one slow page before it is cut off (it resyncs when it reconnects)."""


@dataclass(frozen=True)
class SyncReceived:
    """A y-protocols sync message (type 0), whole."""

    message: bytes


@dataclass(frozen=True)
class AwarenessReceived:
    """The content of an awareness message (type 1): one awareness update."""

    update: bytes


@dataclass(frozen=True)
class AwarenessQuery:
    """The page asked for every awareness state (type 3)."""


@dataclass(frozen=True)
class Violation:
    """The page broke the protocol or a limit: close with ``code`` and ``reason``."""

    code: int
    reason: str


Event = SyncReceived | AwarenessReceived | AwarenessQuery | Violation | None


def awareness_message(update: bytes) -> bytes:
    """The y-websocket message carrying one awareness update."""
    return encode_var_uint(MESSAGE_AWARENESS) + encode_var_uint(len(update)) + bytes(update)


#: An awareness update listing no client: a no-op for the page, but it resets its 30 s watchdog.
KEEPALIVE: Final = awareness_message(encode_var_uint(0))


class PageConnection:
    """One page's incoming messages, checked against the limits; time is passed in."""

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        rate = limits.max_message_rate
        self._tokens = 2 * rate if rate is not None else 0.0
        self._tokens_at = now
        self.closed = False

    def receive(self, data: bytes | str, now: float) -> Event:
        """One WebSocket message from the page; the event it makes (None: nothing to do)."""
        if self.closed:
            return None
        if isinstance(data, str):
            return self._violation(CLOSE_UNSUPPORTED, "y-websocket messages are binary")
        if len(data) > self.limits.max_message_size:
            return self._violation(CLOSE_TOO_BIG, f"message over {self.limits.max_message_size} bytes")
        rate = self.limits.max_message_rate
        if rate is not None:
            self._tokens = min(2 * rate, self._tokens + (now - self._tokens_at) * rate)
            self._tokens_at = now
            if self._tokens < 1:
                return self._violation(CLOSE_POLICY, f"over {rate:g} messages per second")
            self._tokens -= 1
        try:
            kind, pos = decode_var_uint(data, 0)
            if kind == MESSAGE_SYNC:
                decode_message(data)
                return SyncReceived(bytes(data))
            if kind == MESSAGE_AWARENESS:
                length, pos = decode_var_uint(data, pos)
                if length != len(data) - pos:
                    raise CorruptUpdate("awareness message length does not match its content")
                return AwarenessReceived(bytes(data[pos:]))
        except CorruptUpdate as exc:
            return self._violation(CLOSE_INVALID, str(exc))
        if kind == MESSAGE_QUERY_AWARENESS:
            return AwarenessQuery()
        # Auth (2) flows from server to client only; unknown types are ignored, as y-websocket does.
        return None

    def _violation(self, code: int, reason: str) -> Violation:
        self.closed = True
        return Violation(code, reason)
