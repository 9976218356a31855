"""Sans-IO framing: messages split into frames, frames put back together, with limits.

A frame is ``kind (1 byte) | flags (1 byte) | payload``. A message larger than one frame is
sent as consecutive reliable frames of the same kind, every one but the last flagged ``MORE``.
Unreliable frames always carry a whole message (``UNRELIABLE``). See docs/PROTOCOL.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ._errors import ProtocolError

__all__ = [
    "FLAG_MORE",
    "FLAG_UNRELIABLE",
    "HEADER_SIZE",
    "Kind",
    "Reassembler",
    "split_message",
]

HEADER_SIZE = 2
FLAG_MORE = 0x01
FLAG_UNRELIABLE = 0x02
_KNOWN_FLAGS = FLAG_MORE | FLAG_UNRELIABLE


class Kind(IntEnum):
    """Message kinds; receivers ignore kinds they do not know (forward compatibility)."""

    HELLO = 0x01
    ACCEPT = 0x02
    REFUSE = 0x03
    BYE = 0x04
    PING = 0x05
    AUTH = 0x06
    SEALED = 0x07  # a sealed frame (see _auth.FrameSeal); never reaches the session unsealed
    APP = 0x10
    STORE = 0x20
    PRESENCE = 0x30
    FILE = 0x40


def split_message(kind: int, payload: bytes, max_frame_size: int, reliable: bool) -> list[bytes]:
    """Frames for one message. An unreliable message must fit one frame (the caller checks)."""
    room = max_frame_size - HEADER_SIZE
    if room <= 0:
        raise ValueError("max_frame_size is too small")
    if not reliable:
        if len(payload) > room:
            raise ValueError("an unreliable message must fit in one frame")
        return [bytes((kind, FLAG_UNRELIABLE)) + payload]
    if len(payload) <= room:
        return [bytes((kind, 0)) + payload]
    view = memoryview(payload)
    frames = []
    last = len(payload) - room
    more = bytes((kind, FLAG_MORE))
    for start in range(0, len(payload), room):
        head = more if start < last else bytes((kind, 0))
        frames.append(head + view[start : start + room])
    return frames


@dataclass(frozen=True)
class Message:
    """One whole received message."""

    kind: int
    payload: bytes
    reliable: bool


class Reassembler:
    """Puts reliable fragments back together and enforces frame and message size limits."""

    def __init__(self, max_frame_size: int, max_message_size: int) -> None:
        self.max_frame_size = max_frame_size
        self.max_message_size = max_message_size
        self._kind: int | None = None
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def idle(self) -> bool:
        """True when no fragmented message is in progress."""
        return self._kind is None

    def feed(self, frame: bytes) -> Message | None:
        """Take one frame; return a message when one is complete. Raise ProtocolError on bad input."""
        if len(frame) < HEADER_SIZE:
            raise ProtocolError(f"frame of {len(frame)} bytes is shorter than its header")
        if len(frame) > self.max_frame_size:
            raise ProtocolError(f"frame of {len(frame)} bytes is over the limit of {self.max_frame_size}")
        kind, flags = frame[0], frame[1]
        if flags & ~_KNOWN_FLAGS:
            raise ProtocolError(f"unknown frame flags {flags:#04x}")
        payload = frame[HEADER_SIZE:]
        if flags & FLAG_UNRELIABLE:
            if flags & FLAG_MORE:
                raise ProtocolError("an unreliable frame cannot be fragmented")
            self._check_size(len(payload))
            return Message(kind, bytes(payload), reliable=False)
        if self._kind is not None and kind != self._kind:
            raise ProtocolError(
                f"frame of kind {kind:#04x} inside a fragmented message of kind {self._kind:#04x}"
            )
        self._check_size(self._size + len(payload))
        if flags & FLAG_MORE:
            self._kind = kind
            self._parts.append(bytes(payload))
            self._size += len(payload)
            return None
        if self._parts:
            self._parts.append(bytes(payload))
            whole = b"".join(self._parts)
            self._kind, self._parts, self._size = None, [], 0
            return Message(kind, whole, reliable=True)
        return Message(kind, bytes(payload), reliable=True)

    def _check_size(self, size: int) -> None:
        if size > self.max_message_size:
            raise ProtocolError(
                f"message of at least {size} bytes is over the limit of {self.max_message_size}"
            )
