"""Wall-clock last-writer-wins over a SharedDict: :class:`LatestWins`.

Yjs orders *concurrent* writes to one key by client id, not by time. This view gives each
device its own slot per key (``"<key>@<peer id>"``, a value ``{"t": time, "v": value}`` or
``{"t": time, "deleted": true}``) and picks on read the entry with the largest ``(t, peer id)``.
Every replica ends up holding the same slots, so every replica picks the same winner.

Invariants:
- A write is stamped above every entry of that key the writer can see (a hybrid clock), so a
  write made after seeing another always wins over it, whatever the two devices' clocks say.
- A write deletes the other slots of its key that the writer can see: they are dominated by the
  new entry. A concurrent write into such a slot is a new Yjs item and survives the delete, so
  pruning never changes the winner; it only keeps one entry per key (plus concurrent ones).
- Deleting a key leaves its tombstone as the winner: an older write arriving late stays hidden.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from ._errors import InvalidArgument
from ._store import MISSING, SharedDict, StoreChange, Subscription
from ._values import check_key

__all__ = ["LatestWins"]

_Winner = tuple[float, str, bool, Any]  # (t, peer id, deleted, value)


def _parse(slot: str, entry: Any) -> tuple[str, str, float, bool, Any] | None:
    """``(key, peer id, t, deleted, value)`` of one slot, or None if it is not one of ours."""
    key, sep, device = slot.rpartition("@")
    if not sep or len(device) != 32 or type(entry) is not dict:
        return None
    t = entry.get("t")
    if type(t) is not float and type(t) is not int:
        return None
    if not math.isfinite(t):
        return None
    if entry.get("deleted") is True and "v" not in entry:
        return key, device, float(t), True, None
    if "v" not in entry:
        return None
    return key, device, float(t), False, entry["v"]


class LatestWins(MutableMapping[str, Any]):
    """A view of a SharedDict where, per key, the latest write by wall-clock time wins."""

    def __init__(self, store: SharedDict, *, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(store, SharedDict):
            raise InvalidArgument(f"LatestWins needs a SharedDict, not {type(store).__name__}")
        self._store = store
        self._me: str = store._manager._host.local_id
        self._clock = clock
        self._write_lock = threading.Lock()
        self._devices_cache: tuple[int, list[str]] | None = None

    @property
    def store(self) -> SharedDict:
        """The SharedDict underneath (one slot per key and device)."""
        return self._store

    def __repr__(self) -> str:
        return f"<LatestWins over {self._store.name!r} with {len(self)} keys>"

    # -- reads

    def _slots(self) -> dict[str, dict[str, tuple[float, bool, Any]]]:
        """key -> peer id -> (t, deleted, value), from one consistent snapshot."""
        out: dict[str, dict[str, tuple[float, bool, Any]]] = {}
        for slot, entry in self._store.to_dict().items():
            parsed = _parse(slot, entry)
            if parsed is not None:
                key, device, t, deleted, value = parsed
                out.setdefault(key, {})[device] = (t, deleted, value)
        return out

    @staticmethod
    def _winner(entries: dict[str, tuple[float, bool, Any]]) -> _Winner:
        device = max(entries, key=lambda d: (entries[d][0], d))
        t, deleted, value = entries[device]
        return t, device, deleted, value

    def _winners(self) -> dict[str, _Winner]:
        return {key: self._winner(entries) for key, entries in self._slots().items()}

    def _devices(self) -> list[str]:
        """Every peer id with a slot in the store (cached per store version)."""
        store = self._store
        version = store._version
        cached = self._devices_cache
        if cached is not None and cached[0] == version:
            return cached[1]
        found = {self._me}
        for slot in store:
            _, sep, device = slot.rpartition("@")
            if sep and len(device) == 32:
                found.add(device)
        devices = sorted(found)
        self._devices_cache = (version, devices)
        return devices

    def _key_entries(self, key: str) -> dict[str, tuple[float, bool, Any]]:
        out: dict[str, tuple[float, bool, Any]] = {}
        for device in self._devices():
            slot = f"{key}@{device}"
            try:
                entry = self._store[slot]
            except KeyError:
                continue
            parsed = _parse(slot, entry)
            if parsed is not None:
                out[device] = (parsed[2], parsed[3], parsed[4])
        return out

    def __getitem__(self, key: str) -> Any:
        entries = self._key_entries(check_key(key))
        if not entries:
            raise KeyError(key)
        _, _, deleted, value = self._winner(entries)
        if deleted:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        if type(key) is not str:
            return False
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, w in self._winners().items() if not w[2]])

    def __len__(self) -> int:
        return sum(1 for w in self._winners().values() if not w[2])

    def to_dict(self) -> dict[str, Any]:
        """A plain copy of the current winners."""
        return {k: w[3] for k, w in self._winners().items() if not w[2]}

    def stamp(self, key: str) -> tuple[float, str] | None:
        """``(time, peer id)`` of the entry that currently decides ``key`` (a delete included)."""
        entries = self._key_entries(check_key(key))
        if not entries:
            return None
        t, device, _, _ = self._winner(entries)
        return t, device

    # -- writes

    def _write(self, key: str, entry: dict[str, Any]) -> None:
        with self._write_lock, self._store.batch():
            entries = self._key_entries(key)
            t = float(self._clock())
            if not math.isfinite(t):
                raise InvalidArgument(f"the clock gave {t!r}")
            if entries:
                latest = max(e[0] for e in entries.values())
                if t <= latest:
                    t = math.nextafter(latest, math.inf)
            entry["t"] = t
            self._store[f"{key}@{self._me}"] = entry
            for device in entries:
                if device != self._me:
                    self._store.pop(f"{key}@{device}", None)

    def __setitem__(self, key: str, value: Any) -> None:
        self._write(check_key(key), {"v": value})

    def __delitem__(self, key: str) -> None:
        with self._write_lock:
            if key not in self:
                raise KeyError(key)
        self._write(key, {"deleted": True})

    # -- waiting and observing

    def wait_for(self, predicate: Callable[[LatestWins], Any], timeout: float | None = None) -> None:
        """Block until ``predicate(self)`` is true (see :meth:`SharedDict.wait_for`)."""
        self._store.wait_for(lambda _: predicate(self), timeout)

    def observe(self, callback: Callable[[StoreChange], Any]) -> Subscription:
        """Call ``callback(change)`` when a key's winning value changes.

        ``change.changes`` maps each such key to ``(old, new)`` winners (MISSING when absent);
        slot bookkeeping that changes no winner is not reported.
        """
        if not callable(callback):
            raise InvalidArgument("callback must be callable")
        lock = threading.Lock()
        # key -> (t, peer id, value) of the winner last reported; deleted keys are absent.
        seen: dict[str, tuple[float, str, Any]] = {
            k: (w[0], w[1], w[3]) for k, w in self._winners().items() if not w[2]
        }

        def on_change(change: StoreChange) -> None:
            keys = {slot.rpartition("@")[0] for slot in change.changes}
            diff: dict[str, tuple[Any, Any]] = {}
            with lock:
                for key in sorted(keys):
                    entries = self._key_entries(key)
                    now: tuple[float, str, Any] | None = None
                    if entries:
                        t, device, deleted, value = self._winner(entries)
                        if not deleted:
                            now = (t, device, value)
                    before = seen.get(key)
                    if before is None and now is None:
                        continue
                    if before is not None and now is not None and before[:2] == now[:2]:
                        continue
                    diff[key] = (MISSING if before is None else before[2], MISSING if now is None else now[2])
                    if now is None:
                        seen.pop(key, None)
                    else:
                        seen[key] = now
            if diff:
                callback(StoreChange(change.store, diff, change.from_peer))

        return self._store.observe(on_change)
