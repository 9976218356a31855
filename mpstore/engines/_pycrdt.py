"""The pycrdt engine: Yjs documents through pycrdt (Rust yrs), imported only here."""

from __future__ import annotations

import logging
import secrets
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from pycrdt import Doc, Map, TransactionEvent, merge_updates

from .._errors import CorruptUpdate
from ._gate import CausalGate, ExactContent
from ._python._update import decode_state_vector, decode_update, encode_update
from .base import ROOT_MAP, Engine, EngineDoc

log = logging.getLogger("mpstore.store")

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
        # Keys a remote update changed, with their new value as yrs reported it (None: gone).
        self._changed: dict[str, str | None] = {}
        self._keys_failed = False
        # The visible entries as last reported, to tell real changes and to recover when yrs
        # cannot say which keys an update touched.
        self._cache: dict[str, str] = {}
        # yrs only ever gets updates it can integrate completely (see _gate.py).
        self._gate = CausalGate()
        self._exact = ExactContent()
        self._sv: dict[int, int] | None = None  # yrs's state vector, None until read again
        self._short: dict[int, int] = {}  # clocks released to yrs that it did not integrate
        self._remote = False
        self._deleted_last = False  # the last remote update deleted something new
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
        update = bytes(event.update)
        self._updates.append(update)
        # No struct (first var-uint 0), then a delete set naming a client: deletions only.
        if self._remote and update[:1] == b"\x00" and update[1:2] not in (b"", b"\x00"):
            self._deleted_last = True

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

    def _snapshot(self) -> dict[str, str]:
        """Every string entry, read in one call (Map.get costs two transactions per key)."""
        try:
            whole = self._map.to_py() or {}
        except _PASS_THROUGH:
            raise
        except BaseException:  # hostile input can leave a key yrs lists but cannot read
            return dict(self.items())
        return {k: v for k, v in whole.items() if isinstance(v, str)}

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
        self._sv = None
        return b"".join(updates) if len(updates) <= 1 else _merge(updates)

    def apply_update(self, update: bytes) -> dict[str, str | None]:
        """Apply a remote update; return the keys it changed with their new values.

        Only what yrs can integrate completely reaches it: the rest waits in the causal gate
        until its dependencies arrive (:meth:`waiting`).
        """
        self._changed.clear()
        self._keys_failed = False
        self._deleted_last = False
        # The pure engine's decoder refuses malformed updates (and those listing a client twice,
        # which yrs integrates twice and then crashes the process reading) before yrs sees them.
        refs, ds = decode_update(update)
        release = self._gate.admit(refs, ds, self._state())
        if not release.clients and not release.deletes:
            return {}
        self._exact.record(release.clients)
        payload = update if release.whole else encode_update(release.clients, release.deletes)
        cache = self._cache
        self._remote = True
        sub = self._map.observe(self._map_callback)
        failed: BaseException | None = None
        try:
            self._doc.apply_update(payload)
        except _PASS_THROUGH:
            raise
        except BaseException as exc:  # pyo3's PanicException is a BaseException
            failed = exc
        finally:
            self._remote = False
            self._updates.clear()
            self._map.unobserve(sub)
        before = self._sv
        after = self._sv = decode_state_vector(bytes(self._doc.get_state()))
        short = self._short
        for client, clock in release.state.items():
            if after.get(client, 0) < clock:
                short[client] = max(clock, short.get(client, 0))
            elif client in short and after.get(client, 0) >= short[client]:
                del short[client]
        if failed is not None:
            # yrs can panic after integrating (its map events): the state vector tells.
            if after == before and dict(self.items()) == cache:
                self._changed.clear()
                raise CorruptUpdate(f"update rejected: {type(failed).__name__}: {failed}") from None
            log.warning("yrs raised applying an update it integrated: %s: %s", type(failed).__name__, failed)
            self._keys_failed = True
        changed, self._changed = self._changed, {}
        if self._keys_failed or short:
            # yrs's map events are wrong or missing here: compare every entry instead.
            self._keys_failed = False
            current = self._snapshot()
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

    def _state(self) -> dict[int, int]:
        sv = self._sv
        if sv is None:
            sv = self._sv = decode_state_vector(bytes(self._doc.get_state()))
        return sv

    def deleted_last(self) -> bool:
        """True when the last remote update deleted something not deleted before."""
        return self._deleted_last

    def waiting(self) -> bool:
        """True while updates wait for changes that have not arrived (a sync brings them)."""
        return self._gate.waiting() or bool(self._short)

    def state_vector(self) -> bytes:
        """The encoded state vector."""
        return bytes(self._doc.get_state())

    def encode_diff(self, state_vector: bytes) -> bytes:
        """Everything this document has that ``state_vector`` lacks."""
        if not _count_fits(state_vector, 2):  # each entry: client id, clock
            raise CorruptUpdate("bad state vector: more entries than its bytes can hold")
        try:
            diff = bytes(self._doc.get_update(state_vector))
        except _PASS_THROUGH:
            raise
        except BaseException as exc:
            raise CorruptUpdate(f"bad state vector: {type(exc).__name__}: {exc}") from None
        gate = self._gate
        if not gate.waiting() and not self._exact:
            return diff
        # Add what waits in the gate (as Yjs adds its pending structs) and put foreign contents
        # back as they came: yrs re-encodes -0 as 0 and a BigInt as an integer.
        refs, ds = decode_update(diff)
        theirs = decode_state_vector(state_vector)
        self._exact.patch(refs, full=not theirs)
        for client, ranges in gate.held_deletes().items():
            ds.setdefault(client, []).extend(ranges)
        return encode_update(gate.extend_diff(refs, theirs), ds)


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
