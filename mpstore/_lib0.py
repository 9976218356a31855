"""lib0's binary primitives (var-uints, byte strings, UTF-8 strings), written once for every
decoder of peer bytes: the store envelope, presence, Yjs-server frames and the pure CRDT engine.

Every read is bounds-checked and raises the reader's :attr:`Reader.error` (a subclass sets the
error its layer reports: MalformedMessage, ProtocolError, CorruptUpdate); a length larger than
the bytes left is refused before anything is allocated.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "MAX_SAFE_INTEGER",
    "Reader",
    "encode_var_uint",
    "write_var_bytes",
    "write_var_string",
    "write_var_uint",
]

#: JavaScript's Number.MAX_SAFE_INTEGER: lib0 cannot carry a larger var-uint into JS exactly.
MAX_SAFE_INTEGER = (1 << 53) - 1
_U64_MAX = (1 << 64) - 1


def write_var_uint(buf: bytearray, num: int) -> None:
    """Append an unsigned LEB128 integer (lib0 var-uint): 7 bits per byte, high bit = more."""
    while num > 0x7F:
        buf.append(0x80 | (num & 0x7F))
        num >>= 7
    buf.append(num)


def encode_var_uint(num: int) -> bytes:
    """A var-uint as bytes."""
    out = bytearray()
    write_var_uint(out, num)
    return bytes(out)


def write_var_bytes(buf: bytearray, data: bytes) -> None:
    """Append a var-uint length then ``data``."""
    write_var_uint(buf, len(data))
    buf += data


def write_var_string(buf: bytearray, text: str) -> None:
    """Append a var-uint byte length and the UTF-8 of ``text``."""
    write_var_bytes(buf, text.encode("utf-8"))


class Reader:
    """A cursor over bytes with lib0 decoding primitives."""

    __slots__ = ("data", "end", "pos")

    #: What a malformed input raises; subclasses name their layer's error.
    error: ClassVar[type[Exception]] = ValueError
    #: Prefixed to every error message (for example ``"awareness: "``).
    prefix: ClassVar[str] = ""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def remaining(self) -> int:
        """Bytes left to read."""
        return self.end - self.pos

    def rest(self) -> bytes:
        """Everything not read yet (consumed)."""
        out = self.data[self.pos : self.end]
        self.pos = self.end
        return out

    def fail(self, what: str) -> Exception:
        """The reader's error, naming the position."""
        return self.error(f"{self.prefix}{what} at byte {self.pos}")

    def finish(self) -> None:
        """Require that everything was read."""
        if self.pos != self.end:
            raise self.fail(f"{self.end - self.pos} trailing bytes")

    def read_u8(self) -> int:
        """One byte."""
        pos = self.pos
        if pos >= self.end:
            raise self.fail("unexpected end of input")
        self.pos = pos + 1
        return self.data[pos]

    def read_var_uint(self) -> int:
        """An unsigned LEB128 integer of at most 64 bits."""
        data = self.data
        pos = self.pos
        end = self.end
        if pos >= end:
            raise self.fail("unexpected end of input")
        b = data[pos]
        pos += 1
        if b < 0x80:
            self.pos = pos
            return b
        num = b & 0x7F
        shift = 7
        while True:
            if pos >= end:
                self.pos = pos
                raise self.fail("unexpected end of input in var-uint")
            b = data[pos]
            pos += 1
            num |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 63:
                self.pos = pos
                raise self.fail("var-uint longer than 10 bytes")
        self.pos = pos
        if num > _U64_MAX:
            raise self.fail("var-uint over 64 bits")
        return num

    def read_safe_uint(self) -> int:
        """A var-uint that JavaScript can hold exactly (at most 2**53 - 1), as lib0 requires."""
        num = self.read_var_uint()
        if num > MAX_SAFE_INTEGER:
            raise self.fail("var-uint over 2**53 - 1")
        return num

    def read_bytes(self, n: int) -> bytes:
        """Exactly ``n`` raw bytes."""
        pos = self.pos
        if n > self.end - pos:
            raise self.fail("length beyond end of input")
        self.pos = pos + n
        return self.data[pos : pos + n]

    def read_var_bytes(self, limit: int | None = None) -> bytes:
        """A var-uint length then that many bytes (at most ``limit``)."""
        n = self.read_var_uint()
        if limit is not None and n > limit:
            raise self.fail(f"field of {n} bytes over its limit of {limit}")
        return self.read_bytes(n)

    def read_var_string(self, limit: int | None = None) -> str:
        """A var-uint byte length then strictly valid UTF-8 (at most ``limit`` bytes)."""
        raw = self.read_var_bytes(limit)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("string is not UTF-8") from None

    def read_count(self, min_size: int = 1) -> int:
        """A var-uint element count, capped by the bytes left (each element takes ``min_size``)."""
        n = self.read_var_uint()
        if n * min_size > self.end - self.pos:
            raise self.fail(f"count {n} larger than the input allows")
        return n
