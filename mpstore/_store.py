"""The replicated store: :class:`SharedDict` over :class:`~mpstore._docsync.DocSync`.

Threads: every document belongs to the core thread. A :class:`StoreManager` is driven there by
the core (``peer_added``, ``peer_removed``, ``message``, ``close``); user threads reach it through
``StoreHost.call``. Each SharedDict keeps a mirror of its entries (the encoded strings), written
only on the core thread under the store's lock, so reads never hop threads and a writer reads
its own write as soon as the write returns. Observers run on the dispatcher thread.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ._docsync import DocSync, StoreUpdated, check_store_name
from ._errors import Closed, ConfigurationError, InvalidArgument, Timeout
from ._outbox import Outbox
from ._persist import Persistence
from ._values import MISSING, ValueDecodeError, check_key, decode_value, encode_value
from .engines import ENGINE_NAMES, Engine, load_engine
from .engines.base import EngineDoc

__all__ = [
    "MISSING",
    "Participant",
    "PeerLike",
    "SharedDict",
    "StoreChange",
    "StoreHost",
    "StoreManager",
    "Subscription",
]

log = logging.getLogger("mpstore.store")

#: Unapplied writes a node lets its users queue before a writer waits for the core thread.
MAX_IN_FLIGHT = 4096

T = TypeVar("T")

#: Bytes of store messages handed to one link per turn of the core loop; more waits for the
#: next turn, after the transport has had its chance to report the link not writable.
RELEASE_BYTES = 1 << 20
#: wait_for re-checks its predicate at least this often (seconds).
WAIT_POLL = 0.1
_NOTHING: Any = object()


class PeerLike(Protocol):
    """What the store needs of a peer (``mpstore.PeerID`` satisfies it)."""

    @property
    def id(self) -> str:
        """The peer's hex id."""

    @property
    def display_name(self) -> str:
        """The peer's display name."""


class StoreHost(Protocol):
    """What the core provides to the store manager."""

    @property
    def local_id(self) -> str:
        """This node's own peer id."""

    def call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """Run ``fn`` on the core thread and return its result (raises Closed after end_all)."""

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the core thread soon, without waiting."""

    def dispatch(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the dispatcher thread, in order."""

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Core thread: run ``fn`` on the core thread after ``delay`` seconds."""

    def send_sync(self, peer: Any, payload: bytes) -> None:
        """Core thread: send one store message reliably to a connected peer."""

    def connected_peers(self) -> list[Any]:
        """Core thread: the connected peers."""

    def peer_by_id(self, peer_id: str) -> Any | None:
        """Core thread: any peer seen with this id, or None."""

    def store_changed(self, store: SharedDict, change: StoreChange) -> None:
        """Dispatcher thread: tell the user's MultipeerConnectivity.store_changed."""


@dataclass(frozen=True)
class StoreChange:
    """What one transaction changed in a store.

    ``changes`` maps each changed key to ``(old, new)``, with :data:`mpstore.MISSING` for an
    absent side; ``from_peer`` is the PeerID whose edit it was, or None for a local edit. A
    relayed edit names its author if this peer has ever seen the author, else the neighbour that
    relayed it; changes merged from a sync diff name the peer that sent the diff.
    ``store`` is the store's name. The values are fresh copies shared by all observers of this
    change.
    """

    store: str
    changes: Mapping[str, tuple[Any, Any]]
    from_peer: Any | None

    def __repr__(self) -> str:
        return (
            f"StoreChange(store={self.store!r}, changes={dict(self.changes)!r}, from_peer={self.from_peer!r})"
        )


class _Observed(Protocol):
    """What a Subscription belongs to: a SharedDict, or a node's presence."""

    def _unsubscribe(self, sub: Subscription) -> None: ...


class Subscription:
    """A registered observer; :meth:`cancel` stops further callbacks."""

    def __init__(
        self,
        store: _Observed,
        callback: Callable[[Any], Any],
        anchor: Callable[[object], Callable[[], None]] | None = None,
    ) -> None:
        self._store = store
        self.active = True
        self._running = threading.RLock()  # held while the callback runs
        self._release: Callable[[], None] | None = None
        self._ref: Callable[[], Callable[[Any], Any] | None]
        # The node's threads reach this subscription; if it held the callback strongly, a
        # callback that is a method of the user's object (or a closure over it) would keep that
        # object alive for ever and garbage collection would never end it. So the callback is
        # held weakly here and strongly by the user's object (``anchor``), a plain cycle.
        ref: Callable[[], Callable[[Any], Any] | None] | None = None
        if anchor is not None:
            try:
                ref = weakref.WeakMethod(callback) if inspect.ismethod(callback) else weakref.ref(callback)
            except TypeError:
                ref = None  # not weakly referenceable: held strongly below
        if ref is not None and anchor is not None:
            self._release = anchor(callback)
            self._ref = ref
        else:
            self._ref = lambda: callback

    @property
    def callback(self) -> Callable[[Any], Any] | None:
        """The observer (None once it is gone)."""
        return self._ref()

    def cancel(self) -> None:
        """Stop calling the callback; idempotent. After it returns no call is running or will
        start (from another thread it waits for a running call to finish)."""
        with self._running:
            self._store._unsubscribe(self)
            release, self._release = self._release, None
            if release is not None:
                release()

    def _run(self, change: Any) -> None:
        with self._running:
            callback = self._ref() if self.active else None
            if callback is not None:
                callback(change)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


_RawChange = tuple["str | None", "str | None", Any]


class _Changes(Mapping[str, tuple[Any, Any]]):
    """``key -> (old, new)`` of one StoreChange, decoded on first use (on the dispatcher
    thread, and not at all when nobody looks)."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: dict[str, _RawChange]) -> None:
        self._raw = raw
        self._decoded: dict[str, tuple[Any, Any]] | None = None

    def _get(self) -> dict[str, tuple[Any, Any]]:
        decoded = self._decoded
        if decoded is None:
            decoded = {}
            for key, (old_raw, new_raw, new_value) in self._raw.items():
                old = MISSING if old_raw is None else decode_value(old_raw)
                if new_value is _NOTHING:
                    new_value = MISSING if new_raw is None else decode_value(new_raw)
                decoded[key] = (old, new_value)
            self._decoded = decoded
        return decoded

    def __getitem__(self, key: str) -> tuple[Any, Any]:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __repr__(self) -> str:
        return repr(self._get())


class _Batch:
    __slots__ = ("deletes", "depth", "sets")

    def __init__(self) -> None:
        self.sets: dict[str, str] = {}
        self.deletes: set[str] = set()
        self.depth = 0


class _ThreadState(threading.local):
    """Per-thread state of one store: the thread's open batch (a class default, so reading it
    on a thread that never opened one costs no failed attribute lookup)."""

    batch: _Batch | None = None


def _decode(raw: str) -> Any:
    return decode_value(raw)


class SharedDict(MutableMapping[str, Any]):
    """A dictionary replicated to every connected peer (a ``MutableMapping``; any thread)."""

    def __init__(self, manager: StoreManager, name: str, entries: dict[str, str]) -> None:
        self._manager = manager
        self._name = name
        self._data = entries
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._version = 0
        self._closed = False
        self._subs: list[Subscription] = []
        self._local = _ThreadState()
        # Set before the store is handed out: its writes are on disk before they return.
        self._durable = False
        # Writes handed to the core thread but not applied yet: key -> (write id, raw or None
        # for a delete). Reads on every thread see them at once; the core drops each entry
        # when it has applied that write (a local write always wins locally in Yjs).
        self._pending: dict[str, tuple[int, str | None]] = {}

    @property
    def name(self) -> str:
        """The store's name."""
        return self._name

    def __repr__(self) -> str:
        return f"<SharedDict {self._name!r} with {len(self)} keys>"

    # -- reads (mirror; overlay of the calling thread's open batch)

    def _batch(self) -> _Batch | None:
        return self._local.batch

    def _raw(self, key: str) -> str | None:
        b = self._batch()
        if b is not None:
            if key in b.sets:
                return b.sets[key]
            if key in b.deletes:
                return None
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None:
                return pending[1]
            return self._data.get(key)

    def _snapshot(self) -> dict[str, str]:
        with self._lock:
            view = dict(self._data)
            for key, (_, raw) in self._pending.items():
                if raw is None:
                    view.pop(key, None)
                else:
                    view[key] = raw
        b = self._batch()
        if b is not None:
            for k in b.deletes:
                view.pop(k, None)
            view.update(b.sets)
        return view

    def __getitem__(self, key: str) -> Any:
        raw = self._raw(key)
        if raw is None:
            raise KeyError(key)
        return _decode(raw)

    def __contains__(self, key: object) -> bool:
        return type(key) is str and self._raw(key) is not None

    def __len__(self) -> int:
        if self._batch() is None:
            with self._lock:
                if not self._pending:
                    return len(self._data)
        return len(self._snapshot())

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._snapshot()))

    def to_dict(self) -> dict[str, Any]:
        """A plain deep copy of the current contents."""
        return {k: _decode(v) for k, v in self._snapshot().items()}

    def items(self) -> Any:
        """A list of ``(key, value)`` pairs, taken at once (a consistent snapshot)."""
        return list(self.to_dict().items())

    def values(self) -> Any:
        """A list of the values, taken at once."""
        return list(self.to_dict().values())

    def keys(self) -> Any:
        """A list of the keys, taken at once."""
        return list(self._snapshot())

    # -- writes

    def _commit(self, sets: dict[str, str], deletes: list[str]) -> None:
        b = self._batch()
        if b is not None:
            for k in deletes:
                b.sets.pop(k, None)
                b.deletes.add(k)
            for k, v in sets.items():
                b.deletes.discard(k)
                b.sets[k] = v
            return
        if sets or deletes:
            self._manager._write(self, sets, deletes)

    def _forget_pending(self, write: int, keys: list[str]) -> None:
        """Core thread: the write ``write`` is applied; reads fall through to the mirror."""
        with self._lock:
            for key in keys:
                entry = self._pending.get(key)
                if entry is not None and entry[0] == write:
                    del self._pending[key]

    def __setitem__(self, key: str, value: Any) -> None:
        check_key(key)
        self._commit({key: encode_value(value)}, [])

    def __delitem__(self, key: str) -> None:
        check_key(key)
        if self._batch() is not None:
            if self._raw(key) is None:
                raise KeyError(key)
            self._commit({}, [key])
            return

        def core() -> None:
            if key not in self._data:
                raise KeyError(key)
            self._manager._transact(self, {}, [key])

        self._manager._call(core)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Set many keys in one transaction (one update on the wire)."""
        new = dict(other)
        new.update(kwargs)
        sets = {check_key(k): encode_value(v) for k, v in new.items()}
        self._commit(sets, [])

    def pop(self, key: str, default: Any = _NOTHING) -> Any:
        """Remove ``key`` and return its value (or ``default``; KeyError without one)."""
        check_key(key)
        if self._batch() is not None:
            raw = self._raw(key)
            if raw is None:
                if default is _NOTHING:
                    raise KeyError(key)
                return default
            self._commit({}, [key])
            return _decode(raw)

        def core() -> str | None:
            raw = self._data.get(key)
            if raw is not None:
                self._manager._transact(self, {}, [key])
            return raw

        raw = self._manager._call(core)
        if raw is None:
            if default is _NOTHING:
                raise KeyError(key)
            return default
        return _decode(raw)

    def popitem(self) -> tuple[str, Any]:
        """Remove and return some ``(key, value)`` pair; KeyError when empty."""
        if self._batch() is not None:
            snap = self._snapshot()
            if not snap:
                raise KeyError("popitem(): store is empty")
            key = next(reversed(snap))
            self._commit({}, [key])
            return key, _decode(snap[key])

        def core() -> tuple[str, str]:
            if not self._data:
                raise KeyError("popitem(): store is empty")
            key = next(reversed(self._data))
            raw = self._data[key]
            self._manager._transact(self, {}, [key])
            return key, raw

        key, raw = self._manager._call(core)
        return key, _decode(raw)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key``, first setting it to ``default`` if absent (atomically)."""
        check_key(key)
        enc = encode_value(default)
        if self._batch() is not None:
            raw = self._raw(key)
            if raw is None:
                self._commit({key: enc}, [])
                raw = enc
            return _decode(raw)

        def core() -> str:
            raw = self._data.get(key)
            if raw is None:
                self._manager._transact(self, {key: enc}, [])
                return enc
            return raw

        return _decode(self._manager._call(core))

    def clear(self) -> None:
        """Delete every key in one transaction."""
        if self._batch() is not None:
            self._commit({}, list(self._snapshot()))
            return
        self._manager._call(lambda: self._manager._transact(self, {}, list(self._data)))

    def flush(self) -> None:
        """Wait until every earlier write is applied and, for a saved store, on disk (fsync).

        Raises :class:`mpstore.PersistError` if the disk refused it (the data stays in memory).
        """
        self._manager._call(lambda: self._manager._persist.flush(self._name))

    @property
    def persistent(self) -> bool:
        """True if this store is saved on disk (see ``data_dir``)."""
        return bool(self._manager._call(lambda: self._manager._persist.persists(self._name)))

    def batch(self) -> _BatchContext:
        """A context manager: every write inside it is one transaction, sent as one update.

        Reads inside see the batch's own writes; an exception inside discards them. Batches
        belong to the thread that opened them; nested batches join the outer one.
        """
        return _BatchContext(self)

    # -- observers and waiting

    def observe(self, callback: Callable[[StoreChange], Any]) -> Subscription:
        """Call ``callback(change)`` on the dispatcher thread after each change."""
        if not callable(callback):
            raise InvalidArgument("callback must be callable")
        sub = Subscription(self, callback, self._manager._anchor)
        with self._lock:
            if self._closed:
                raise Closed("the store was closed (end_all)")
            self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            sub.active = False
            if sub in self._subs:
                self._subs.remove(sub)

    def wait_for(self, predicate: Callable[[SharedDict], Any], timeout: float | None = None) -> None:
        """Block until ``predicate(self)`` is true; :class:`mpstore.Timeout` (a TimeoutError)
        when ``timeout`` seconds pass first, :class:`mpstore.Closed` if the store is closed.

        The predicate runs on the calling thread after every change of this store, and at
        least every WAIT_POLL seconds (so it may also look at other stores or the clock).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                version = self._version
                closed = self._closed
            if predicate(self):
                return
            if closed:
                raise Closed(f"store {self._name!r} is closed")
            with self._cond:
                if self._version != version or self._closed:
                    continue
                slice_ = WAIT_POLL
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Timeout(f"store {self._name!r}: condition not met in {timeout} s")
                    slice_ = min(slice_, remaining)
                self._cond.wait(slice_)

    # -- core thread side

    def _apply(self, changes: Mapping[str, str | None], trusted: bool = False) -> dict[str, _RawChange]:
        """Core thread: write changes into the mirror; return what visibly changed, as raw
        ``(old, new, decoded new or _NOTHING)``. ``trusted``: values we encoded ourselves."""
        out: dict[str, _RawChange] = {}
        data = self._data
        with self._cond:
            for key, raw in changes.items():
                new_value: Any = _NOTHING
                if raw is not None and not trusted:
                    try:
                        new_value = decode_value(raw)
                    except ValueDecodeError as exc:
                        log.warning("store %r key %r: undecodable value hidden: %s", self._name, key, exc)
                        raw = None
                old_raw = data.get(key)
                if old_raw == raw:
                    continue
                if raw is None:
                    del data[key]
                else:
                    data[key] = raw
                out[key] = (old_raw, raw, new_value)
            if out:
                self._version += 1
                self._cond.notify_all()
        return out

    def _deliver(self, change: StoreChange) -> None:
        """Dispatcher thread: run the observers, then the host's store_changed."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub._run(change)
            except Exception:
                log.exception("store %r observer %r raised", self._name, sub.callback)
        try:
            self._manager._host.store_changed(self, change)
        except Exception:
            log.exception("store_changed raised for store %r", self._name)

    def _close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _BatchContext:
    def __init__(self, store: SharedDict) -> None:
        self._store = store

    def __enter__(self) -> SharedDict:
        st = self._store
        b = st._batch()
        if b is None:
            b = _Batch()
            st._local.batch = b
        b.depth += 1
        return st

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        st = self._store
        b = st._batch()
        assert b is not None
        b.depth -= 1
        if b.depth:
            return
        st._local.batch = None
        if exc_type is None and (b.sets or b.deletes):
            sets, deletes = b.sets, [k for k in b.deletes if k not in b.sets]
            st._manager._write(st, sets, deletes)


class Participant:
    """A plain y-protocols neighbour of one store (a browser tab, a Yjs-server room).

    Made by :meth:`StoreManager.attach_participant`. Its methods may be called from any thread;
    they run on the core thread in the order they were called. ``send`` is called on the core
    thread with one y-protocols sync message at a time; while ``can_send()`` is false, messages
    wait here until :meth:`writable` is called. It appears as ``from_peer`` of the changes it
    makes (``id`` and ``display_name`` like a PeerID).
    """

    def __init__(
        self,
        manager: StoreManager,
        pid: str,
        store: str,
        send: Callable[[bytes], None],
        can_send: Callable[[], bool] | None,
        display_name: str,
    ) -> None:
        self._manager = manager
        self.id = pid
        self.store = store
        self.display_name = display_name
        self._send = send
        self._can_send = can_send
        self._queue: deque[bytes] = deque()
        self.attached = True

    def __repr__(self) -> str:
        return f"<Participant {self.display_name!r} of store {self.store!r}>"

    def receive(self, message: bytes) -> None:
        """A y-protocols sync message (type 0) from it; bad input is logged and dropped."""
        data = bytes(message)
        self._manager._post(lambda: self._manager._participant_message(self, data))

    def writable(self) -> None:
        """It drained: send what waited."""
        self._manager._post(self._drain)

    def detach(self) -> None:
        """It left; idempotent. What waited for it is dropped (a reattach resyncs by diff)."""
        self._manager._post(lambda: self._manager._detach(self))

    # core thread
    def _open(self) -> bool:
        if self._can_send is None:
            return True
        try:
            return bool(self._can_send())
        except Exception:
            log.exception("can_send of %r raised; detaching it", self)
            self._manager._detach(self)
            return False

    def _deliver(self, message: bytes) -> None:
        if not self.attached:
            return
        if self._queue or not self._open():
            if self.attached:
                self._queue.append(message)
            return
        self._call_send(message)

    def _drain(self) -> None:
        while self.attached and self._queue and self._open():
            self._call_send(self._queue.popleft())

    def _call_send(self, message: bytes) -> None:
        try:
            self._send(message)
        except Exception:
            log.exception("sending to %r failed; detaching it", self)
            self._manager._detach(self)


class StoreManager:
    """All stores of one MultipeerConnectivity; the core drives it on the core thread."""

    def __init__(
        self,
        host: StoreHost,
        engine: str | Engine | None = None,
        *,
        max_stores: int = 1024,
        data_dir: str | os.PathLike[str] | None = None,
        durable: bool = False,
    ) -> None:
        if isinstance(engine, str) and engine not in (*ENGINE_NAMES, "auto"):
            raise ConfigurationError(f"unknown store engine {engine!r}: use 'auto', 'pycrdt' or 'python'")
        self._host = host
        local_id = host.local_id
        self._engine_choice = engine
        self._engine: Engine | None = engine if isinstance(engine, Engine) else None
        self._persist = Persistence(data_dir, durable=durable, schedule=host.call_later)
        self._sync = DocSync(
            local_id, self._new_doc, max_stores=max_stores, open_doc=self._open_doc, stream_snapshots=True
        )
        self.close_error: Exception | None = None
        self._stores: dict[str, SharedDict] = {}
        self._peers: dict[str, Any] = {}
        self._outbox = Outbox()
        self._timer_at: float | None = None
        self._releasing = False
        self._lock = threading.Lock()
        self._closed = False
        self._writes = itertools.count(1)
        # Writes made on user threads, not applied yet, in the order they were made; the core
        # takes them all at each wake-up (one posted drain at a time).
        self._queue: list[tuple[SharedDict, dict[str, str], list[str], int]] = []
        self._qlock = threading.Lock()
        self._drain_posted = False
        self._participants: dict[str, Participant] = {}
        self._participant_ids = itertools.count(1)
        self._anchors: dict[int, object] = {}

    @property
    def engine_name(self) -> str | None:
        """The loaded engine's name, or None before the first store needed one."""
        return None if self._engine is None else self._engine.name

    @property
    def docsync(self) -> DocSync:
        """The sans-IO replication state (core thread only)."""
        return self._sync

    def _loaded_engine(self) -> Engine:
        if self._engine is None:
            choice = self._engine_choice
            self._engine = load_engine(choice if isinstance(choice, str) else None)
        return self._engine

    def _new_doc(self) -> EngineDoc:
        return self._loaded_engine().new_doc()

    def _open_doc(self, name: str) -> EngineDoc:
        """A store's document: loaded from its data_dir when saved, else new (DocSync's factory)."""
        return self._persist.new_doc(name, self._loaded_engine().new_doc)

    def _anchor(self, obj: object) -> Callable[[], None]:
        """Keep ``obj`` alive as long as the user's object (see Subscription)."""
        anchor = getattr(self._host, "anchor", None)
        if anchor is not None:
            released: Callable[[], None] = anchor(obj)
            return released
        key = id(obj)
        self._anchors[key] = obj

        def release() -> None:
            self._anchors.pop(key, None)

        return release

    def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise Closed("the store was closed (end_all)")

        def run() -> T:
            self._drain()  # every earlier write of this thread is applied first
            return fn()

        return self._host.call(run)

    # -- user side

    def shared_dict(
        self, name: str, persist: bool | str | os.PathLike[str] | None = None, durable: bool | None = None
    ) -> SharedDict:
        """The store ``name`` (the same object for the same name); any thread."""
        check_store_name(name)
        if persist is None and durable is None:
            with self._lock:
                store = self._stores.get(name)
            if store is not None:
                return store
        return self._call(lambda: self._open(name, persist, durable))

    def _open(
        self, name: str, persist: bool | str | os.PathLike[str] | None = None, durable: bool | None = None
    ) -> SharedDict:
        replacement = self._persist.choose(name, persist, durable, self._sync.docs.get(name))
        if replacement is not None:  # the store starts or stops being saved
            self._sync.docs[name] = replacement
        with self._lock:
            store = self._stores.get(name)
            if store is not None:
                store._durable = self._persist.is_durable(name)
                return store
        doc = self._sync.doc(name)
        entries: dict[str, str] = {}
        for key, raw in doc.items():
            try:
                decode_value(raw)
            except ValueDecodeError as exc:
                log.warning("store %r key %r: undecodable value hidden: %s", name, key, exc)
                continue
            entries[key] = raw
        store = SharedDict(self, name, entries)
        store._durable = self._persist.is_durable(name)
        with self._lock:
            self._stores[name] = store
        return store

    def stores(self) -> list[SharedDict]:
        """The stores opened so far."""
        with self._lock:
            return list(self._stores.values())

    def _write(self, store: SharedDict, sets: dict[str, str], deletes: list[str]) -> None:
        """Queue a user write for the core thread, without waiting for it.

        The write shows in reads at once (pending overlay). The core applies queued writes in
        the order they were made, merging the writes it finds queued when it wakes into one
        transaction per run of writes to the same store. Past MAX_IN_FLIGHT queued writes, the
        writer waits for the core, so a writer faster than the core cannot grow memory without
        bound.
        """
        if self._closed:
            raise Closed("the store was closed (end_all)")
        if store._durable:  # on disk before returning: wait for the core thread
            self._call(lambda: self._transact(store, sets, deletes))
            return
        # Under the store's lock the write ids of one store are queued in increasing order,
        # which _commit_run relies on to drop overlay entries.
        with store._lock:
            write = next(self._writes)
            pending = store._pending
            for key in deletes:
                pending[key] = (write, None)
            for key, raw in sets.items():
                pending[key] = (write, raw)
            with self._qlock:
                self._queue.append((store, sets, deletes, write))
                size = len(self._queue)
                post = not self._drain_posted
                self._drain_posted = True
        if post:
            try:
                self._host.post(self._drain)
            except BaseException:
                with self._qlock:
                    self._drain_posted = False
                    self._queue = [item for item in self._queue if item[3] != write]
                store._forget_pending(write, [*sets, *deletes])
                raise
        if size > MAX_IN_FLIGHT:
            self._call(lambda: None)

    # -- core thread

    def _drain(self) -> None:
        """Core thread: apply every queued write; one transaction per run of one store."""
        with self._qlock:
            items, self._queue = self._queue, []
            self._drain_posted = False
        if not items:
            return
        run: SharedDict | None = None
        merged: dict[str, str | None] = {}
        last = 0
        for store, sets, deletes, write in items:
            if store is not run:
                if run is not None:
                    self._commit_run(run, merged, last)
                run, merged = store, {}
            for key in deletes:
                merged.pop(key, None)
                merged[key] = None
            for key, raw in sets.items():
                merged.pop(key, None)
                merged[key] = raw
            last = write
        assert run is not None
        self._commit_run(run, merged, last)
        self._flush()

    def _commit_run(self, store: SharedDict, merged: dict[str, str | None], last: int) -> None:
        sets = {k: v for k, v in merged.items() if v is not None}
        deletes = [k for k, v in merged.items() if v is None]
        try:
            raw = self._sync.transact(store.name, sets, deletes)
            self._report(store, raw, None)
        except Exception:
            log.exception("store %r: a write failed on the core thread", store.name)
        finally:
            with store._lock:
                pending = store._pending
                for key in merged:
                    entry = pending.get(key)
                    if entry is not None and entry[0] <= last:
                        del pending[key]
                if not pending:
                    store._pending = {}  # a dict keeps its largest table: give it back

    def _transact(self, store: SharedDict, sets: dict[str, str], deletes: list[str]) -> None:
        raw = self._sync.transact(store.name, sets, deletes)
        self._flush()
        self._report(store, raw, None)
        if store._durable:
            self._persist.after_write(store.name)

    def _report(self, store: SharedDict, raw: Mapping[str, str | None], peer: Any | None) -> None:
        if not raw:
            return
        applied = store._apply(raw, trusted=peer is None)
        if applied:
            self._host.dispatch(lambda: store._deliver(StoreChange(store.name, _Changes(applied), peer)))

    def _flush(self) -> None:
        touched: dict[str, None] = {}
        outbox = self._outbox
        for pid, payload in self._sync.take_outbox():
            participant = self._participants.get(pid)
            if participant is not None:
                if isinstance(payload, bytes):  # participants are never sent streams
                    participant._deliver(payload)
            elif pid in outbox:
                outbox.push(pid, payload)
                touched[pid] = None
        for pid in touched:
            self._release(pid)
        for ev in self._sync.take_events():
            self._event(ev)

    def _release(self, pid: str) -> None:
        """Core thread: hand ``pid`` what its outbox lets go now; come back for the rest."""
        peer = self._peers.get(pid)
        if peer is None:
            return
        now = time.monotonic()
        for message in self._outbox.take(pid, now, RELEASE_BYTES):
            try:
                self._host.send_sync(peer, message)
            except Exception as exc:
                log.warning("store message to %r not sent: %s", peer, exc)
        if self._outbox.has_work(pid):
            # Either over its rate, or RELEASE_BYTES went out this turn: let the transport
            # report its buffer (link_writable) before more goes.
            self._schedule(now)

    def _schedule(self, now: float) -> None:
        at = self._outbox.next_deadline(now)
        if at is None:
            return
        at = max(at, now + 0.0005)
        if self._timer_at is not None and self._timer_at <= at:
            return
        self._timer_at = at
        self._host.call_later(at - now, self._on_timer)

    def _on_timer(self) -> None:
        self._timer_at = None
        if self._closed:
            return
        for pid in list(self._peers):
            if self._outbox.has_work(pid):
                self._release(pid)

    def _event(self, ev: StoreUpdated) -> None:
        with self._lock:
            store = self._stores.get(ev.name)
        if store is None:
            return  # kept in the document; the mirror is built when the store is opened
        peer = self._participants.get(ev.via) or self._host.peer_by_id(ev.origin) or self._peers.get(ev.via)
        self._report(store, ev.changes, peer)

    def peer_added(self, peer: Any) -> None:
        """Core thread: a peer connected; sync every store with it."""
        self._guard(self._peer_added, peer)

    def _peer_added(self, peer: Any) -> None:
        self._peers[peer.id] = peer
        rate = getattr(self._host, "peer_rate", None)
        self._outbox.add_peer(peer.id, rate(peer.id) if rate is not None else None, time.monotonic())
        self._sync.peer_added(peer.id)

    def peer_removed(self, peer: Any) -> None:
        """Core thread: a peer left."""
        self._guard(self._peer_removed, peer)

    def _peer_removed(self, peer: Any) -> None:
        self._sync.peer_removed(peer.id)
        self._peers.pop(peer.id, None)
        self._outbox.remove_peer(peer.id)

    def link_writable(self, peer: Any, writable: bool) -> None:
        """Core thread: the peer's link crossed its high (False) or low (True) water mark."""
        if self._closed:
            return
        self._outbox.set_writable(peer.id, writable)
        if writable:
            self._release(peer.id)

    # -- plain y-protocols participants (Seam A)

    def attach_participant(
        self,
        store: str,
        send: Callable[[bytes], None],
        *,
        can_send: Callable[[], bool] | None = None,
        display_name: str = "participant",
    ) -> Participant:
        """Attach a neighbour of ``store`` speaking plain y-protocols sync; any thread.

        Our step 1 goes to ``send`` at once; its step 1 is answered with step 2 (the diff), then
        every update of the store reaches it, and its updates reach every peer.
        """
        check_store_name(store)

        def attach() -> Participant:
            pid = f"~participant-{next(self._participant_ids)}"
            participant = Participant(self, pid, store, send, can_send, display_name)
            self._participants[pid] = participant
            self._open(store)
            self._guard(self._sync.add_participant, pid, store)
            return participant

        return self._call(attach)

    def _post(self, fn: Callable[[], None]) -> None:
        if self._closed:
            return
        try:
            self._host.post(fn)
        except Closed:
            pass

    def _participant_message(self, participant: Participant, message: bytes) -> None:
        if participant.attached:
            self._guard(self._sync.receive_plain, participant.id, message)

    def _detach(self, participant: Participant) -> None:
        if not participant.attached:
            return
        participant.attached = False
        participant._queue.clear()
        self._participants.pop(participant.id, None)
        self._sync.remove_participant(participant.id)

    def message(self, peer: Any, payload: bytes) -> None:
        """Core thread: a store message from ``peer``."""
        self._guard(self._sync.receive, peer.id, payload)

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        if self._closed:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("store: internal error; the stores carry on")
        try:
            self._flush()
        except Exception:
            log.exception("store: failed to hand out messages or changes")

    def flush_step(self) -> bool:
        """Core thread: apply queued writes and hand out what may go now; True when nothing
        is left waiting for a connected peer (end_all calls it until then, bounded)."""
        if self._closed:
            return True
        self._guard(self._drain)
        waiting = False
        for pid in list(self._peers):
            if self._outbox.has_work(pid):
                self._release(pid)
                waiting = waiting or self._outbox.has_work(pid)
        for participant in list(self._participants.values()):
            participant._drain()
            # a page or a server room that holds back (can_send) still gets what returned
            waiting = waiting or (participant.attached and bool(participant._queue))
        with self._qlock:
            waiting = waiting or bool(self._queue)
        return not waiting and not self._sync.holding()

    def close(self) -> None:
        """Core thread: stop; later writes raise Closed, waiters wake with Closed."""
        try:
            self._drain()  # what returned is in the documents (and on disk) before closing
        except Exception:
            log.exception("store: applying the last writes failed")
        self._closed = True
        for store in self.stores():
            store._close()
        self.close_error = self._persist.close()
