"""lib0 binary encoding (var-uint, var-int, strings, the ``Any`` value format) as Yjs uses it.

Every read is bounds-checked against the input and raises :class:`mpstore.CorruptUpdate`; counts
are capped by the bytes left, so a hostile length cannot make us allocate more than the input
justifies.
"""

from __future__ import annotations

import struct

from ... import _lib0
from ..._errors import CorruptUpdate
from ..._lib0 import write_var_string, write_var_uint

__all__ = [
    "MAX_ANY_DEPTH",
    "NEGATIVE_ZERO",
    "UNDEFINED",
    "AnyValue",
    "BigInt",
    "Float32",
    "Reader",
    "write_any",
    "write_var_int",
    "write_var_string",
    "write_var_uint",
]

#: Nesting limit for arrays/objects inside one ``Any`` value (hostile input guard).
MAX_ANY_DEPTH = 200
_I64_LIMIT = 1 << 63


class _Undefined:
    """JavaScript ``undefined`` (Any tag 127), kept so that foreign values re-encode exactly."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = _Undefined()


class _NegativeZero:
    """JavaScript ``-0`` as lib0 writes it (a var-int with the sign bit and magnitude 0), kept
    apart from ``0`` so that a relayed value re-encodes bit-exact."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEGATIVE_ZERO"


NEGATIVE_ZERO = _NegativeZero()


class Float32:
    """A float32 (Any tag 124), kept as its 4 raw big-endian bytes so it re-encodes exactly."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @property
    def value(self) -> float:
        """The number."""
        return float(struct.unpack(">f", self.raw)[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Float32) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"Float32({self.value!r})"


class BigInt:
    """A 64-bit BigInt (Any tag 122)."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BigInt) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"BigInt({self.value!r})"


#: A decoded ``Any``: str, None, bool, int (var-int), float (float64), Float32, BigInt, bytes,
#: UNDEFINED, NEGATIVE_ZERO, list of AnyValue, dict of str -> AnyValue.
AnyValue = (
    str | None | bool | int | float | Float32 | BigInt | bytes | _Undefined | _NegativeZero | list | dict  # type: ignore[type-arg]
)


class Reader(_lib0.Reader):
    """A cursor over bytes with lib0 decoding primitives; malformed input is CorruptUpdate."""

    __slots__ = ()
    error = CorruptUpdate

    def read_var_int(self) -> int:
        """lib0's signed var-int: sign bit in the first byte, magnitude below 2**63."""
        b = self.read_u8()
        num = b & 0x3F
        negative = b & 0x40
        shift = 6
        while b & 0x80:
            b = self.read_u8()
            num |= (b & 0x7F) << shift
            shift += 7
            if shift > 70:
                raise self.fail("var-int too long")
        if num >= _I64_LIMIT:
            raise self.fail("var-int out of range")
        return -num if negative else num

    def read_any(self, depth: int = 0) -> AnyValue:
        """One lib0 ``Any`` value."""
        tag = self.read_u8()
        if tag == 119:
            return self.read_var_string()
        if tag == 126:
            return None
        if tag == 125:
            if self.pos < self.end and self.data[self.pos] == 0x40:
                self.pos += 1
                return NEGATIVE_ZERO
            return self.read_var_int()
        if tag == 123:
            return float(struct.unpack(">d", self.read_bytes(8))[0])
        if tag == 124:
            return Float32(self.read_bytes(4))
        if tag == 120:
            return True
        if tag == 121:
            return False
        if tag == 127:
            return UNDEFINED
        if tag == 122:
            return BigInt(int(struct.unpack(">q", self.read_bytes(8))[0]))
        if tag == 116:
            return self.read_var_bytes()
        if tag == 117 or tag == 118:
            if depth >= MAX_ANY_DEPTH:
                raise self.fail("Any value nested too deeply")
            if tag == 117:
                n = self.read_count(1)
                return [self.read_any(depth + 1) for _ in range(n)]
            n = self.read_count(2)
            obj: dict[str, AnyValue] = {}
            for _ in range(n):
                key = self.read_var_string()
                obj[key] = self.read_any(depth + 1)
            return obj
        raise self.fail(f"unknown Any tag {tag}")


def write_var_int(buf: bytearray, num: int) -> None:
    """Append lib0's signed var-int."""
    negative = num < 0
    if negative:
        num = -num
    buf.append((0x80 if num > 0x3F else 0) | (0x40 if negative else 0) | (num & 0x3F))
    num >>= 6
    while num > 0:
        buf.append((0x80 if num > 0x7F else 0) | (num & 0x7F))
        num >>= 7


def write_any(buf: bytearray, value: AnyValue) -> None:
    """Append one lib0 ``Any`` value, inverse of :meth:`Reader.read_any`."""
    if isinstance(value, str):
        buf.append(119)
        write_var_string(buf, value)
    elif value is None:
        buf.append(126)
    elif value is True:
        buf.append(120)
    elif value is False:
        buf.append(121)
    elif isinstance(value, int):
        buf.append(125)
        write_var_int(buf, value)
    elif isinstance(value, float):
        buf.append(123)
        buf += struct.pack(">d", value)
    elif isinstance(value, Float32):
        buf.append(124)
        buf += value.raw
    elif isinstance(value, BigInt):
        buf.append(122)
        buf += struct.pack(">q", value.value)
    elif isinstance(value, bytes):
        buf.append(116)
        write_var_uint(buf, len(value))
        buf += value
    elif isinstance(value, _Undefined):
        buf.append(127)
    elif isinstance(value, _NegativeZero):
        buf += b"\x7d\x40"
    elif isinstance(value, list):
        buf.append(117)
        write_var_uint(buf, len(value))
        for v in value:
            write_any(buf, v)
    elif isinstance(value, dict):
        buf.append(118)
        write_var_uint(buf, len(value))
        for k, v in value.items():
            write_var_string(buf, k)
            write_any(buf, v)
    else:
        raise TypeError(f"not an Any value: {type(value).__name__}")
