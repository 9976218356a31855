"""The y-protocols sync messages (pure functions, engine-independent).

A message is ``var-uint messageType`` (0 = sync), ``var-uint syncType`` (0 = step 1 carrying a
state vector, 1 = step 2 carrying an update, 2 = update) and the payload as a lib0
``var-uint length + bytes`` buffer: the bytes y-websocket, Yjs and pycrdt exchange. pycrdt's
``handle_sync_message`` takes the message without the leading messageType (``message[1:]``).
"""

from __future__ import annotations

from typing import NamedTuple

from . import _lib0
from ._errors import CorruptUpdate

__all__ = [
    "MESSAGE_AWARENESS",
    "MESSAGE_SYNC",
    "SYNC_STEP1",
    "SYNC_STEP2",
    "SYNC_UPDATE",
    "SyncMessage",
    "decode_message",
    "decode_var_uint",
    "encode_sync_step1",
    "encode_sync_step2",
    "encode_update",
    "encode_var_uint",
]

MESSAGE_SYNC = 0
MESSAGE_AWARENESS = 1
SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

_U64_MAX = (1 << 64) - 1


class SyncMessage(NamedTuple):
    """A decoded sync message: ``kind`` is SYNC_STEP1/SYNC_STEP2/SYNC_UPDATE."""

    kind: int
    payload: bytes


def encode_var_uint(num: int) -> bytes:
    """lib0 var-uint (unsigned LEB128) of ``num``."""
    if num < 0 or num > _U64_MAX:
        raise ValueError(f"var-uint out of range: {num}")
    return _lib0.encode_var_uint(num)


class _SyncReader(_lib0.Reader):
    __slots__ = ()
    error = CorruptUpdate
    prefix = "sync message: "


def decode_var_uint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Read a lib0 var-uint at ``pos``; return ``(value, next position)``."""
    reader = _SyncReader(data)
    reader.pos = pos
    return reader.read_var_uint(), reader.pos


def _message(kind: int, payload: bytes) -> bytes:
    return bytes((MESSAGE_SYNC, kind)) + encode_var_uint(len(payload)) + bytes(payload)


def encode_sync_step1(state_vector: bytes) -> bytes:
    """Sync step 1: "here is my state vector"."""
    return _message(SYNC_STEP1, state_vector)


def encode_sync_step2(update: bytes) -> bytes:
    """Sync step 2: the update answering a step 1."""
    return _message(SYNC_STEP2, update)


def encode_update(update: bytes) -> bytes:
    """An incremental update message."""
    return _message(SYNC_UPDATE, update)


def decode_message(message: bytes) -> SyncMessage:
    """Decode a whole sync message; CorruptUpdate if it is not exactly one well-formed one."""
    if not isinstance(message, (bytes, bytearray, memoryview)):
        raise CorruptUpdate("a sync message must be bytes")
    data = bytes(message)
    msg_type, pos = decode_var_uint(data, 0)
    if msg_type != MESSAGE_SYNC:
        raise CorruptUpdate(f"not a sync message (message type {msg_type})")
    kind, pos = decode_var_uint(data, pos)
    if kind not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
        raise CorruptUpdate(f"unknown sync message type {kind}")
    length, pos = decode_var_uint(data, pos)
    if length != len(data) - pos:
        raise CorruptUpdate(
            f"sync payload length {length} does not match the {len(data) - pos} bytes present"
        )
    return SyncMessage(kind, data[pos:])
