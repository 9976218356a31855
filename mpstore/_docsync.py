"""Sans-IO replication of every store of one node with its neighbours (no threads, no clocks).

:class:`DocSync` holds one CRDT document per store name (opened locally or not: data that
arrives for a store nobody opened here yet is kept) and speaks y-protocols sync messages with
each connected peer, wrapped in a small envelope. Calls put what to send in :attr:`outbox`
(``(peer_id, payload)``) and what changed in :attr:`events`; the caller drains both.

Store message (all integers lib0 var-uints, strings var-uint length + UTF-8)::

    u8 version (1) | u8 kind | body
    kind 0 SYNC       store name | y-protocols sync message (0, step, var-bytes)
    kind 1 UPDATE     origin peer id | seq | store name | y-protocols sync message (0, 2, update)
    kind 2 NEIGHBOURS count | peer id * count         the sender's connected peers
    kind 3 SYNC_BOTH  store name | y-protocols step 1  "answer with step 2, and send your step 1"
    kind 4 BUNDLE     count | var-bytes message * count   several messages of kinds 0-3, in order
    kind 5 PART       message id | index | count | var-bytes   one slice of a message too big to
                                                      send whole (a large snapshot)

Rules:

* Peer added: both sides announce NEIGHBOURS to all their peers, then send step 1 for every
  store they hold. Step 1 is answered with step 2 (exactly what the asker lacks); a step 1 for a
  store we have not sent our step 1 for to that peer (we did not hold it when the peer came) is
  also answered with our own step 1.
* A local transaction is one UPDATE with a fresh ``(origin, seq)`` id to every neighbour. To a
  new peer, updates for a store wait until our step 2 for that store has gone out.
* Relay: an UPDATE from neighbour S whose id we have not seen is applied and forwarded to our
  neighbours except S, the origin and S's announced neighbours (they got it from S or before S).
  A step 2 that taught us something (state vector or visible keys changed) is forwarded the same
  way as a new UPDATE of ours. In a full mesh nothing is forwarded: one edit costs N-1 frames.
* Repair: the relay rule trusts that S reached its own neighbours. When S reports losing
  neighbour Y (NEIGHBOURS without Y, or S itself removed), each of our neighbours in that set may
  have missed what S was to deliver, so we send it SYNC_BOTH for every store we hold (it answers
  step 2 and its step 1, we answer step 2); one at a time per peer and store. Cost per affected
  pair and store: two state vectors and two diffs (a diff always carries the whole delete set).
* A malformed message or a CRDT update the engine rejects is dropped with a logged reason; the
  documents stay as they were and the peer stays connected.

Participants (a browser tab, a Yjs-server room) speak plain y-protocols sync messages for one
store, without the envelope above. To the rules above a participant is one more neighbour of
that store: it gets our step 1 when added and step 2 for its step 1 (a state-vector diff, so a
reconnect costs a diff, not a snapshot); updates for it wait until that step 2 has gone out;
what it teaches us is applied and passed on to every peer as a new UPDATE of ours and to the
other participants of the store; every update we apply or make reaches it. Outbox entries
addressed to a participant id carry one plain y-protocols message each.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from . import _lib0, _syncproto
from ._errors import ConfigurationError, CorruptUpdate, EngineUnavailable, InvalidArgument
from ._lib0 import write_var_bytes, write_var_string, write_var_uint
from .engines.base import EngineDoc

__all__ = [
    "DocSync",
    "MalformedMessage",
    "Reader",
    "StoreUpdated",
    "write_varbytes",
    "write_varstring",
    "write_varuint",
]

log = logging.getLogger("mpstore.store")

VERSION: Final = 1
K_SYNC: Final = 0
K_UPDATE: Final = 1
K_NEIGHBOURS: Final = 2
K_SYNC_BOTH: Final = 3
K_BUNDLE: Final = 4
K_PART: Final = 5
MAX_BUNDLE: Final = 1 << 20
#: Messages above this many bytes are sent as PART slices of this size.
PART_SIZE: Final = 1 << 20

#: y-protocols: message type "sync" and its three sub-types.
Y_MESSAGE_SYNC: Final = _syncproto.MESSAGE_SYNC
Y_STEP1: Final = _syncproto.SYNC_STEP1
Y_STEP2: Final = _syncproto.SYNC_STEP2
Y_UPDATE: Final = _syncproto.SYNC_UPDATE

MAX_STORE_NAME_BYTES: Final = 255
MAX_PEER_ID_BYTES: Final = 128
MAX_NEIGHBOURS: Final = 4096
SEEN_IDS: Final = 65536
MAX_HELD: Final = 4096
#: Snapshots (step 2 answers) bigger than this go as a stream of parts of about this size.
STREAM_PART: Final = 512 * 1024


class MalformedMessage(ValueError):
    """A store message that does not parse."""


# --- lib0 encoding (mpstore/_lib0.py) --------------------------------------------------------

write_varuint = write_var_uint
write_varbytes = write_var_bytes
write_varstring = write_var_string


class Reader(_lib0.Reader):
    """Reads lib0 values from a store message; raises MalformedMessage past the end or on nonsense."""

    __slots__ = ()
    error = MalformedMessage


_Y_ENCODERS: Final = {
    Y_STEP1: _syncproto.encode_sync_step1,
    Y_STEP2: _syncproto.encode_sync_step2,
    Y_UPDATE: _syncproto.encode_update,
}


def _y_sync(step: int, data: bytes) -> bytes:
    return _Y_ENCODERS[step](data)


def encode_sync(kind: int, store: str, step: int, data: bytes) -> bytes:
    """A SYNC or SYNC_BOTH message."""
    out = bytearray((VERSION, kind))
    write_varstring(out, store)
    out += _y_sync(step, data)
    return bytes(out)


def encode_update(origin: str, seq: int, store: str, update: bytes) -> bytes:
    """An UPDATE message."""
    out = bytearray((VERSION, K_UPDATE))
    write_varstring(out, origin)
    write_varuint(out, seq)
    write_varstring(out, store)
    out += _y_sync(Y_UPDATE, update)
    return bytes(out)


def encode_neighbours(peer_ids: Iterable[str]) -> bytes:
    """A NEIGHBOURS message."""
    ids = list(peer_ids)
    out = bytearray((VERSION, K_NEIGHBOURS))
    write_varuint(out, len(ids))
    for pid in ids:
        write_varstring(out, pid)
    return bytes(out)


def encode_bundle(payloads: list[bytes]) -> bytes:
    """A BUNDLE of several store messages, delivered in order."""
    out = bytearray((VERSION, K_BUNDLE))
    write_varuint(out, len(payloads))
    for payload in payloads:
        write_varbytes(out, payload)
    return bytes(out)


def _read_y_sync(r: Reader) -> tuple[int, bytes]:
    """The rest of the message: exactly one y-protocols sync message."""
    try:
        step, data = _syncproto.decode_message(r.data[r.pos :])
    except CorruptUpdate as exc:
        raise MalformedMessage(str(exc)) from None
    r.pos = len(r.data)
    return step, data


def check_store_name(name: object) -> str:
    """Return ``name`` if it is a valid store name, else raise TypeError/ValueError."""
    if type(name) is not str:
        raise InvalidArgument(f"store names must be str, not {type(name).__name__}")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigurationError("store name holds a lone surrogate") from None
    if not 0 < size <= MAX_STORE_NAME_BYTES:
        raise ConfigurationError(f"store names must be 1 to {MAX_STORE_NAME_BYTES} bytes of UTF-8")
    return name


# --- the replication state machine ------------------------------------------------------------


@dataclass(frozen=True)
class StoreUpdated:
    """Keys of store ``name`` whose value changed: new raw value, or None when now absent.

    ``origin`` is the peer id the update is credited to (its author, or the peer that passed on
    a sync diff); ``via`` the neighbour it came from.
    """

    name: str
    changes: Mapping[str, str | None]
    origin: str
    via: str


@dataclass
class _Stats:
    """Counters for tests and benchmarks."""

    sent: int = 0
    rejected: int = 0
    forwarded: int = 0
    resyncs: int = 0
    missing_asks: int = 0
    streams: int = 0
    by_kind: dict[int, int] = field(default_factory=dict)


class DocSync:
    """All stores of one node and their replication with its neighbours (sans-IO)."""

    def __init__(
        self,
        local_id: str,
        new_doc: Callable[[], EngineDoc],
        *,
        max_stores: int = 1024,
        max_message: int = 256 << 20,
        open_doc: Callable[[str], EngineDoc] | None = None,
        stream_snapshots: bool = False,
    ) -> None:
        self.local_id = local_id
        self._new_doc = new_doc
        # True: a big step 2 goes into the outbox as an iterator of parts (the caller's outbox
        # must take iterators, as mpstore/_outbox.py does); False: always whole bytes.
        self.stream_snapshots = stream_snapshots
        # Given, it makes every store's document instead (saved stores load from disk).
        self._open_doc = open_doc
        self.max_stores = max_stores
        self.max_message = max_message
        # Reassembly of PART slices per peer: (message id, slices so far, expected count).
        self._parts: dict[str, tuple[int, list[bytes], int]] = {}
        self.docs: dict[str, EngineDoc] = {}
        self.neighbours: dict[str, None] = {}  # insertion-ordered set
        self.their_neighbours: dict[str, frozenset[str]] = {}
        # Stores we sent step 1 for to each peer since it was added.
        self._asked: dict[str, set[str]] = {}
        # SYNC_BOTH sent and not yet answered by the peer's step 1: never more than one at once.
        self._resyncing: set[tuple[str, str]] = set()
        # Updates for a store held back from a new peer until our step 2 for it has gone out,
        # so that it never receives structs before the history they build on.
        self._held: dict[str, dict[str, list[bytes]]] = {}
        # Stores whose document waits for missing updates: the neighbours asked (a step 1) since
        # it began waiting, and those of them that have not answered yet.
        self._missing_asked: dict[str, set[str]] = {}
        self._missing_open: dict[str, set[str]] = {}
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._seq = 0
        # Plain y-protocols participants: id -> store, and the updates held for each until our
        # step 2 answering its step 1 has gone out (None once released).
        self.participants: dict[str, str] = {}
        self._p_held: dict[str, list[bytes] | None] = {}
        # A payload is bytes, or an iterator of payloads made as the link drains (a snapshot
        # streamed in parts: see _send_diff).
        self.outbox: list[tuple[str, bytes | Iterator[bytes]]] = []
        # (peer, store) whose snapshot is arriving in parts: no missing-dependency asks meanwhile.
        self._streaming: set[tuple[str, str]] = set()
        self.events: list[StoreUpdated] = []
        self.stats = _Stats()

    # -- draining

    def take_outbox(self) -> list[tuple[str, bytes | Iterator[bytes]]]:
        """Return and clear what to send: ``(peer_id, payload)`` in order."""
        out, self.outbox = self.outbox, []
        return out

    def take_events(self) -> list[StoreUpdated]:
        """Return and clear the changes to report, in order."""
        ev, self.events = self.events, []
        return ev

    def _send(self, peer: str, payload: bytes) -> None:
        kind = payload[1]
        self.stats.sent += 1
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        # Whole messages: the outbox (mpstore/_outbox.py) bundles small ones and slices big ones.
        self.outbox.append((peer, payload))

    def _send_diff(self, peer: str, name: str, d: EngineDoc, state_vector: bytes) -> None:
        """Answer a step 1: one step 2, or for a big diff a stream of parts made lazily as the
        link drains, sent as y-protocols updates (SYNC, step 2 = update) with the last one a step
        2, so that neither side blocks long on a large snapshot."""
        if not self.stream_snapshots:
            self._send(peer, encode_sync(K_SYNC, name, Y_STEP2, d.encode_diff(state_vector)))
            return
        parts = iter(d.encode_diff_parts(state_vector, STREAM_PART))
        first = next(parts)
        second = next(parts, None)
        if second is None:
            self._send(peer, encode_sync(K_SYNC, name, Y_STEP2, first))
            return
        self.stats.sent += 1
        self.stats.streams += 1

        def stream() -> Iterator[bytes]:
            current = first
            for nxt in itertools.chain((second,), parts):
                yield encode_sync(K_SYNC, name, Y_UPDATE, current)
                current = nxt
            yield encode_sync(K_SYNC, name, Y_STEP2, current)

        self.outbox.append((peer, stream()))

    def holding(self) -> bool:
        """True while updates wait for a peer's first sync (see ``_held``)."""
        return any(waiting for held in self._held.values() for waiting in held.values())

    # -- documents

    def doc(self, name: str) -> EngineDoc:
        """The document of store ``name``, created if needed (EngineUnavailable without engine)."""
        d = self.docs.get(name)
        if d is None:
            d = self._new_doc() if self._open_doc is None else self._open_doc(name)
            self.docs[name] = d
        return d

    def _doc_for_peer(self, name: str, peer: str) -> tuple[EngineDoc | None, bool]:
        d = self.docs.get(name)
        if d is not None:
            return d, False
        try:
            check_store_name(name)
        except (TypeError, ValueError) as exc:
            log.warning("store message from %s dropped: %s", peer, exc)
            return None, False
        if len(self.docs) >= self.max_stores:
            log.warning(
                "store %r from %s dropped: already %d stores (max_stores)",
                name,
                peer,
                len(self.docs),
            )
            return None, False
        try:
            return self.doc(name), True
        except EngineUnavailable as exc:
            log.warning("store %r from %s dropped: %s", name, peer, exc)
            return None, False

    def _next_id(self) -> int:
        self._seq += 1
        return self._seq

    def _mark_seen(self, key: tuple[str, int]) -> bool:
        """Record an update id; False if it was already seen."""
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return True

    # -- local edits

    def transact(self, name: str, sets: Mapping[str, str], deletes: Iterable[str]) -> dict[str, str | None]:
        """Apply a local transaction, send its one update to every neighbour, return new values."""
        d = self.doc(name)
        deletes = list(deletes)
        update = d.transact(sets, deletes)
        if not update:
            return {}
        seq = self._next_id()
        self._mark_seen((self.local_id, seq))
        payload = encode_update(self.local_id, seq, name, update)
        for peer in self.neighbours:
            self._send_update(peer, name, payload)
        self._to_participants(name, update, None)
        out: dict[str, str | None] = dict.fromkeys(deletes)
        out.update(sets)
        return out

    # -- membership

    def _announce(self) -> None:
        payload = encode_neighbours(self.neighbours)
        for peer in self.neighbours:
            self._send(peer, payload)

    def peer_added(self, peer: str) -> None:
        """A peer connected: announce neighbours, then send it step 1 for every store held."""
        if peer in self.neighbours or peer == self.local_id:
            return
        self.neighbours[peer] = None
        self._asked[peer] = set(self.docs)
        self._held[peer] = {name: [] for name in self.docs}
        self._announce()
        for name, d in self.docs.items():
            self._send(peer, encode_sync(K_SYNC, name, Y_STEP1, d.state_vector()))

    def peer_removed(self, peer: str) -> None:
        """A peer left: announce it, and repair what it was trusted to relay."""
        if peer not in self.neighbours:
            return
        del self.neighbours[peer]
        self._asked.pop(peer, None)
        self._resyncing = {k for k in self._resyncing if k[0] != peer}
        self._held.pop(peer, None)
        self._parts.pop(peer, None)
        for waiting in self._missing_open.values():
            waiting.discard(peer)
        self._streaming = {k for k in self._streaming if k[0] != peer}
        lost = self.their_neighbours.pop(peer, frozenset())
        self._announce()
        self._resync(lost)

    def _resync(self, peers: Iterable[str]) -> None:
        for peer in peers:
            if peer in self.neighbours:
                self.stats.resyncs += 1
                for name, d in self.docs.items():
                    if (peer, name) not in self._resyncing:
                        self._resyncing.add((peer, name))
                        self._send(peer, encode_sync(K_SYNC_BOTH, name, Y_STEP1, d.state_vector()))

    # -- incoming

    def receive(self, peer: str, payload: bytes) -> None:
        """Handle one store message from neighbour ``peer``; never raises on bad input."""
        if payload[:2] == bytes((VERSION, K_PART)):
            whole = self._reassemble(peer, payload)
            if whole is None or whole[:2] == bytes((VERSION, K_PART)):
                return
            payload = whole
        if payload[:2] == bytes((VERSION, K_BUNDLE)):
            try:
                r = Reader(payload)
                r.pos = 2
                count = r.read_var_uint()
                if count > MAX_BUNDLE:
                    raise MalformedMessage(f"bundle of {count} messages")
                parts = [r.read_var_bytes() for _ in range(count)]
                r.finish()
            except MalformedMessage as exc:
                self.stats.rejected += 1
                log.warning("malformed store bundle from %s dropped: %s", peer, exc)
                return
            for part in parts:
                if part[:2] == bytes((VERSION, K_BUNDLE)):
                    log.warning("nested store bundle from %s dropped", peer)
                    continue
                self.receive(peer, part)
            return
        try:
            self._receive(peer, payload)
        except MalformedMessage as exc:
            self.stats.rejected += 1
            log.warning("malformed store message from %s dropped: %s", peer, exc)
        except CorruptUpdate as exc:
            self.stats.rejected += 1
            log.warning("store update from %s rejected: %s", peer, exc)

    def _reassemble(self, peer: str, payload: bytes) -> bytes | None:
        try:
            r = Reader(payload)
            r.pos = 2
            msg_id, index, count = r.read_var_uint(), r.read_var_uint(), r.read_var_uint()
            data = r.read_var_bytes(PART_SIZE)
            r.finish()
            if not 0 < count <= -(-self.max_message // PART_SIZE):
                raise MalformedMessage(f"a message of {count} parts is over the size limit")
        except MalformedMessage as exc:
            self.stats.rejected += 1
            self._parts.pop(peer, None)
            log.warning("malformed store message part from %s dropped: %s", peer, exc)
            return None
        current = self._parts.get(peer)
        if index == 0:
            current = (msg_id, [], count)
        if current is None or current[0] != msg_id or current[2] != count or index != len(current[1]):
            # Parts of one message arrive in order on a reliable link; anything else is bad.
            self._parts.pop(peer, None)
            log.warning("store message part from %s out of sequence: dropped", peer)
            return None
        current[1].append(data)
        if len(current[1]) < count:
            self._parts[peer] = current
            return None
        self._parts.pop(peer, None)
        return b"".join(current[1])

    def _receive(self, peer: str, payload: bytes) -> None:
        if peer not in self.neighbours:
            log.debug("store message from %s, not a neighbour, ignored", peer)
            return
        r = Reader(payload)
        version = r.read_u8()
        kind = r.read_u8()
        if version != VERSION:
            log.info("store message of version %d from %s ignored", version, peer)
            return
        if kind in (K_SYNC, K_SYNC_BOTH):
            name = r.read_var_string(MAX_STORE_NAME_BYTES)
            step, data = _read_y_sync(r)
            self._on_sync(peer, kind, name, step, data)
        elif kind == K_UPDATE:
            origin = r.read_var_string(MAX_PEER_ID_BYTES)
            seq = r.read_var_uint()
            name = r.read_var_string(MAX_STORE_NAME_BYTES)
            step, data = _read_y_sync(r)
            if step != Y_UPDATE:
                raise MalformedMessage("UPDATE must carry a y-protocols update")
            self._on_update(peer, origin, seq, name, data, payload)
        elif kind == K_NEIGHBOURS:
            count = r.read_var_uint()
            if count > MAX_NEIGHBOURS:
                raise MalformedMessage(f"{count} neighbours is over the limit")
            ids = frozenset(r.read_var_string(MAX_PEER_ID_BYTES) for _ in range(count))
            r.finish()
            old = self.their_neighbours.get(peer, frozenset())
            self.their_neighbours[peer] = ids
            self._resync(old - ids)
        else:
            log.debug("store message of unknown kind %d from %s ignored", kind, peer)

    def _on_sync(self, peer: str, kind: int, name: str, step: int, data: bytes) -> None:
        if kind == K_SYNC_BOTH and step != Y_STEP1:
            raise MalformedMessage("SYNC_BOTH must carry step 1")
        d, _ = self._doc_for_peer(name, peer)
        if d is None:
            return
        if step == Y_STEP1:
            self._resyncing.discard((peer, name))
            self._send_diff(peer, name, d, data)
            for payload in self._held.get(peer, {}).pop(name, ()):
                self._send(peer, payload)  # already in the diff, but harmless and in order
            asked = self._asked.setdefault(peer, set())
            if name not in asked or kind == K_SYNC_BOTH:
                # We did not hold this store when the peer came: ask for its side too.
                asked.add(name)
                self._send(peer, encode_sync(K_SYNC, name, Y_STEP1, d.state_vector()))
            return
        before = d.state_vector()
        if step == Y_UPDATE:
            self._streaming.add((peer, name))  # a part of a streamed snapshot; more follows
        else:
            self._streaming.discard((peer, name))
        try:
            changes = d.apply_update(data)
        finally:
            if step == Y_STEP2:
                self._answered(peer, name, d)
        if changes:
            self.events.append(StoreUpdated(name, changes, peer, peer))
        if changes or d.state_vector() != before or d.deleted_last():
            # It taught us something: pass it on as our own update, except where it came from.
            seq = self._next_id()
            self._mark_seen((self.local_id, seq))
            self._forward(peer, name, encode_update(self.local_id, seq, name, data), origin=None)
            self._to_participants(name, data, None)

    def _on_update(self, peer: str, origin: str, seq: int, name: str, data: bytes, payload: bytes) -> None:
        if origin == self.local_id or not self._mark_seen((origin, seq)):
            return
        d, _ = self._doc_for_peer(name, peer)
        if d is None:
            return
        # A rejected update raises out of here and is not relayed; its id is forgotten, so a
        # corrupt copy cannot make us drop the genuine update when it comes by another path.
        try:
            changes = d.apply_update(data)
        except BaseException:
            self._seen.pop((origin, seq), None)
            raise
        self._check_missing(peer, name, d)
        if changes:
            self.events.append(StoreUpdated(name, changes, origin, peer))
        self._forward(peer, name, payload, origin=origin)
        self._to_participants(name, data, None)

    # -- missing dependencies: ask at once instead of waiting for a repair

    def _check_missing(self, sender: str, name: str, d: EngineDoc) -> None:
        """After an update from ``sender``: if the document now waits for something, ask the
        sender for it (a step 1: it answers with exactly what we lack)."""
        if not d.waiting():
            self._missing_asked.pop(name, None)
            self._missing_open.pop(name, None)
            return
        if self._missing_open.get(name) or any(n == name for _, n in self._streaming):
            return  # an ask is out, or a snapshot is arriving: what they bring comes first
        asked = self._missing_asked.setdefault(name, set())
        if sender not in asked:
            self._ask(sender, name, d)

    def _answered(self, peer: str, name: str, d: EngineDoc) -> None:
        """A step 2 from ``peer`` arrived: if still waiting, ask the neighbours not asked yet."""
        self._missing_open.get(name, set()).discard(peer)
        if not d.waiting():
            self._missing_asked.pop(name, None)
            self._missing_open.pop(name, None)
            return
        if self._missing_open.get(name):
            return
        asked = self._missing_asked.setdefault(name, set())
        for other in [*self.neighbours, *(p for p, s in self.participants.items() if s == name)]:
            if other not in asked:
                self._ask(other, name, d)

    def _ask(self, peer: str, name: str, d: EngineDoc) -> None:
        self._missing_asked.setdefault(name, set()).add(peer)
        self._missing_open.setdefault(name, set()).add(peer)
        self.stats.missing_asks += 1
        if peer in self.participants:
            self.outbox.append((peer, _syncproto.encode_sync_step1(d.state_vector())))
        elif peer in self.neighbours:
            self._send(peer, encode_sync(K_SYNC, name, Y_STEP1, d.state_vector()))

    def _send_update(self, peer: str, name: str, payload: bytes) -> None:
        held = self._held.get(peer)
        if held is not None and name in held:
            waiting = held[name]
            waiting.append(payload)
            if len(waiting) > MAX_HELD:
                # The step 2 still to come carries everything we integrated; keep memory bounded.
                waiting.clear()
        else:
            self._send(peer, payload)

    def _forward(self, sender: str, name: str, payload: bytes, origin: str | None) -> None:
        skip = self.their_neighbours.get(sender, frozenset())
        for n in self.neighbours:
            if n != sender and n != origin and n not in skip:
                self.stats.forwarded += 1
                self._send_update(n, name, payload)

    # -- plain y-protocols participants (Seam A)

    def add_participant(self, pid: str, store: str) -> None:
        """A participant for ``store`` joined: queue our step 1 to it (see the module rules)."""
        check_store_name(store)
        if pid in self.participants or pid in self.neighbours or pid == self.local_id:
            raise ValueError(f"participant id {pid!r} is already in use")
        d = self.doc(store)
        self.participants[pid] = store
        self._p_held[pid] = []
        self.outbox.append((pid, _syncproto.encode_sync_step1(d.state_vector())))

    def remove_participant(self, pid: str) -> None:
        """A participant left; what was held for it is dropped (it resyncs when it returns)."""
        self.participants.pop(pid, None)
        self._p_held.pop(pid, None)
        for waiting in self._missing_open.values():
            waiting.discard(pid)

    def receive_plain(self, pid: str, message: bytes) -> None:
        """Handle one y-protocols sync message (type 0) from participant ``pid``; never raises
        on bad input (it is dropped with a logged reason)."""
        name = self.participants.get(pid)
        if name is None:
            log.debug("sync message from %s, not a participant, ignored", pid)
            return
        try:
            step, data = _syncproto.decode_message(message)
            d = self.docs[name]
            if step == Y_STEP1:
                diff = d.encode_diff(data)
                self.outbox.append((pid, _syncproto.encode_sync_step2(diff)))
                held = self._p_held.get(pid)
                self._p_held[pid] = None
                for waiting in held or ():
                    self.outbox.append((pid, waiting))
                return
            before = d.state_vector()
            try:
                changes = d.apply_update(data)
            finally:
                if step == Y_STEP2:
                    self._answered(pid, name, d)
                else:
                    self._check_missing(pid, name, d)
        except CorruptUpdate as exc:
            self.stats.rejected += 1
            log.warning("sync message from participant %s rejected: %s", pid, exc)
            return
        if changes:
            self.events.append(StoreUpdated(name, changes, pid, pid))
        if changes or d.state_vector() != before or d.deleted_last():
            seq = self._next_id()
            self._mark_seen((self.local_id, seq))
            self._forward(pid, name, encode_update(self.local_id, seq, name, data), origin=None)
            self._to_participants(name, data, pid)

    def _to_participants(self, name: str, update: bytes, sender: str | None) -> None:
        message = b""
        for pid, store in self.participants.items():
            if store != name or pid == sender:
                continue
            if not message:
                message = _syncproto.encode_update(update)
            held = self._p_held.get(pid)
            if held is None:
                self.outbox.append((pid, message))
            else:
                held.append(message)
                if len(held) > MAX_HELD:
                    held.clear()  # the step 2 still to come carries all of it
