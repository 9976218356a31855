"""Update format v1: decoding into struct refs and a delete set, and the pieces of encoding."""

from __future__ import annotations

from ..._errors import CorruptUpdate
from ._lib0 import AnyValue, Reader, write_var_uint
from ._structs import (
    DELETED_1,
    GC,
    ID,
    TYPE_REFS_ACCEPTED,
    TYPE_XML_ELEMENT,
    Content,
    ContentAny,
    ContentBinary,
    ContentDeleted,
    ContentDoc,
    ContentEmbed,
    ContentFormat,
    ContentJSON,
    ContentString,
    ContentType,
    Item,
    Skip,
    YType,
)

__all__ = [
    "MAX_CLOCK",
    "DeleteSet",
    "Refs",
    "decode_state_vector",
    "decode_update",
    "encode_delete_set",
    "encode_state_vector",
    "encode_update",
]

#: yrs keeps clocks in u32: no struct or deleted range may end beyond this.
MAX_CLOCK = 0xFFFFFFFF

Refs = dict[int, list["Item | GC | Skip"]]
#: client -> list of (clock, length) ranges
DeleteSet = dict[int, list[tuple[int, int]]]


def _read_content(r: Reader, ref: int) -> Content | str:
    if ref == 8:
        n = r.read_count(1)
        if n == 1 and r.pos < r.end and r.data[r.pos] == 119:
            r.pos += 1
            return r.read_var_string()  # ContentAny([str]) as the bare str (see Item)
        arr: list[AnyValue] = [r.read_any() for _ in range(n)]
        return ContentAny(arr)
    if ref == 1:
        n = r.read_var_uint()
        return DELETED_1 if n == 1 else ContentDeleted(n)
    if ref == 4:
        return ContentString(r.read_var_string())
    if ref == 7:
        type_ref = r.read_var_uint()
        if type_ref not in TYPE_REFS_ACCEPTED:
            raise r.fail(f"unsupported type ref {type_ref}")
        node_name = r.read_var_string() if type_ref == TYPE_XML_ELEMENT else None
        return ContentType(YType(type_ref, None, node_name))
    if ref == 2:
        n = r.read_count(1)
        return ContentJSON([r.read_var_string() for _ in range(n)])
    if ref == 3:
        return ContentBinary(r.read_var_bytes())
    if ref == 5:
        return ContentEmbed(r.read_var_string())
    if ref == 6:
        key = r.read_var_string()
        return ContentFormat(key, r.read_var_string())
    if ref == 9:
        guid = r.read_var_string()
        return ContentDoc(guid, r.read_any())
    raise r.fail(f"unknown content ref {ref}")


def _read_id(r: Reader) -> ID:
    return (r.read_var_uint(), r.read_var_uint())


def decode_update(data: bytes) -> tuple[Refs, DeleteSet]:
    """Parse a v1 update fully (nothing is applied); raise CorruptUpdate on any defect."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CorruptUpdate("an update must be bytes")
    r = Reader(bytes(data))
    buf = r.data
    end = r.end
    refs: Refs = {}
    names: dict[str, str] = {}
    n_clients = r.read_count(2)
    for _ in range(n_clients):
        n_structs = r.read_count(2)
        client = r.read_var_uint()
        clock = r.read_var_uint()
        if client in refs:
            raise r.fail(f"client {client} listed twice")
        structs: list[Item | GC | Skip] = []
        refs[client] = structs
        # The hot loop reads one-byte var-uints and short strings inline (the reader's methods
        # for everything else); ``pos`` is handed back to ``r`` around every method call.
        pos = r.pos
        for _ in range(n_structs):
            if pos >= end:
                r.pos = pos
                raise r.fail("unexpected end of input")
            info = buf[pos]
            pos += 1
            ref = info & 0x1F
            s: Item | GC | Skip
            if ref == 0 or ref == 10:
                r.pos = pos
                length = r.read_var_uint()
                pos = r.pos
                s = GC(client, clock, length) if ref == 0 else Skip(client, clock, length)
            else:
                r.pos = pos
                origin = (r.read_var_uint(), r.read_var_uint()) if info & 0x80 else None
                right_origin = (r.read_var_uint(), r.read_var_uint()) if info & 0x40 else None
                pos = r.pos
                parent: str | ID | None = None
                sub: str | None = None
                if not info & 0xC0:
                    kind = buf[pos] if pos < end else 0x80
                    if kind == 1:
                        pos += 1
                        n = buf[pos] if pos < end else 0x80
                        if n < 0x80 and pos + 1 + n <= end:
                            pos += 1
                            try:
                                name = buf[pos : pos + n].decode("utf-8")
                            except UnicodeDecodeError:
                                r.pos = pos
                                raise r.fail("string is not UTF-8") from None
                            pos += n
                        else:
                            r.pos = pos
                            name = r.read_var_string()
                            pos = r.pos
                        parent = names.setdefault(name, name)
                    else:
                        r.pos = pos
                        kind = r.read_var_uint()
                        if kind == 0:
                            parent = (r.read_var_uint(), r.read_var_uint())
                        elif kind == 1:  # a long name, or a var-uint written in more bytes
                            name = r.read_var_string()
                            parent = names.setdefault(name, name)
                        else:
                            raise r.fail(f"bad parent info {kind}")
                        pos = r.pos
                    if info & 0x20:
                        n = buf[pos] if pos < end else 0x80
                        if n < 0x80 and pos + 1 + n <= end:
                            pos += 1
                            try:
                                sub = buf[pos : pos + n].decode("utf-8")
                            except UnicodeDecodeError:
                                r.pos = pos
                                raise r.fail("string is not UTF-8") from None
                            pos += n
                        else:
                            r.pos = pos
                            sub = r.read_var_string()
                            pos = r.pos
                if (
                    (origin is not None and origin[0] == client and origin[1] >= clock)
                    or (right_origin is not None and right_origin[0] == client and right_origin[1] >= clock)
                    or (type(parent) is tuple and parent[0] == client and parent[1] >= clock)
                ):
                    r.pos = pos
                    raise r.fail("item depends on its own or a later clock")
                content: Content | str
                # ContentAny of one string of under 128 bytes: [1, 119, len, utf-8]
                n = buf[pos + 2] if ref == 8 and pos + 2 < end else 0x80
                if n < 0x80 and buf[pos] == 1 and buf[pos + 1] == 119 and pos + 3 + n <= end:
                    pos += 3
                    try:
                        content = buf[pos : pos + n].decode("utf-8")
                    except UnicodeDecodeError:
                        r.pos = pos
                        raise r.fail("string is not UTF-8") from None
                    pos += n
                    length = 1
                elif ref == 1 and pos < end and buf[pos] == 1:  # a deleted item of one clock
                    pos += 1
                    content = DELETED_1
                    length = 1
                else:
                    r.pos = pos
                    content = _read_content(r, ref)
                    pos = r.pos
                    length = 1 if type(content) is str else content.length()  # type: ignore[union-attr]
                s = Item(client, clock, origin, right_origin, parent, sub, content, length)
            if length < 1:
                continue  # occupies no clock (yrs can emit an empty string item): nothing to keep
            clock += length
            if clock > MAX_CLOCK:
                r.pos = pos
                raise r.fail("clock beyond 2**32")
            structs.append(s)
        r.pos = pos
        if not structs:
            del refs[client]
    ds = _read_delete_set(r)
    if r.pos != r.end:
        raise r.fail("trailing bytes after the delete set")
    return refs, ds


def _read_delete_set(r: Reader) -> DeleteSet:
    ds: DeleteSet = {}
    n_clients = r.read_count(2)
    for _ in range(n_clients):
        client = r.read_var_uint()
        n = r.read_count(2)
        ranges = ds.setdefault(client, [])
        for _ in range(n):
            clock = r.read_var_uint()
            length = r.read_var_uint()
            if clock + length > MAX_CLOCK:
                raise r.fail("deleted range beyond 2**32")
            if length:
                ranges.append((clock, length))
        if not ranges:
            del ds[client]
    return ds


def encode_delete_set(buf: bytearray, ds: DeleteSet) -> None:
    """Append a delete set, clients in descending order, ranges sorted and merged."""
    out: list[tuple[int, list[tuple[int, int]]]] = []
    for client in sorted(ds, reverse=True):
        merged: list[tuple[int, int]] = []
        for clock, length in sorted(ds[client]):
            if merged:
                pclock, plen = merged[-1]
                if clock <= pclock + plen:
                    end = max(pclock + plen, clock + length)
                    merged[-1] = (pclock, end - pclock)
                    continue
            merged.append((clock, length))
        if merged:
            out.append((client, merged))
    write_var_uint(buf, len(out))
    for client, ranges in out:
        write_var_uint(buf, client)
        write_var_uint(buf, len(ranges))
        for clock, length in ranges:
            write_var_uint(buf, clock)
            write_var_uint(buf, length)


def encode_update(clients: list[tuple[int, int, list[tuple[Item | GC | Skip, int]]]], ds: DeleteSet) -> bytes:
    """Encode a v1 update: per client ``(client, first clock, [(struct, offset), ...])`` written
    in the order given (each struct from ``offset`` on), then the delete set."""
    buf = bytearray()
    write_var_uint(buf, len(clients))
    for client, first, structs in clients:
        write_var_uint(buf, len(structs))
        write_var_uint(buf, client)
        write_var_uint(buf, first)
        for s, offset in structs:
            s.write(buf, offset)
    encode_delete_set(buf, ds)
    return bytes(buf)


def decode_state_vector(data: bytes) -> dict[int, int]:
    """Parse an encoded state vector; raise CorruptUpdate on any defect."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CorruptUpdate("a state vector must be bytes")
    r = Reader(bytes(data))
    sv: dict[int, int] = {}
    n = r.read_count(2)
    for _ in range(n):
        client = r.read_var_uint()
        sv[client] = r.read_var_uint()
    if r.pos != r.end:
        raise r.fail("trailing bytes after the state vector")
    return sv


def encode_state_vector(sv: dict[int, int]) -> bytes:
    """Encode a state vector, clients in descending order (as Yjs does)."""
    buf = bytearray()
    write_var_uint(buf, len(sv))
    for client in sorted(sv, reverse=True):
        write_var_uint(buf, client)
        write_var_uint(buf, sv[client])
    return bytes(buf)
