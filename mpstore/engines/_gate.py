"""The causal gate: a native engine is handed only updates it can integrate completely.

yrs (under pycrdt) departs from Yjs when an update arrives before something it depends on (a gap
in a sender's clocks, an origin or parent not yet present, a deletion of a struct not yet here):
it shows structs it has not integrated, loses pending ones, and panics in its map events. So
every update is decoded with the pure engine's decoder first, and :class:`CausalGate` keeps on our
side whatever the engine's state vector does not yet allow: structs waiting for a dependency, and
deletions of clocks not yet present. It releases, in causal order, exactly the part that can be
integrated now, as Yjs does with its pending structs, so the engine shows what Yjs shows.

:class:`ExactContent` keeps foreign values the engine would re-encode differently (JS ``-0``,
BigInt, objects in their key order...) so that what passes through is relayed bit-exact.
"""

from __future__ import annotations

from typing import NamedTuple

from ._python._held import HeldDeletes
from ._python._lib0 import AnyValue
from ._python._structs import (
    GC,
    ID,
    Content,
    ContentAny,
    ContentDoc,
    ContentEmbed,
    ContentFormat,
    ContentJSON,
    ContentType,
    Item,
    Skip,
)
from ._python._update import DeleteSet, Refs

__all__ = ["CausalGate", "ExactContent", "Release", "StructRun"]

#: One client's structs as they go into an update: (client, first clock, [(struct, offset)]).
StructRun = tuple[int, int, list[tuple[Item | GC | Skip, int]]]


class Release(NamedTuple):
    """What the engine can integrate now: ``clients`` and ``deletes`` to encode, the state vector
    it will have after them, and ``whole``: the update given was released entire, alone."""

    clients: list[StructRun]
    deletes: DeleteSet
    state: dict[int, int]
    whole: bool


def _normalize(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for clock, length in sorted(ranges):
        if out and clock <= out[-1][0] + out[-1][1]:
            pclock, plen = out[-1]
            out[-1] = (pclock, max(pclock + plen, clock + length) - pclock)
        else:
            out.append((clock, length))
    return out


def _end(s: Item | GC | Skip) -> int:
    return s.clock + s.length


class CausalGate:
    """Structs and deletions held until the engine's state vector allows them, released in causal
    order. Pure bookkeeping over decoded updates; the engine's state vector is passed in."""

    __slots__ = ("_blocked", "_held", "_held_ds", "_keys", "_types")

    def __init__(self) -> None:
        # per client, sorted by clock; may overlap where two updates split a range differently
        self._held: dict[int, list[Item | GC]] = {}
        self._keys: set[tuple[int, int, int]] = set()
        self._held_ds: DeleteSet = {}
        # Deletions travel with their update: those of an update whose structs wait are held
        # until they are integrated (with the clocks they need), so a writer's key never shows
        # the deletion of its old value without the new one (Yjs applies them at once).
        self._blocked = HeldDeletes()
        # ids of the nested types released: an item whose parent is anything else becomes GC,
        # as in Yjs (yrs panics on it and integrates part of the update)
        self._types: set[ID] = set()

    def waiting(self) -> bool:
        """True while structs or deletions wait for something that has not arrived."""
        return bool(self._held or self._held_ds or self._blocked)

    def held_structs(self) -> dict[int, list[Item | GC]]:
        """The structs held, per client (read-only view for encoding diffs)."""
        return self._held

    def held_deletes(self) -> DeleteSet:
        """The deletions held, per client (a copy, for encoding diffs)."""
        out: DeleteSet = {c: list(r) for c, r in self._held_ds.items()}
        for ds in self._blocked:
            for client, ranges in ds.items():
                out.setdefault(client, []).extend(ranges)
        return out

    def admit(self, refs: Refs, ds: DeleteSet, state: dict[int, int]) -> Release:
        """Take a decoded update; release what an engine with state vector ``state`` can integrate
        completely now (with anything held that it unblocks), and hold the rest."""
        was_idle = not self._held and not self._held_ds and not self._blocked
        ends = {
            c: max(s.clock + s.length for s in lst if not isinstance(s, Skip))
            for c, lst in refs.items()
            if any(not isinstance(s, Skip) for s in lst)
        }
        held = self._held
        keys = self._keys
        for client, structs in refs.items():
            have = state.get(client, 0)
            lst = held.get(client)
            for s in structs:
                if isinstance(s, Skip) or _end(s) <= have:
                    continue
                key = (client, s.clock, s.length)
                if key in keys:
                    continue
                keys.add(key)
                if lst is None:
                    lst = held[client] = []
                if lst and lst[-1].clock > s.clock:
                    lst.append(s)
                    lst.sort(key=lambda x: x.clock)
                else:
                    lst.append(s)
        cursor = dict(state)
        out: dict[int, list[tuple[Item | GC | Skip, int]]] = {}
        converted = False
        progress = True
        while progress:
            progress = False
            for client in list(held):
                lst = held[client]
                cur = cursor.get(client, 0)
                i = 0
                n = len(lst)
                while i < n:
                    s = lst[i]
                    if _end(s) <= cur:
                        i += 1
                        continue
                    if s.clock > cur or (type(s) is Item and not self._ready(s, cur, cursor)):
                        break
                    released: Item | GC = s
                    if type(s) is Item:
                        parent = s.parent
                        if type(parent) is tuple and parent not in self._types:
                            released = GC(client, s.clock, s.length)
                            converted = True
                        elif type(s.content) is ContentType:
                            self._types.add((client, s.clock))
                    out.setdefault(client, []).append((released, cur - s.clock))
                    cur = _end(s)
                    i += 1
                    progress = True
                cursor[client] = cur
                if i:
                    for s in lst[:i]:
                        keys.discard((client, s.clock, s.length))
                    del lst[:i]
                    # later entries the released ones covered are done too
                    while lst and _end(lst[0]) <= cur:
                        s = lst.pop(0)
                        keys.discard((client, s.clock, s.length))
                if not lst:
                    del held[client]
        deletes: DeleteSet = {}
        held_ds = self._held_ds
        need = {c: end for c, end in ends.items() if cursor.get(c, 0) < end}
        if need and ds:
            self._blocked.add(ds, need)
        else:
            for client, ranges in ds.items():
                held_ds.setdefault(client, []).extend(ranges)
        if self._blocked:
            for bds in self._blocked.release(lambda c: cursor.get(c, 0)):
                for client, ranges in bds.items():
                    held_ds.setdefault(client, []).extend(ranges)
        for client in list(held_ds):
            cur = cursor.get(client, 0)
            keep: list[tuple[int, int]] = []
            for clock, length in _normalize(held_ds[client]):
                if clock >= cur:
                    keep.append((clock, length))
                elif clock + length <= cur:
                    deletes.setdefault(client, []).append((clock, length))
                else:
                    deletes.setdefault(client, []).append((clock, cur - clock))
                    keep.append((cur, clock + length - cur))
            if keep:
                held_ds[client] = keep
            else:
                del held_ds[client]
        clients = [
            (client, run[0][0].clock + run[0][1], run) for client, run in sorted(out.items(), reverse=True)
        ]
        whole = was_idle and not converted and not self._held and not self._held_ds and not self._blocked
        return Release(clients, deletes, cursor, whole)

    @staticmethod
    def _ready(item: Item, cur: int, cursor: dict[int, int]) -> bool:
        """Every struct ``item`` (from clock ``cur`` on) refers to is integrated or released."""
        origin = item.origin
        if origin is not None and cur == item.clock and origin[1] >= cursor.get(origin[0], 0):
            return False
        right = item.right_origin
        if right is not None and right[1] >= cursor.get(right[0], 0):
            return False
        parent = item.parent
        return not (type(parent) is tuple and parent[1] >= cursor.get(parent[0], 0))

    def extend_diff(self, refs: Refs, state: dict[int, int]) -> list[StructRun]:
        """Runs for an update: the engine's diff ``refs`` (against ``state``) followed, per client,
        by the held structs beyond it, with Skips over the gaps (as Yjs adds its pending ones)."""
        runs: list[StructRun] = []
        held = self._held
        for client in sorted(set(refs) | set(held), reverse=True):
            run: list[tuple[Item | GC | Skip, int]] = [(s, 0) for s in refs.get(client, ())]
            cursor = _end(run[-1][0]) if run else state.get(client, 0)
            for h in held.get(client, ()):
                end = _end(h)
                if end <= cursor:
                    continue
                if h.clock > cursor and run:
                    run.append((Skip(client, cursor, h.clock - cursor), 0))
                run.append((h, max(0, cursor - h.clock)))
                cursor = end
            if run:
                first, offset = run[0]
                runs.append((client, first.clock + offset, run))
        return runs


class ExactContent:
    """Foreign contents by clock, to put back bit-exact where an engine re-encodes them."""

    __slots__ = ("_values", "_whole")

    def __init__(self) -> None:
        self._values: dict[ID, AnyValue] = {}  # one element of a ContentAny or ContentJSON
        self._whole: dict[ID, Content] = {}  # an embed, format or sub-document

    def __bool__(self) -> bool:
        return bool(self._values or self._whole)

    def record(self, runs: list[StructRun]) -> None:
        """Remember every content in ``runs`` (handed to the engine) that is not plain strings."""
        values = self._values
        for _client, _first, run in runs:
            for s, _offset in run:
                if type(s) is not Item:
                    continue
                content = s.content
                if isinstance(content, ContentAny):
                    for i, v in enumerate(content.arr):
                        if type(v) is not str:
                            values[(s.client, s.clock + i)] = v
                elif isinstance(content, ContentJSON):
                    for i, v in enumerate(content.arr):
                        values[(s.client, s.clock + i)] = v
                elif isinstance(content, (ContentEmbed, ContentFormat, ContentDoc)):
                    self._whole[(s.client, s.clock)] = content

    def patch(self, refs: Refs, full: bool) -> None:
        """Put the remembered contents back into ``refs`` (decoded from the engine's encoding);
        with ``full`` (a diff of everything), forget those no longer present."""
        values = self._values
        whole = self._whole
        seen: set[ID] = set()
        for structs in refs.values():
            for s in structs:
                if type(s) is not Item:
                    continue
                content = s.content
                kind = type(content)
                if kind is str:  # ContentAny([str]) decoded bare
                    key = (s.client, s.clock)
                    if key in values:
                        s.content = ContentAny([values[key]])
                        seen.add(key)
                elif kind is ContentAny or kind is ContentJSON:
                    arr = content.arr  # type: ignore[union-attr]
                    for i in range(len(arr)):
                        key = (s.client, s.clock + i)
                        if key in values:
                            arr[i] = values[key]
                            seen.add(key)
                elif kind in (ContentEmbed, ContentFormat, ContentDoc):
                    key = (s.client, s.clock)
                    old = whole.get(key)
                    if old is not None and type(old) is kind:
                        s.content = old
                        seen.add(key)
        if full:
            for table in (values, whole):
                for key in [k for k in table if k not in seen]:
                    del table[key]
