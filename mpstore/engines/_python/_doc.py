"""The pure-Python Yjs document: struct store, YATA integration, delete sets, pending structs."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping

from ..._errors import CorruptUpdate
from ..base import ROOT_MAP, Engine, EngineDoc
from ._held import HeldDeletes
from ._lib0 import write_var_string, write_var_uint
from ._structs import (
    DELETED_1,
    GC,
    ID,
    ContentAny,
    ContentDeleted,
    ContentType,
    Item,
    Skip,
    Struct,
    YType,
    write_any_string,
)
from ._update import (
    DeleteSet,
    Refs,
    decode_state_vector,
    decode_update,
    encode_delete_set,
    encode_state_vector,
)

__all__ = ["PythonDoc", "PythonEngine"]

# A root-map item without origins: ContentAny with parent info, the root's name, a key.
_ROOT_PARENT = bytes((0x28, 1, len(ROOT_MAP))) + ROOT_MAP.encode("ascii")
_TYPE_MAP = 1
_TYPE_UNDEFINED = 15

_used_ids: set[int] = set()
_ids_lock = threading.Lock()


def _fresh_client_id() -> int:
    """A random 32-bit client id never handed out before in this process."""
    with _ids_lock:
        while True:
            cid = secrets.randbits(32)
            if cid not in _used_ids:
                _used_ids.add(cid)
                return cid


def _value(item: Item | None) -> str | None:
    """The visible str value of a root-map entry (None if deleted or not a string)."""
    if item is None or item.deleted:
        return None
    content = item.content
    if type(content) is str:
        return content
    if type(content) is ContentAny:
        v = content.arr[-1]
        if type(v) is str:
            return v
    return None


def _find_index(structs: list[Struct], clock: int) -> int:
    """Index of the struct containing ``clock`` (Yjs's findIndexSS: interpolation, then bisect)."""
    left = 0
    right = len(structs) - 1
    mid = structs[right]
    midclock = mid.clock
    if midclock == clock:
        return right
    midindex = (clock * right) // (midclock + mid.length - 1) if midclock + mid.length > 1 else 0
    while left <= right:
        if midindex > right or midindex < left:
            midindex = (left + right) // 2
        mid = structs[midindex]
        midclock = mid.clock
        if midclock <= clock:
            if clock < midclock + mid.length:
                return midindex
            left = midindex + 1
        else:
            right = midindex - 1
        midindex = (left + right) // 2
    raise AssertionError(f"clock {clock} not in the struct store")


def _clock_of(s: Item | GC | Skip) -> int:
    return s.clock


def _normalize(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge overlapping/adjacent (clock, length) ranges."""
    out: list[tuple[int, int]] = []
    for clock, length in sorted(ranges):
        if out:
            pclock, plen = out[-1]
            if clock <= pclock + plen:
                if clock + length > pclock + plen:
                    out[-1] = (pclock, clock + length - pclock)
                continue
        out.append((clock, length))
    return out


class _Txn:
    """What one transaction did: deletions (for the local update), root keys touched, GC work."""

    __slots__ = ("deleted", "gc", "touched")

    def __init__(self) -> None:
        self.deleted: DeleteSet = {}
        self.touched: dict[str, str | None] = {}
        self.gc: list[Item] = []


class PythonDoc(EngineDoc):
    """A Yjs document in pure Python holding the root map ``mpstore`` of str -> str."""

    def __init__(self, client_id: int | None = None) -> None:
        self._client_id = _fresh_client_id() if client_id is None else client_id
        self._clients: dict[int, list[Struct]] = {}
        self._root = YType(_TYPE_MAP, ROOT_MAP)
        self._share: dict[str, YType] = {ROOT_MAP: self._root}
        self._deleted_last = False  # the last remote update deleted something new
        # structs waiting for a dependency, and the clocks whose arrival may unblock them
        self._pending: Refs = {}
        self._pending_missing: dict[int, int] = {}
        # deletions of structs we do not have yet (normalized ranges per client)
        self._pending_ds: DeleteSet = {}
        # Deletions travel with their update: those of an update whose structs wait are held
        # until they are integrated (with the clocks they need). Yjs applies them at once, and a
        # writer's key then vanishes (its old value deleted, its new one not shown) until the
        # gap fills; here a replica only ever shows states of the writer's history.
        self._blocked = HeldDeletes()

    # -- the EngineDoc contract ------------------------------------------------------------

    @property
    def client_id(self) -> int:
        """This instance's client id (replaced if a remote update is seen using it)."""
        return self._client_id

    def get(self, key: str) -> str | None:
        """The current string under ``key``, or None."""
        return _value(self._root.map.get(key))

    def items(self) -> list[tuple[str, str]]:
        """All current (key, value) string entries."""
        out = []
        for key, item in self._root.map.items():
            v = _value(item)
            if v is not None:
                out.append((key, v))
        return out

    def transact(self, sets: Mapping[str, str], deletes: Iterable[str]) -> bytes:
        """Apply deletes then sets locally; return the v1 update (b"" if nothing changed)."""
        for key, value in sets.items():
            if type(key) is not str or type(value) is not str:
                raise TypeError("engine keys and values must be str")
        root = self._root
        txn = _Txn()
        for key in deletes:
            item = root.map.get(key)
            if item is not None and not item.deleted:
                self._delete(txn, item)
        client = self._client_id
        start = self._state(client)
        clock = start
        body = bytearray()
        if sets:
            # Yjs's map set, integrated and encoded inline: the map holds the rightmost item of
            # each key (its ``right`` is None), so the new item goes right after it with no
            # concurrent siblings to order, and the old one is deleted.
            structs = self._clients.get(client)
            if structs is None:
                structs = self._clients[client] = []
            entries = root.map
            delete = self._delete
            append = structs.append
            for key, value in sets.items():
                left = entries.get(key)
                if left is None:
                    item = Item(client, clock, None, None, root, key, value, 1)
                    body += _ROOT_PARENT
                    write_var_string(body, key)
                else:
                    origin_clock = left.clock + left.length - 1
                    item = Item(client, clock, (left.client, origin_clock), None, root, key, value, 1)
                    item.left = left
                    left.right = item
                    if not left.deleted:
                        delete(txn, left)
                    body.append(0xA8)  # ContentAny, an origin, a key (not written after an origin)
                    write_var_uint(body, left.client)
                    write_var_uint(body, origin_clock)
                write_any_string(body, value)
                entries[key] = item
                append(item)
                clock += 1
        if clock == start and not txn.deleted:
            return b""
        self._gc(txn)
        buf = bytearray()
        if clock == start:
            buf.append(0)
        else:
            buf.append(1)
            write_var_uint(buf, clock - start)
            write_var_uint(buf, client)
            write_var_uint(buf, start)
            buf += body
        encode_delete_set(buf, txn.deleted)
        return bytes(buf)

    def apply_update(self, update: bytes) -> dict[str, str | None]:
        """Apply a remote v1 update; return the root keys whose visible value changed."""
        refs, ds = decode_update(update)
        ends = {
            c: max(s.clock + s.length for s in lst if type(s) is not Skip)
            for c, lst in refs.items()
            if any(type(s) is not Skip for s in lst)
        }
        txn = _Txn()
        own_before = self._state(self._client_id)
        try:
            self._integrate_with_pending(txn, refs)
            need = {c: end for c, end in ends.items() if self._state(c) < end}
            if need and ds:
                self._blocked.add(ds, need)
                ds = {}
            self._apply_with_pending_ds(txn, ds)
            self._gc(txn)
        except (AssertionError, LookupError, RecursionError) as exc:  # pragma: no cover
            # a defect in this engine, not in the input; never let it escape as a crash
            raise CorruptUpdate(f"update could not be integrated: {exc!r}") from exc
        self._deleted_last = bool(txn.deleted)
        if self._state(self._client_id) != own_before:
            # another replica writes with our id: move to a fresh one, as Yjs does
            self._client_id = _fresh_client_id()
        root_map = self._root.map
        changes: dict[str, str | None] = {}
        for key, old in txn.touched.items():
            new = _value(root_map.get(key))
            if new != old:
                changes[key] = new
        return changes

    def deleted_last(self) -> bool:
        """True when the last remote update deleted something not deleted before."""
        return self._deleted_last

    def waiting(self) -> bool:
        """True while structs or deletions wait for dependencies that have not arrived."""
        return bool(self._pending or self._pending_ds or self._blocked)

    def state_vector(self) -> bytes:
        """The encoded state vector (integrated structs only, not pending ones)."""
        return encode_state_vector({c: s[-1].clock + s[-1].length for c, s in self._clients.items() if s})

    def encode_diff_parts(self, state_vector: bytes, max_bytes: int) -> Iterator[bytes]:
        """The diff for ``state_vector`` in parts of about ``max_bytes``, cut lazily along each
        client's clocks (structs added after the first part come as ordinary updates); the last
        part is the delete set. With anything pending, the whole diff in one part."""
        if self._pending or self._pending_ds or self._blocked:
            yield self.encode_diff(state_vector)
            return
        sv = decode_state_vector(state_vector)
        ends = {c: s[-1].clock + s[-1].length for c, s in self._clients.items() if s}
        for client in sorted(ends, reverse=True):
            cursor, end = sv.get(client, 0), ends[client]
            while cursor < end:
                structs = self._clients[client]  # looked up again: the document may have changed
                idx = _find_index(structs, cursor)
                first, count, body = cursor, 0, bytearray()
                while idx < len(structs) and cursor < end and len(body) < max_bytes:
                    struct = structs[idx]
                    struct.write(body, cursor - struct.clock)
                    cursor = struct.clock + struct.length
                    count += 1
                    idx += 1
                part = bytearray()
                for n in (1, count, client, first):
                    write_var_uint(part, n)
                part += body
                part.append(0)  # an empty delete set
                yield bytes(part)
        yield self.encode_diff(self.state_vector())  # no structs: the delete set

    def encode_diff(self, state_vector: bytes) -> bytes:
        """A v1 update with all this document has beyond ``state_vector`` (plus pending data)."""
        sv = decode_state_vector(state_vector)
        per_client: list[tuple[int, int, list[tuple[Item | GC | Skip, int]]]] = []
        for client in sorted(set(self._clients) | set(self._pending), reverse=True):
            theirs = sv.get(client, 0)
            out: list[tuple[Item | GC | Skip, int]] = []
            cursor = theirs
            first = -1
            structs = self._clients.get(client)
            if structs:
                last = structs[-1]
                if theirs < last.clock + last.length:
                    idx = _find_index(structs, theirs)
                    first = theirs
                    out.append((structs[idx], theirs - structs[idx].clock))
                    out.extend((s, 0) for s in structs[idx + 1 :])
                    cursor = last.clock + last.length
            for ref in self._pending.get(client, ()):
                end = ref.clock + ref.length
                if end <= cursor:
                    continue
                if first < 0:
                    first = max(ref.clock, cursor)
                elif ref.clock > cursor:
                    out.append((Skip(client, cursor, ref.clock - cursor), 0))
                out.append((ref, max(0, cursor - ref.clock)))
                cursor = end
            if out:
                per_client.append((client, first, out))
        buf = bytearray()
        write_var_uint(buf, len(per_client))
        for client, first, out in per_client:
            write_var_uint(buf, len(out))
            write_var_uint(buf, client)
            write_var_uint(buf, first)
            for s, offset in out:
                s.write(buf, offset)
        ds: DeleteSet = {c: list(r) for c, r in self._pending_ds.items()}
        for bds in self._blocked:
            for client, ranges in bds.items():
                ds.setdefault(client, []).extend(ranges)
        for client, structs in self._clients.items():
            ranges = ds.setdefault(client, [])
            run_start = -1
            run_end = -1
            for s in structs:
                if s.deleted:
                    if s.clock == run_end:
                        run_end += s.length
                    else:
                        if run_start >= 0:
                            ranges.append((run_start, run_end - run_start))
                        run_start = s.clock
                        run_end = s.clock + s.length
            if run_start >= 0:
                ranges.append((run_start, run_end - run_start))
        encode_delete_set(buf, ds)
        return bytes(buf)

    # -- pending structs and deletions -----------------------------------------------------

    def _integrate_with_pending(self, txn: _Txn, refs: Refs) -> None:
        """Integrate ``refs``; retry what was pending only if something it waits for arrived."""
        missing: dict[int, int] = {}
        rest = self._integrate_structs(txn, refs, missing)
        pending = self._pending
        for client, lst in rest.items():
            kept = [s for s in lst if type(s) is not Skip]
            if not kept:
                continue
            old = pending.get(client)
            if old is None:
                pending[client] = kept
            else:
                old.extend(kept)
                old.sort(key=_clock_of)  # two sorted runs: a linear merge
        pmissing = self._pending_missing
        for client, clock in missing.items():
            if client not in pmissing or clock < pmissing[client]:
                pmissing[client] = clock
        if pending and refs and any(c < self._state(cl) for cl, c in pmissing.items()):
            self._pending = {}
            self._pending_missing = {}
            missing = {}
            rest = self._integrate_structs(txn, pending, missing)
            self._pending = {
                c: kept for c, lst in rest.items() if (kept := [s for s in lst if type(s) is not Skip])
            }
            self._pending_missing = missing if self._pending else {}

    def _apply_with_pending_ds(self, txn: _Txn, ds: DeleteSet) -> None:
        """Apply ``ds`` and the pending deletions that may now find their structs."""
        if self._blocked:
            for bds in self._blocked.release(self._state):
                for client, ranges in bds.items():
                    ds.setdefault(client, []).extend(ranges)
        keep: DeleteSet = {}
        for client, ranges in self._pending_ds.items():
            if ranges[0][0] < self._state(client):
                ds.setdefault(client, []).extend(ranges)
            else:
                keep[client] = ranges
        unapplied = self._apply_delete_set(txn, ds)
        for client, ranges in unapplied.items():
            keep[client] = _normalize(keep.get(client, []) + ranges)
        self._pending_ds = keep

    # -- struct store ----------------------------------------------------------------------

    def _state(self, client: int) -> int:
        structs = self._clients.get(client)
        if not structs:
            return 0
        last = structs[-1]
        return last.clock + last.length

    def _get_struct(self, id_: ID) -> Struct:
        structs = self._clients[id_[0]]
        return structs[_find_index(structs, id_[1])]

    def _split(self, left: Item, diff: int) -> Item:
        """Split ``left`` at ``diff`` (Yjs's splitItem); return the new right part."""
        right = Item(
            left.client,
            left.clock + diff,
            (left.client, left.clock + diff - 1),
            left.right_origin,
            left.parent,
            left.parent_sub,
            left.content.splice(diff),  # type: ignore[union-attr]  # a str has one clock
            left.length - diff,
        )
        right.deleted = left.deleted
        right.left = left
        right.right = left.right
        left.right = right
        left.length = diff
        if right.right is not None:
            right.right.left = right
        parent = right.parent
        if right.parent_sub is not None and right.right is None and isinstance(parent, YType):
            parent.map[right.parent_sub] = right
        return right

    def _clean_start(self, id_: ID) -> Struct:
        structs = self._clients[id_[0]]
        idx = _find_index(structs, id_[1])
        s = structs[idx]
        if s.clock < id_[1] and type(s) is Item:
            right = self._split(s, id_[1] - s.clock)
            structs.insert(idx + 1, right)
            return right
        return s

    def _clean_end(self, id_: ID) -> Struct:
        structs = self._clients[id_[0]]
        idx = _find_index(structs, id_[1])
        s = structs[idx]
        if id_[1] != s.clock + s.length - 1 and type(s) is Item:
            structs.insert(idx + 1, self._split(s, id_[1] - s.clock + 1))
        return s

    def _add_struct(self, s: Struct) -> None:
        structs = self._clients.get(s.client)
        if structs is None:
            self._clients[s.client] = [s]
        else:
            structs.append(s)

    # -- integration -----------------------------------------------------------------------

    def _get_missing(self, item: Item) -> int | None:
        """The client of a missing dependency, or None after resolving left/right/parent."""
        client = item.client
        origin = item.origin
        if origin is not None and origin[0] != client and origin[1] >= self._state(origin[0]):
            return origin[0]
        right_origin = item.right_origin
        if (
            right_origin is not None
            and right_origin[0] != client
            and right_origin[1] >= self._state(right_origin[0])
        ):
            return right_origin[0]
        parent = item.parent
        if type(parent) is tuple and parent[0] != client and parent[1] >= self._state(parent[0]):
            return parent[0]
        left: Struct | None = None
        right: Struct | None = None
        if origin is not None:
            left = self._clean_end(origin)
            item.origin = (left.client, left.clock + left.length - 1)
        if right_origin is not None:
            right = self._clean_start(right_origin)
            item.right_origin = (right.client, right.clock)
        item.left = left if type(left) is Item else None
        item.right = right if type(right) is Item else None
        if type(left) is GC or type(right) is GC:
            item.parent = None
        elif parent is None:
            if type(left) is Item:
                item.parent = left.parent
                item.parent_sub = left.parent_sub
            elif type(right) is Item:
                item.parent = right.parent
                item.parent_sub = right.parent_sub
        elif type(parent) is tuple:
            ps = self._get_struct(parent)
            if type(ps) is Item and type(ps.content) is ContentType:
                item.parent = ps.content.type
            else:
                item.parent = None
        elif type(parent) is str:
            ytype = self._share.get(parent)
            if ytype is None:
                ytype = self._share[parent] = YType(_TYPE_UNDEFINED, parent)
            item.parent = ytype
        return None

    def _integrate(self, txn: _Txn, item: Item, offset: int) -> None:
        """Yjs's Item.integrate: place ``item`` among its concurrent siblings (YATA)."""
        if offset > 0:
            item.clock += offset
            left_s = self._clean_end((item.client, item.clock - 1))
            if type(left_s) is not Item:
                self._add_struct(GC(item.client, item.clock, item.length - offset))
                return
            item.left = left_s
            item.origin = (left_s.client, left_s.clock + left_s.length - 1)
            # The encoding implies the origin's parent; a hostile update may claim another one
            # (a struct overlapping known structs of a different key): follow the origin, as yrs
            # does, so this replica matches what its own diff reproduces elsewhere.
            item.parent, item.parent_sub = left_s.parent, left_s.parent_sub
            item.content = item.content.splice(offset)  # type: ignore[union-attr]
            item.length -= offset
        parent = item.parent
        if not isinstance(parent, YType):
            self._add_struct(GC(item.client, item.clock, item.length))
            return
        sub = item.parent_sub
        left = item.left
        right = item.right
        if sub is not None and right is None:
            current = parent.map.get(sub)
            if (left is None and current is None) or (left is not None and left.right is None):
                # What the general path below does when there is nothing to order: the first
                # item of a key, or one that goes right after the rightmost (an overwrite).
                if parent is self._root:
                    touched = txn.touched
                    if sub not in touched:
                        touched[sub] = _value(current)
                parent.map[sub] = item
                if left is not None:
                    left.right = item
                    self._delete(txn, left)
                self._add_struct(item)
                content = item.content
                if type(content) is ContentType:
                    content.type.item = item
                owner = parent.item
                if owner is not None and owner.deleted:
                    self._delete(txn, item)
                return
        if sub is not None and parent is self._root:
            touched = txn.touched
            if sub not in touched:
                touched[sub] = _value(parent.map.get(sub))
        if (left is None and (right is None or right.left is not None)) or (
            left is not None and left.right is not right
        ):
            o: Item | None
            if left is not None:
                o = left.right
            elif sub is not None:
                o = parent.map.get(sub)
                while o is not None and o.left is not None:
                    o = o.left
            else:
                o = parent.start
            conflicting: set[Item] = set()
            before_origin: set[Item] = set()
            while o is not None and o is not right:
                before_origin.add(o)
                conflicting.add(o)
                if item.origin == o.origin:
                    if o.client < item.client:
                        left = o
                        conflicting.clear()
                    elif item.right_origin == o.right_origin:
                        break
                elif o.origin is not None and (oo := self._get_struct(o.origin)) in before_origin:
                    if oo not in conflicting:
                        left = o
                        conflicting.clear()
                else:
                    break
                o = o.right
            item.left = left
        if left is not None:
            item.right = left.right
            left.right = item
        else:
            if sub is not None:
                r = parent.map.get(sub)
                while r is not None and r.left is not None:
                    r = r.left
            else:
                r = parent.start
                parent.start = item
            item.right = r
        if item.right is not None:
            item.right.left = item
        elif sub is not None:
            parent.map[sub] = item
            if left is not None:
                self._delete(txn, left)
        self._add_struct(item)
        content = item.content
        if type(content) is ContentType:
            content.type.item = item
        owner = parent.item
        if (owner is not None and owner.deleted) or (sub is not None and item.right is not None):
            self._delete(txn, item)

    def _delete(self, txn: _Txn, item: Item) -> None:
        """Mark ``item`` deleted (and, for a nested type, everything in it)."""
        stack = [item]
        root = self._root
        while stack:
            it = stack.pop()
            if it.deleted:
                continue
            sub = it.parent_sub
            if sub is not None and it.parent is root:
                touched = txn.touched
                if sub not in touched:
                    touched[sub] = _value(root.map.get(sub))
            it.deleted = True
            ranges = txn.deleted.get(it.client)
            if ranges is None:
                txn.deleted[it.client] = [(it.clock, it.length)]
            else:
                ranges.append((it.clock, it.length))
            txn.gc.append(it)
            content = it.content
            if type(content) is ContentType:
                child = content.type.start
                while child is not None:
                    if not child.deleted:
                        stack.append(child)
                    child = child.right
                for child in content.type.map.values():
                    if not child.deleted:
                        stack.append(child)

    def _gc(self, txn: _Txn) -> None:
        """Drop deleted content: ContentDeleted for deleted items, GC structs inside dead types."""
        for item in txn.gc:
            content = item.content
            if type(content) is ContentType:
                self._gc_type(content.type)
            if type(content) is not ContentDeleted:
                item.content = DELETED_1 if item.length == 1 else ContentDeleted(item.length)

    def _gc_type(self, ytype: YType) -> None:
        """Replace every item inside a deleted type (recursively) by a GC struct."""
        stack = [ytype]
        while stack:
            t = stack.pop()
            children: list[Item] = []
            child = t.start
            while child is not None:
                children.append(child)
                child = child.right
            for child in t.map.values():
                while child is not None:
                    children.append(child)
                    child = child.left
            t.start = None
            t.map = {}
            for child in children:
                if type(child.content) is ContentType:
                    stack.append(child.content.type)
                structs = self._clients[child.client]
                idx = _find_index(structs, child.clock)
                if structs[idx] is child:
                    structs[idx] = GC(child.client, child.clock, child.length)

    def _integrate_structs(self, txn: _Txn, refs: Refs, missing_sv: dict[int, int]) -> Refs:
        """Yjs's integrateStructs: follow dependencies with a stack; return what must wait and
        record in ``missing_sv`` the clock per client whose arrival could unblock it."""
        targets: dict[int, list[object]] = {c: [lst, 0] for c, lst in refs.items() if lst}
        ids = sorted(targets)
        rest: Refs = {}
        stack: list[tuple[int, Item | GC | Skip]] = []
        state: dict[int, int] = {}

        def need(client: int, clock: int) -> None:
            if client not in missing_sv or clock < missing_sv[client]:
                missing_sv[client] = clock

        def next_target() -> list[object] | None:
            while ids:
                t = targets.get(ids[-1])
                if t is not None and t[1] < len(t[0]):  # type: ignore[arg-type, operator]
                    return t
                ids.pop()
            return None

        def dead_wall() -> None:
            first: dict[int, int] = {}
            for idx, s in stack:
                if s.client not in first or idx < first[s.client]:
                    first[s.client] = idx
            for c, idx in first.items():
                t = targets.pop(c)
                lst: list[Item | GC | Skip] = t[0]  # type: ignore[assignment]
                rest[c] = lst[idx:]
                t[0] = []
                t[1] = 0
            stack.clear()

        cur = next_target()
        if cur is None:
            return rest
        lst: list[Item | GC | Skip] = cur[0]  # type: ignore[assignment]
        head_idx: int = cur[1]  # type: ignore[assignment]
        head = lst[head_idx]
        cur[1] = head_idx + 1
        while True:
            if type(head) is not Skip:
                client = head.client
                local = state.get(client)
                if local is None:
                    local = state[client] = self._state(client)
                offset = local - head.clock
                if offset < 0:
                    stack.append((head_idx, head))
                    need(client, head.clock - 1)
                    dead_wall()
                elif offset < head.length:
                    missing = self._get_missing(head) if type(head) is Item else None
                    if missing is not None:
                        stack.append((head_idx, head))
                        t = targets.get(missing)
                        if t is None or t[1] >= len(t[0]):  # type: ignore[arg-type, operator]
                            need(missing, self._state(missing))
                            dead_wall()
                        else:
                            lst = t[0]  # type: ignore[assignment]
                            head_idx = t[1]  # type: ignore[assignment]
                            head = lst[head_idx]
                            t[1] = head_idx + 1
                            continue
                    else:
                        end = head.clock + head.length
                        if type(head) is Item:
                            self._integrate(txn, head, offset)
                        else:
                            head.clock += offset
                            head.length -= offset
                            self._add_struct(head)  # type: ignore[arg-type]
                        state[client] = end
            if stack:
                head_idx, head = stack.pop()
                continue
            if cur is not None and cur[1] < len(cur[0]):  # type: ignore[arg-type, operator]
                lst = cur[0]  # type: ignore[assignment]
                head_idx = cur[1]  # type: ignore[assignment]
            else:
                cur = next_target()
                if cur is None:
                    break
                lst = cur[0]  # type: ignore[assignment]
                head_idx = cur[1]  # type: ignore[assignment]
            head = lst[head_idx]
            cur[1] = head_idx + 1
        return rest

    def _apply_delete_set(self, txn: _Txn, ds: DeleteSet) -> DeleteSet:
        """Delete what ``ds`` names that we have; return the ranges beyond our state."""
        unapplied: DeleteSet = {}
        for client, raw in ds.items():
            ranges = _normalize(raw)
            structs = self._clients.get(client)
            state = self._state(client)
            for clock, length in ranges:
                end = clock + length
                if clock >= state or structs is None:
                    unapplied.setdefault(client, []).append((clock, length))
                    continue
                if state < end:
                    unapplied.setdefault(client, []).append((state, end - state))
                idx = _find_index(structs, clock)
                s = structs[idx]
                if not s.deleted and s.clock < clock and type(s) is Item:
                    structs.insert(idx + 1, self._split(s, clock - s.clock))
                    idx += 1
                n = len(structs)
                while idx < n:
                    s = structs[idx]
                    idx += 1
                    if s.clock >= end:
                        break
                    if not s.deleted and type(s) is Item:
                        if end < s.clock + s.length:
                            structs.insert(idx, self._split(s, end - s.clock))
                            n += 1
                        self._delete(txn, s)
        return unapplied


class PythonEngine(Engine):
    """The pure-Python engine (Python 3.10 standard library only)."""

    name = "python"

    def new_doc(self) -> PythonDoc:
        """A new empty document with a fresh random 32-bit client id."""
        return PythonDoc()
