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


def _fresh_client_id() -> int:
    # Yjs client ids are uint32 in JS (yrs accepts up to 2**53); stay in the range every Yjs reads.
    return secrets.randbits(32) or 1


class PycrdtDoc(EngineDoc):
    """One pycrdt Doc with the root map :data:`ROOT_MAP`."""

    def __init__(self) -> None:
        self._doc: Doc[Any] = Doc(client_id=_fresh_client_id())
        self._map: Map[Any] = self._doc.get(ROOT_MAP, type=Map)
        self._updates: list[bytes] = []
        self._changed: set[str] = set()
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
        self._map.observe(lambda event: _call(me, "_on_map", event))
        weakref.finalize(self, self._doc.unobserve, sub)

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._updates.append(bytes(event.update))

    def _on_map(self, event: Any) -> None:
        if not self._remote:
            return  # a local transaction knows what it changed
        try:
            self._changed.update(event.keys)
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
        return [(k, v) for k, v in self._map.items() if isinstance(v, str)]

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
        self._remote = True
        try:
            # One entry per client first: yrs integrates a client listed twice in one update
            # twice, and reading the map afterwards crashes the process (a segfault, pycrdt
            # 0.14.13); merging gives the same update, clean. yrs decodes the whole update
            # before integrating it, so malformed input leaves the document untouched.
            update = bytes(merge_updates(update))
            self._doc.apply_update(update)
        except _PASS_THROUGH:
            raise
        except BaseException as exc:  # pyo3's PanicException is a BaseException
            raise CorruptUpdate(f"update rejected: {type(exc).__name__}: {exc}") from None
        finally:
            self._remote = False
            self._updates.clear()
        changed, self._changed = self._changed, set()
        was_gapped = bool(self._leftovers)
        self._track_leftovers(update)
        if self._keys_failed or was_gapped or self._leftovers:
            # yrs's map events are wrong or missing here: compare every entry instead.
            self._keys_failed = False
            current = dict(self.items())
            changed = self._cache.keys() | current.keys()
        cache = self._cache
        out: dict[str, str | None] = {}
        for key in changed:
            new = self.get(key)
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
