"""Yjs structs (Item, GC, Skip), item contents and shared types, with their v1 encodings."""

from __future__ import annotations

from typing import Any

from ._lib0 import AnyValue, write_any, write_var_string, write_var_uint

__all__ = [
    "DELETED_1",
    "GC",
    "ID",
    "Content",
    "ContentAny",
    "ContentBinary",
    "ContentDeleted",
    "ContentDoc",
    "ContentEmbed",
    "ContentFormat",
    "ContentJSON",
    "ContentString",
    "ContentType",
    "Item",
    "Skip",
    "Struct",
    "YType",
    "utf16_len",
    "write_any_string",
]

ID = tuple[int, int]

# Type refs of ContentType (Yjs typeRefs; 9 and 15 are yrs's SubDoc and Undefined).
TYPE_XML_ELEMENT = 3
TYPE_REFS_ACCEPTED = frozenset({0, 1, 2, 3, 4, 6, 9, 15})


def utf16_len(s: str) -> int:
    """Length of ``s`` in UTF-16 code units (Yjs counts string clocks this way)."""
    if s.isascii():
        return len(s)
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _utf16_split(s: str, offset: int) -> tuple[str, str]:
    """Split at a UTF-16 offset; a split surrogate pair becomes U+FFFD on both sides, as in Yjs."""
    if s.isascii():
        return s[:offset], s[offset:]
    raw = s.encode("utf-16-le", "surrogatepass")
    left = raw[: 2 * offset]
    right = raw[2 * offset :]
    if left and 0xD8 <= left[-1] <= 0xDB:
        left = left[:-2] + b"\xfd\xff"
        right = b"\xfd\xff" + right[2:]
    return left.decode("utf-16-le", "surrogatepass"), right.decode("utf-16-le", "surrogatepass")


class YType:
    """A shared type: a root type (``name`` set) or a nested one (``item`` set)."""

    __slots__ = ("item", "map", "name", "node_name", "start", "type_ref")

    def __init__(self, type_ref: int, name: str | None = None, node_name: str | None = None) -> None:
        self.type_ref = type_ref
        self.name = name
        self.node_name = node_name
        self.item: Item | None = None
        self.start: Item | None = None
        self.map: dict[str, Item] = {}


def write_any_string(buf: bytearray, value: str) -> None:
    """Append the encoding of ``ContentAny([value])`` (the store's hot path)."""
    raw = value.encode("utf-8")
    buf.append(1)
    buf.append(119)
    write_var_uint(buf, len(raw))
    buf += raw


class Content:
    """Base of item contents; ``ref`` is the v1 content reference number."""

    __slots__ = ()
    ref = 0
    countable = True

    def length(self) -> int:
        """Number of clock ticks this content spans."""
        return 1

    def splice(self, offset: int) -> Content:
        """Keep ``[0, offset)`` here and return the rest (only multi-unit contents split)."""
        raise AssertionError("content of length 1 cannot be split")

    def write(self, buf: bytearray, offset: int) -> None:
        """Append the encoding of this content from ``offset`` on."""
        raise NotImplementedError


class ContentDeleted(Content):
    """The placeholder of garbage-collected content."""

    __slots__ = ("len",)
    ref = 1
    countable = False

    def __init__(self, length: int) -> None:
        self.len = length

    def length(self) -> int:
        return self.len

    def splice(self, offset: int) -> Content:
        right = ContentDeleted(self.len - offset)
        self.len = offset
        return right

    def write(self, buf: bytearray, offset: int) -> None:
        write_var_uint(buf, self.len - offset)


#: The content of every deleted length-1 item (shared: a content of one clock is never split).
DELETED_1 = ContentDeleted(1)


class _ListContent(Content):
    """Content that is a list with one clock per element (JSON and Any)."""

    __slots__ = ("arr",)

    def __init__(self, arr: list[Any]) -> None:
        self.arr = arr

    def length(self) -> int:
        return len(self.arr)

    def splice(self, offset: int) -> Content:
        right = type(self)(self.arr[offset:])
        del self.arr[offset:]
        return right


class ContentJSON(_ListContent):
    """Legacy JSON content: a list of JSON texts ("undefined" for undefined)."""

    __slots__ = ()
    ref = 2
    arr: list[str]

    def write(self, buf: bytearray, offset: int) -> None:
        write_var_uint(buf, len(self.arr) - offset)
        for s in self.arr[offset:]:
            write_var_string(buf, s)


class ContentBinary(Content):
    """A binary blob."""

    __slots__ = ("data",)
    ref = 3

    def __init__(self, data: bytes) -> None:
        self.data = data

    def write(self, buf: bytearray, offset: int) -> None:
        write_var_uint(buf, len(self.data))
        buf += self.data


class ContentString(Content):
    """Text, counted in UTF-16 code units."""

    __slots__ = ("len", "str")
    ref = 4

    def __init__(self, s: str, length: int | None = None) -> None:
        self.str = s
        self.len = utf16_len(s) if length is None else length

    def length(self) -> int:
        return self.len

    def splice(self, offset: int) -> Content:
        left, right = _utf16_split(self.str, offset)
        out = ContentString(right, self.len - offset)
        self.str = left
        self.len = offset
        return out

    def write(self, buf: bytearray, offset: int) -> None:
        write_var_string(buf, self.str if offset == 0 else _utf16_split(self.str, offset)[1])


class ContentEmbed(Content):
    """An embedded object, kept as its JSON text."""

    __slots__ = ("json",)
    ref = 5

    def __init__(self, json: str) -> None:
        self.json = json

    def write(self, buf: bytearray, offset: int) -> None:
        write_var_string(buf, self.json)


class ContentFormat(Content):
    """A formatting attribute (rich text), value kept as JSON text."""

    __slots__ = ("json", "key")
    ref = 6
    countable = False

    def __init__(self, key: str, json: str) -> None:
        self.key = key
        self.json = json

    def write(self, buf: bytearray, offset: int) -> None:
        write_var_string(buf, self.key)
        write_var_string(buf, self.json)


class ContentType(Content):
    """A nested shared type."""

    __slots__ = ("type",)
    ref = 7

    def __init__(self, ytype: YType) -> None:
        self.type = ytype

    def write(self, buf: bytearray, offset: int) -> None:
        write_var_uint(buf, self.type.type_ref)
        if self.type.type_ref == TYPE_XML_ELEMENT:
            write_var_string(buf, self.type.node_name or "")


class ContentAny(_ListContent):
    """A list of lib0 ``Any`` values (the store's strings live here)."""

    __slots__ = ()
    ref = 8
    arr: list[AnyValue]

    def write(self, buf: bytearray, offset: int) -> None:
        arr = self.arr
        if offset == 0 and len(arr) == 1 and type(arr[0]) is str:
            write_any_string(buf, arr[0])
            return
        write_var_uint(buf, len(arr) - offset)
        for v in arr[offset:]:
            write_any(buf, v)


class ContentDoc(Content):
    """A sub-document reference: its guid and options."""

    __slots__ = ("guid", "opts")
    ref = 9

    def __init__(self, guid: str, opts: AnyValue) -> None:
        self.guid = guid
        self.opts = opts

    def write(self, buf: bytearray, offset: int) -> None:
        write_var_string(buf, self.guid)
        write_any(buf, self.opts)


class Item:
    """An insertion: id ``(client, clock)`` spanning ``length`` clocks.

    ``content`` is a :class:`Content`, or a plain ``str`` standing for ``ContentAny([str])``: the
    store's every value, kept without two extra objects per key (memory, and the garbage
    collector's full passes, which visit every container object).

    Before integration ``parent`` is a root name (str), a parent item id (tuple) or None (copy it
    from the neighbours); after integration it is the YType it lives in.
    """

    __slots__ = (
        "client",
        "clock",
        "content",
        "deleted",
        "left",
        "length",
        "origin",
        "parent",
        "parent_sub",
        "right",
        "right_origin",
    )

    def __init__(
        self,
        client: int,
        clock: int,
        origin: ID | None,
        right_origin: ID | None,
        parent: YType | str | ID | None,
        parent_sub: str | None,
        content: Content | str,
        length: int,
    ) -> None:
        self.client = client
        self.clock = clock
        self.length = length
        self.origin = origin
        self.right_origin = right_origin
        self.parent = parent
        self.parent_sub = parent_sub
        self.content = content
        self.left: Item | None = None
        self.right: Item | None = None
        self.deleted = False

    def write(self, buf: bytearray, offset: int) -> None:
        """Append this item's v1 encoding from ``offset`` on."""
        content = self.content
        if type(content) is str and self.right_origin is None:
            # The store's items, written without the general path: an overwrite (origin only)
            # or a key's first value in a root map (parent name and key).
            origin = self.origin
            parent = self.parent
            sub = self.parent_sub
            if origin is not None:
                buf.append(0x88 if sub is None else 0xA8)  # the key flag as Yjs sets it
                write_var_uint(buf, origin[0])
                write_var_uint(buf, origin[1])
                write_any_string(buf, content)
                return
            if sub is not None and type(parent) is YType and parent.item is None:
                buf.append(0x28)
                buf.append(1)
                write_var_string(buf, parent.name or "")
                write_var_string(buf, sub)
                write_any_string(buf, content)
                return
        origin = (self.client, self.clock + offset - 1) if offset > 0 else self.origin
        right_origin = self.right_origin
        sub = self.parent_sub
        info = 8 if type(content) is str else content.ref  # type: ignore[union-attr]
        if origin is not None:
            info |= 0x80
        if right_origin is not None:
            info |= 0x40
        if sub is not None:
            info |= 0x20
        buf.append(info)
        if origin is not None:
            write_var_uint(buf, origin[0])
            write_var_uint(buf, origin[1])
        if right_origin is not None:
            write_var_uint(buf, right_origin[0])
            write_var_uint(buf, right_origin[1])
        if origin is None and right_origin is None:
            parent = self.parent
            if isinstance(parent, YType):
                if parent.item is None:
                    buf.append(1)
                    write_var_string(buf, parent.name or "")
                else:
                    buf.append(0)
                    write_var_uint(buf, parent.item.client)
                    write_var_uint(buf, parent.item.clock)
            elif isinstance(parent, str):
                buf.append(1)
                write_var_string(buf, parent)
            elif isinstance(parent, tuple):
                buf.append(0)
                write_var_uint(buf, parent[0])
                write_var_uint(buf, parent[1])
            else:  # pragma: no cover - decoded items always carry parent info here
                raise AssertionError("item without origins or parent")
            if sub is not None:
                write_var_string(buf, sub)
        if type(content) is str:
            write_any_string(buf, content)
        else:
            content.write(buf, offset)  # type: ignore[union-attr]


class GC:
    """A garbage-collected range of clocks."""

    __slots__ = ("client", "clock", "length")
    deleted = True

    def __init__(self, client: int, clock: int, length: int) -> None:
        self.client = client
        self.clock = clock
        self.length = length

    def write(self, buf: bytearray, offset: int) -> None:
        """Append this struct's v1 encoding from ``offset`` on."""
        buf.append(0)
        write_var_uint(buf, self.length - offset)


class Skip:
    """A gap in an update's clock range (never stored in a document)."""

    __slots__ = ("client", "clock", "length")
    deleted = True

    def __init__(self, client: int, clock: int, length: int) -> None:
        self.client = client
        self.clock = clock
        self.length = length

    def write(self, buf: bytearray, offset: int) -> None:
        """Append this struct's v1 encoding from ``offset`` on."""
        buf.append(10)
        write_var_uint(buf, self.length - offset)


Struct = Item | GC
