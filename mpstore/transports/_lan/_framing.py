"""Sans-IO framing of the LAN transport's TCP stream, and its link handshake.

On the TLS stream every frame is a 4-byte big-endian length followed by that many bytes. The
first frame each way is a *preface* (magic, version, service type, peer id); then the side with
the smaller peer id, the *decider*, sends one *decision* frame (accept, or refuse with a reason)
for the connection, so both ends agree on which single connection a pair of peers keeps. Every
later frame belongs to the link's listener, unread by the transport.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from ..._errors import ProtocolError

__all__ = [
    "PROTOCOL_VERSION",
    "Decision",
    "FrameDecoder",
    "Preface",
    "decode_decision",
    "encode_decision",
    "encode_frame_header",
]

PROTOCOL_VERSION = 1
_MAGIC = b"MPSTLAN"
_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
_MAX_PREFACE = 1024


def encode_frame_header(length: int) -> bytes:
    """The 4-byte header that precedes a frame of ``length`` bytes."""
    return _HEADER.pack(length)


class FrameDecoder:
    """Cuts a byte stream into whole frames; raises ProtocolError on a frame over the limit."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the frames they complete, in order.

        Raise ProtocolError at a frame over the limit; frames completed before it in the same
        bytes are returned first, and the error is raised by :meth:`check` and every later call.
        """
        self.check()
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        # Frames are copied out through a view: one copy (slicing the bytearray would make two).
        view = memoryview(buf)
        try:
            while end - pos >= HEADER_SIZE:
                (length,) = _HEADER.unpack_from(buf, pos)
                if length > self.max_frame:
                    limit = self.max_frame
                    self._error = ProtocolError(f"frame of {length} bytes is over the limit of {limit}")
                    if not frames:
                        raise self._error
                    break
                if end - pos - HEADER_SIZE < length:
                    break
                start = pos + HEADER_SIZE
                frames.append(bytes(view[start : start + length]))
                pos = start + length
        finally:
            view.release()  # the bytearray cannot shrink while a view is held
        if pos:
            del buf[:pos]
        return frames

    def check(self) -> None:
        """Raise the error met after the frames the last feed() returned, if any."""
        if self._error is not None:
            raise self._error


@dataclass(frozen=True)
class Preface:
    """The first frame each side sends on a new connection."""

    service_type: str
    peer_id: str
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """The preface as a frame body."""
        body = {"v": self.version, "service": self.service_type, "id": self.peer_id}
        return _MAGIC + json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, frame: bytes) -> Preface:
        """Parse a preface; ProtocolError if it is not one."""
        if len(frame) > _MAX_PREFACE or not frame.startswith(_MAGIC):
            raise ProtocolError("the first frame is not an mpstore LAN preface")
        try:
            body = json.loads(frame[len(_MAGIC) :].decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"unreadable preface: {exc}") from None
        if not isinstance(body, dict):
            raise ProtocolError("unreadable preface: not an object")
        version, service, peer_id = body.get("v"), body.get("service"), body.get("id")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ProtocolError("preface without a protocol version")
        if not isinstance(service, str) or not isinstance(peer_id, str) or not peer_id:
            raise ProtocolError("preface without a service type or peer id")
        if not all(c in "0123456789abcdef" for c in peer_id) or len(peer_id) > 64:
            raise ProtocolError("preface with a malformed peer id")
        return cls(service_type=service, peer_id=peer_id, version=version)


@dataclass(frozen=True)
class Decision:
    """The decider's verdict on a connection: keep it as the pair's link, or refuse it."""

    accept: bool
    reason: str = ""


def encode_decision(decision: Decision) -> bytes:
    """The decision as a frame body: 0x01, or 0x00 followed by a UTF-8 reason."""
    if decision.accept:
        return b"\x01"
    return b"\x00" + decision.reason.encode()[:200]


def decode_decision(frame: bytes) -> Decision:
    """Parse a decision frame; ProtocolError if it is not one."""
    if frame == b"\x01":
        return Decision(True)
    if frame[:1] == b"\x00" and len(frame) <= 201:
        return Decision(False, frame[1:].decode(errors="replace"))
    raise ProtocolError("expected the connection decision frame")
