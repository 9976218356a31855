"""The pycrdt engine: Yjs documents through pycrdt (Rust yrs), imported only here."""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from pycrdt import Doc, Map, TransactionEvent, merge_updates
from pycrdt import get_update as _diff_update

from .._errors import CorruptUpdate
from .base import ROOT_MAP, Engine, EngineDoc

__all__ = ["PycrdtDoc", "PycrdtEngine"]

_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _count_fits(data: bytes, min_entry_size: int) -> bool:
    """False if the leading var-uint count claims more entries than the bytes after it can hold.

    yrs reserves room for that many entries before reading them: 7 bytes claiming 700 million
    state-vector entries make it allocate and touch about 1 GB, so such input never reaches it.
    """
    n = shift = 0
    for pos, byte in enumerate(data[:10]):
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n * min_entry_size <= len(data) - pos - 1
        shift += 7
    return not data


def _check_update(update: bytes) -> dict[int, int] | None:
    """Raise CorruptUpdate unless ``update`` decodes as a v1 update with each client once;
    return the clock each client's structs end at (None without the pure decoder)."""
    try:
        from ._python._update import decode_update
    except ImportError:  # a build without the pure engine: yrs alone decides
        return None
    refs, _ = decode_update(update)
    ends = {}
    for client, structs in refs.items():
        last = structs[-1]
        ends[client] = last.clock + last.length
    return ends


def _behind(state_vector: bytes, ends: dict[int, int] | None) -> bool:
    """True if the state vector does not reach every end clock (structs were left waiting)."""
    if ends is None:
        return True
    if not ends:
        return False
    try:
        from ._python._update import decode_state_vector
    except ImportError:
        return True
    sv = decode_state_vector(state_vector)
    return any(sv.get(client, 0) < end for client, end in ends.items())


def _fresh_client_id() -> int:
    # Yjs client ids are uint32 in JS (yrs accepts up to 2**53); stay in the range every Yjs reads.
    return secrets.randbits(32) or 1


class PycrdtDoc(EngineDoc):
    """One pycrdt Doc with the root map :data:`ROOT_MAP`."""

    def __init__(self) -> None:
        self._doc: Doc[Any] = Doc(client_id=_fresh_client_id())
        self._map: Map[Any] = self._doc.get(ROOT_MAP, type=Map)
        self._updates: list[bytes] = []
        # Keys a remote update changed, with their new value as yrs reported it (None: gone).
        self._changed: dict[str, str | None] = {}
        self._keys_failed = False
        # The visible entries as last reported, to tell real changes and to recover when yrs
        # cannot say which keys an update touched.
        self._cache: dict[str, str] = {}
        # Parts of remote updates beyond our state vector: yrs holds them pending or has
        # integrated them out of order, and then misreports map events.
        self._leftovers: list[bytes] = []
        self._remote = False
        # pycrdt keeps callbacks on the Rust side, out of sight of Python's garbage collector, and
        # a Doc with a transaction observer is never freed until it is unobserved: so observe
        # through a weak reference and unobserve when this object goes.
        me = weakref.ref(self)
        sub = self._doc.observe(lambda event: _call(me, "_on_transaction", event))
        # The map observer is subscribed only while a remote update is applied: pycrdt builds
        # a MapEvent with every changed value for each transaction observed, which a local
        # transaction (it knows what it changed) would pay for nothing.
        self._map_callback = lambda event: _call(me, "_on_map", event)
        weakref.finalize(self, self._doc.unobserve, sub)

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._updates.append(bytes(event.update))

    def _on_map(self, event: Any) -> None:
        if not self._remote:
            return  # a local transaction knows what it changed
        try:
            changed = self._changed
            for key, change in event.keys.items():
                value = change.get("newValue") if change.get("action") != "delete" else None
                changed[key] = value if isinstance(value, str) else None
        except _PASS_THROUGH:
            raise
        except BaseException:
            # yrs 0.28 panics computing MapEvent.keys when an entry arrives already deleted
            # (ContentDeleted has no value); the update itself is integrated, so fall back to
            # comparing every entry after the transaction.
            self._keys_failed = True

    @property
    def client_id(self) -> int:
        """This document's Yjs client id."""
        return int(self._doc.client_id)

    def get(self, key: str) -> str | None:
        """The value of ``key``, or None if absent or not a string (foreign data)."""
        value = self._map.get(key)
        return value if isinstance(value, str) else None

    def items(self) -> list[tuple[str, str]]:
        """All entries whose value is a string."""
        # Not Map.items(): after some hostile updates yrs lists a key it then cannot find, and
        # pycrdt raises KeyError for it; such a key counts as absent.
        found = ((key, self._map.get(key)) for key in list(self._map.keys()))
        return [(k, v) for k, v in found if isinstance(v, str)]

    def transact(self, sets: Mapping[str, str], deletes: Iterable[str]) -> bytes:
        """Apply one local transaction and return its update (b"" if nothing changed)."""
        self._updates.clear()
        self._changed.clear()
        cache = self._cache
        with self._doc.transaction():
            for key in deletes:
                if key in cache:
                    del self._map[key]
                    del cache[key]
            for key, value in sets.items():
                self._map[key] = value
                cache[key] = value
        updates, self._updates = self._updates, []
        return b"".join(updates) if len(updates) <= 1 else _merge(updates)

    def apply_update(self, update: bytes) -> dict[str, str | None]:
        """Apply a remote update; return the keys it changed with their new values."""
        self._changed.clear()
        self._keys_failed = False
        if not _count_fits(update, 3):  # each client: struct count, client id, clock
            raise CorruptUpdate("update rejected: more clients than its bytes can hold")
        # yrs integrates a client listed twice in one update twice, and reading the map then
        # crashes the process (a segfault, pycrdt 0.14.13): the pure engine's decoder refuses
        # such updates (and anything else malformed) before yrs sees them.
        ends = _check_update(update)
        self._remote = True
        sub = self._map.observe(self._map_callback)
        try:
            self._doc.apply_update(update)
        except _PASS_THROUGH:
            raise
        except BaseException as exc:  # pyo3's PanicException is a BaseException
            raise CorruptUpdate(f"update rejected: {type(exc).__name__}: {exc}") from None
        finally:
            self._remote = False
            self._updates.clear()
            self._map.unobserve(sub)
        changed, self._changed = self._changed, {}
        was_gapped = bool(self._leftovers)
        # Leftovers are tracked (a diff per update) only while the state vector shows a gap.
        if was_gapped or _behind(bytes(self._doc.get_state()), ends):
            self._track_leftovers(update)
        cache = self._cache
        if self._keys_failed or was_gapped or self._leftovers:
            # yrs's map events are wrong or missing here: compare every entry instead.
            self._keys_failed = False
            current = dict(self.items())
            changed = {key: current.get(key) for key in cache.keys() | current.keys()}
        out: dict[str, str | None] = {}
        for key, new in changed.items():
            if cache.get(key) != new:
                out[key] = new
                if new is None:
                    del cache[key]
                else:
                    cache[key] = new
        return out

    def _track_leftovers(self, update: bytes) -> None:
        sv = bytes(self._doc.get_state())
        left = []
        for u in [*self._leftovers, update]:
            rest = bytes(_diff_update(u, sv))
            if rest[:1] != b"\x00":  # the first var-uint counts clients with structs
                left.append(rest)
        if len(left) > 16:
            left = [bytes(merge_updates(*left))]
        self._leftovers = left

    def waiting(self) -> bool:
        """True while parts of received updates lie beyond the state vector."""
        return bool(self._leftovers)

    def state_vector(self) -> bytes:
        """The encoded state vector."""
        return bytes(self._doc.get_state())

    def encode_diff(self, state_vector: bytes) -> bytes:
        """Everything this document has that ``state_vector`` lacks."""
        if not _count_fits(state_vector, 2):  # each entry: client id, clock
            raise CorruptUpdate("bad state vector: more entries than its bytes can hold")
        try:
            return bytes(self._doc.get_update(state_vector))
        except _PASS_THROUGH:
            raise
        except BaseException as exc:
            raise CorruptUpdate(f"bad state vector: {type(exc).__name__}: {exc}") from None


def _call(ref: weakref.ref[PycrdtDoc], method: str, event: Any) -> None:
    doc = ref()
    if doc is not None:
        getattr(doc, method)(event)


def _merge(updates: list[bytes]) -> bytes:
    return bytes(merge_updates(*updates))


class PycrdtEngine(Engine):
    """Documents backed by pycrdt."""

    name = "pycrdt"

    def new_doc(self) -> EngineDoc:
        """A new empty document with a fresh random client id."""
        return PycrdtDoc()
