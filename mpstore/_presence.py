"""Sans-IO presence: who is here and what they are doing, as y-protocols awareness.

Each entry is ``(client id, clock, JSON state)``, exactly as y-protocols' ``awareness.js`` keeps
it; the latest clock wins and a ``null`` state means "gone". :class:`PresenceCore` holds the
entries of one node and speaks them with its neighbours (mpstore peers) and its participants
(browser tabs, Yjs-server rooms). No sockets, threads or clocks: time comes in as ``now``,
:meth:`PresenceCore.next_deadline` says when to call :meth:`PresenceCore.handle_timer`, and
what to send and what changed come out of :attr:`PresenceCore.outbox` and
:attr:`PresenceCore.events`.

Awareness update (the bytes ``encodeAwarenessUpdate`` writes; lib0 var-uints and strings)::

    count | (client id | clock | JSON text) * count        JSON text "null" = the client left

Between mpstore peers the update travels in a small envelope (message kind PRESENCE)::

    u8 version (1) | u8 kind | body
    kind 0 UPDATE      count | (node id | display name | participant id) * count | awareness update
    kind 1 NEIGHBOURS  count | peer id * count        the sender's connected peers
    kind 2 REQUEST     (empty)                         "send me every state you hold"
    kind 3 WITHDRAW    count | client id * count       "these no longer reach you through me"

Each entry of an UPDATE names its owner: the mpstore node it belongs to and, for a state a
participant introduced at that node, the participant's id ("" for the node's own state). The
awareness update after the owner list is byte for byte what goes to browsers and Yjs servers.

Rules:

* A node's own client id is derived from its peer id (:func:`client_id_for`), so an owner claim
  for a node's own entry is checked by arithmetic; a participant's client ids belong to the first
  participant that introduced them, and a node's own entry takes precedence over that claim.
* Authentication: an entry owned by a node we are connected to is accepted only from that node's
  own session (a neighbour cannot set or clear another neighbour's state, nor ours). Entries of
  nodes further away are relayed and trusted like the store's relayed updates.
* Relay: an accepted entry from neighbour S is forwarded to our other neighbours except S's
  announced neighbours and the owner (they hear it from S or the owner); in a full mesh nothing is
  forwarded. When S's announced neighbours lose Y, Y gets from us what came from S (repair).
  Every participant gets every entry except its own.
* Throttle: each entry is sent at most ``rate`` times per second to anyone; updates in between
  replace the pending one (latest kept), so a flood costs one pending entry, not a queue.
* Unreliable with a reliable settle: updates go out unreliably (where the transport has it) and
  the entry is sent again reliably ``settle`` seconds after its last update; our own entry is
  renewed (clock + 1, reliably) every ``renew`` seconds; a remote entry not renewed within
  ``timeout`` seconds expires here (as in y-protocols, 30 s).
* A neighbour removed: every entry it owned or relayed is dropped at once and withdrawn from
  the neighbours we passed it to (a withdrawal counts only from the neighbour an entry came
  from, and leaves no clock behind), the remaining neighbours are asked to send what they hold,
  and our own entry is renewed, so paths around the lost link take over. Participants (which
  speak plain y-protocols) get a removal at the entry's clock instead.
* Bounds: a state over ``max_state_bytes`` of JSON is refused; at most ``max_clients`` live
  entries, ``max_clients_per_source`` per neighbour or participant, ``max_tombstones`` clocks of
  departed clients. A hostile peer's flood is cut off by the session's message rate and cannot
  grow memory here.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from . import _lib0
from ._errors import MessageTooLarge, ProtocolError
from ._lib0 import write_var_string, write_var_uint
from ._values import exact_json

__all__ = [
    "MAX_STATE_BYTES",
    "Owner",
    "PresenceChanged",
    "PresenceConfig",
    "PresenceCore",
    "client_id_for",
    "decode_awareness_message",
    "decode_awareness_update",
    "encode_awareness_message",
    "encode_awareness_update",
    "parse_state",
]

log = logging.getLogger("mpstore.presence")

#: The largest JSON text of one state, in UTF-8 bytes.
MAX_STATE_BYTES: Final = 8 * 1024
#: lib0 reads var-uints as JavaScript numbers: client ids and clocks stay below 2**53.
_MAX_SAFE: Final = (1 << 53) - 1
_MAX_NAME_BYTES: Final = 256
#: y-protocols message type of an awareness message (after 0 = sync).
MESSAGE_AWARENESS: Final = 1

VERSION: Final = 1
K_UPDATE: Final = 0
K_NEIGHBOURS: Final = 1
K_REQUEST: Final = 2
K_WITHDRAW: Final = 3
_MAX_NEIGHBOURS: Final = 1024


# -- the awareness codec (Seam B) -------------------------------------------------------------------


class _Reader(_lib0.Reader):
    __slots__ = ()
    error = ProtocolError
    prefix = "awareness: "


def _is_null(text: str) -> bool:
    return text.strip(" \t\n\r") == "null"


def encode_awareness_update(entries: Iterable[tuple[int, int, str | None]]) -> bytes:
    """An awareness update of ``(client id, clock, JSON text or None)`` entries (None = gone)."""
    items = list(entries)
    out = bytearray()
    write_var_uint(out, len(items))
    for client, clock, text in items:
        if not (0 <= client <= _MAX_SAFE and 0 <= clock <= _MAX_SAFE):
            raise ValueError(f"client id {client} and clock {clock} must be in 0..2**53-1")
        write_var_uint(out, client)
        write_var_uint(out, clock)
        write_var_string(out, "null" if text is None else text)
    return bytes(out)


def decode_awareness_update(
    data: bytes, max_state_bytes: int = MAX_STATE_BYTES * 8
) -> list[tuple[int, int, str | None]]:
    """The entries of an awareness update; ProtocolError if it is not exactly one well-formed one.

    The JSON text is returned as sent (None for ``null``); :func:`parse_state` checks it.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("an awareness update must be bytes")
    reader = _Reader(bytes(data))
    count = reader.read_safe_uint()
    if count > len(reader.data):  # each entry takes at least three bytes
        raise ProtocolError(f"awareness: {count} entries cannot fit in {len(reader.data)} bytes")
    entries: list[tuple[int, int, str | None]] = []
    for _ in range(count):
        client = reader.read_safe_uint()
        clock = reader.read_safe_uint()
        text = reader.read_var_string(max_state_bytes)
        entries.append((client, clock, None if _is_null(text) else text))
    reader.finish()
    return entries


def encode_awareness_message(update: bytes) -> bytes:
    """The y-websocket message carrying an awareness update: var-uint 1 | var-bytes update."""
    out = bytearray()
    write_var_uint(out, MESSAGE_AWARENESS)
    write_var_uint(out, len(update))
    out += update
    return bytes(out)


def decode_awareness_message(message: bytes) -> bytes:
    """The awareness update inside a y-websocket awareness message; ProtocolError otherwise."""
    reader = _Reader(bytes(message))
    if reader.read_safe_uint() != MESSAGE_AWARENESS:
        raise ProtocolError("not an awareness message")
    update = reader.read_var_bytes(len(reader.data))
    reader.finish()
    return update


def client_id_for(peer_id: str) -> int:
    """The awareness client id of an mpstore node: 32 bits of SHA-256 of its peer id."""
    return int.from_bytes(hashlib.sha256(peer_id.encode("ascii")).digest()[:4], "big")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_state(text: str, max_state_bytes: int = MAX_STATE_BYTES) -> Any:
    """The value of a state's JSON text; ValueError if it is not strict JSON or too large."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_state_bytes:
        raise ValueError(f"state of {size} bytes is over the limit of {max_state_bytes}")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("state is nested too deeply") from None


def encode_state(state: Any, max_state_bytes: int = MAX_STATE_BYTES) -> str | None:
    """The JSON text of a user's state (None stays None).

    InvalidArgument (a TypeError) if it is not JSON or would not come back the same (NaN, a
    non-str dict key); MessageTooLarge (a ValueError) over ``max_state_bytes``.
    """
    if state is None:
        return None
    text = exact_json(state, "presence state")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates: escape them so the text is valid UTF-8
        text = json.dumps(state, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
        size = len(text)
    if size > max_state_bytes:
        raise MessageTooLarge(f"presence state is {size} bytes as JSON; the limit is {max_state_bytes}")
    return text


# -- the core ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PresenceConfig:
    """Timing and bounds of presence."""

    rate: float = 20.0
    """Sends of one entry per second, at most (updates in between: the latest is kept)."""
    timeout: float = 30.0
    """A remote entry not renewed for this long expires (y-protocols' outdatedTimeout)."""
    renew: float = 15.0
    """Our own entry is renewed (clock + 1, sent reliably) this often."""
    settle: float = 1.0
    """An entry sent unreliably is sent again reliably this long after its last update."""
    unreliable: bool = True
    max_state_bytes: int = MAX_STATE_BYTES
    max_clients: int = 1024
    max_clients_per_source: int = 256
    max_tombstones: int = 4096


class Owner(NamedTuple):
    """Whose an entry is: a node (peer id and display name) or a participant attached to it."""

    node: str
    name: str
    participant: str = ""


@dataclass(frozen=True)
class PresenceChanged:
    """A remote entry appeared, changed or went away (``text`` None)."""

    client: int
    owner: Owner
    text: str | None


@dataclass
class _Entry:
    owner: Owner
    clock: int
    text: str | None
    source: str  # the neighbour peer id or "@participant" it came from; "" for our own
    renewed: float
    sent: float = float("-inf")
    dirty: bool = False
    reliable: bool = True
    settle_at: float | None = None


def _participant_key(pid: str) -> str:
    return "@" + pid


class PresenceCore:
    """The presence entries of one node and the messages that keep them in step."""

    def __init__(
        self, local_id: str, local_name: str, now: float, config: PresenceConfig | None = None
    ) -> None:
        self.config = config or PresenceConfig()
        self.local_id = local_id
        self.local_owner = Owner(local_id, local_name)
        self.client_id = client_id_for(local_id)
        self._interval = 1.0 / self.config.rate if self.config.rate > 0 else 0.0
        self._entries: dict[int, _Entry] = {}
        self._tombs: OrderedDict[int, tuple[Owner, int]] = OrderedDict()
        self._local = _Entry(self.local_owner, 0, None, "", now)
        self._peers: dict[str, frozenset[str]] = {}
        self._participants: set[str] = set()
        self._per_source: dict[str, int] = {}
        #: (client, owner, clock, source, withdrawn): removals to announce at the next flush.
        self._pending_removals: list[tuple[int, Owner, int, str, bool]] = []
        #: ``(peer id, payload, reliable)`` for peers, ``("@" + pid, awareness update, True)``
        #: for participants; drained by the caller.
        self.outbox: list[tuple[str, bytes, bool]] = []
        self.events: list[PresenceChanged] = []
        self.stats = {"received": 0, "refused": 0, "forwarded": 0, "sent": 0}

    # -- queries --------------------------------------------------------------------------------
    @property
    def local_text(self) -> str | None:
        """Our own state's JSON text (None when cleared)."""
        return self._local.text

    @property
    def local_clock(self) -> int:
        """Our own entry's clock."""
        return self._local.clock

    def entries(self) -> dict[int, tuple[Owner, int, str]]:
        """Every live remote entry: client id -> (owner, clock, JSON text)."""
        return {c: (e.owner, e.clock, e.text) for c, e in self._entries.items() if e.text is not None}

    def memory(self) -> tuple[int, int, int]:
        """(live entries, tombstones, outbox items): what a flood could try to grow."""
        return len(self._entries), len(self._tombs), len(self.outbox)

    # -- our own state --------------------------------------------------------------------------
    def set_local(self, text: str | None, now: float) -> None:
        """Set our own state (JSON text checked by :func:`encode_state`; None clears it)."""
        local = self._local
        if text is None and local.text is None:
            return
        local.text = text
        local.clock += 1
        local.renewed = now
        self._mark(local, reliable=not self.config.unreliable)
        self._flush(now)

    def leave(self, now: float) -> None:
        """We are going: the removal of our state goes out now, reliably, throttle or not."""
        local = self._local
        if local.text is not None:
            local.text = None
            local.clock += 1
            local.sent = float("-inf")
            self._mark(local, reliable=True)
            self._flush(now)

    # -- neighbours -----------------------------------------------------------------------------
    def peer_added(self, peer_id: str, now: float) -> None:
        """A neighbour connected: announce neighbours, send it everything we hold, renew ours."""
        self._peers[peer_id] = frozenset()
        self._announce_neighbours()
        if self._local.text is not None:
            # A renewal, sent now: whoever dropped our entry at its current clock takes it back.
            self._local.clock += 1
            self._local.renewed = now
            self._local.sent = float("-inf")
            self._mark(self._local, reliable=True)
        self._send_snapshot(peer_id)
        self._flush(now)

    def peer_removed(self, peer_id: str, now: float) -> None:
        """A neighbour left: drop what it owned or relayed, ask the others to refill the rest."""
        if self._peers.pop(peer_id, None) is None:
            return
        self._per_source.pop(peer_id, None)
        for client, entry in list(self._entries.items()):
            if entry.source == peer_id or (entry.owner.node == peer_id and not entry.owner.participant):
                # Perhaps reachable another way (even the peer itself): forget the clock so a
                # refill at the same clock is taken, and withdraw it from those we served.
                self._remove(client, entry, announce=True, forget=True, withdrawn=True)
        local = self._local
        if local.text is not None:
            # Those who heard us through peer_id take us back at a clock nobody has dropped.
            local.clock += 1
            local.renewed = now
            local.sent = float("-inf")
            self._mark(local, reliable=True)
        self._announce_neighbours()
        self._flush(now)  # the removals go out before the requests (one ordered channel each)
        for other in self._peers:
            self.outbox.append((other, bytes((VERSION, K_REQUEST)), True))

    def receive(self, peer_id: str, payload: bytes, now: float, reliable: bool = True) -> None:
        """A PRESENCE message from a neighbour; a malformed one is dropped with a logged reason."""
        if peer_id not in self._peers:
            return
        try:
            self._receive(peer_id, payload, now, reliable)
        except ProtocolError as exc:
            self.stats["refused"] += 1
            log.warning("dropping a presence message from %s: %s", peer_id[:8], exc)
        self._flush(now)

    # -- participants (Seam B) ------------------------------------------------------------------
    def add_participant(self, pid: str, now: float) -> None:
        """A browser tab or Yjs-server room attached: it gets every state we hold."""
        self._participants.add(pid)
        self.query(pid)
        self._flush(now)

    def query(self, pid: str) -> None:
        """Send a participant every live state (y-websocket's "query awareness")."""
        if pid not in self._participants:
            return
        key = _participant_key(pid)
        items = [(c, e) for c, e in self._live_items() if e.source != key]
        if items:
            update = encode_awareness_update((c, e.clock, e.text) for c, e in items)
            self.outbox.append((key, update, True))

    def remove_participant(self, pid: str, now: float) -> None:
        """A participant detached: the states it introduced go away everywhere."""
        if pid not in self._participants:
            return
        self._participants.discard(pid)
        key = _participant_key(pid)
        self._per_source.pop(key, None)
        for client, entry in list(self._entries.items()):
            if entry.source == key:
                # The path is lost, not the state cleared: no tombstone, so the same client (a
                # provider keeps its id and clock) may come back through its next attachment.
                self._remove(client, entry, announce=True, forget=True)
        self._flush(now)

    def receive_participant(self, pid: str, update: bytes, now: float) -> None:
        """An awareness update from a participant; it may only touch client ids it introduced."""
        if pid not in self._participants:
            return
        try:
            entries = decode_awareness_update(update)
        except ProtocolError as exc:
            self.stats["refused"] += 1
            log.warning("dropping an awareness update from participant %s: %s", pid, exc)
            return
        owner = Owner(self.local_id, self.local_owner.name, pid)
        for client, clock, text in entries:
            self._apply(client, clock, text, owner, _participant_key(pid), now, True)
        self._flush(now)

    # -- time -----------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has something to do next (None: nothing pending)."""
        deadlines: list[float] = []
        if self._local.text is not None:
            deadlines.append(self._local.renewed + self.config.renew)
        for entry in self._all_entries():
            if entry.dirty:
                deadlines.append(entry.sent + self._interval)
            elif entry.settle_at is not None:  # a pending send supersedes the settle
                deadlines.append(entry.settle_at)
            if entry is not self._local and entry.text is not None:
                deadlines.append(entry.renewed + self.config.timeout)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Renew our entry, expire silent ones, send what the throttle held back, settle."""
        local = self._local
        if local.text is not None and now >= local.renewed + self.config.renew:
            local.clock += 1
            local.renewed = now
            self._mark(local, reliable=True)
        for client, entry in list(self._entries.items()):
            if entry.text is not None and now >= entry.renewed + self.config.timeout:
                log.debug("presence of client %d expired", client)
                self._remove(client, entry, announce=False)
        self._flush(now)

    # -- internals ------------------------------------------------------------------------------
    def _all_entries(self) -> Iterable[_Entry]:
        yield self._local
        yield from self._entries.values()

    def _live_items(self) -> list[tuple[int, _Entry]]:
        items = [(c, e) for c, e in self._entries.items() if e.text is not None]
        if self._local.text is not None:
            items.append((self.client_id, self._local))
        return items

    def _receive(self, peer_id: str, payload: bytes, now: float, reliable: bool) -> None:
        reader = _Reader(bytes(payload))
        if reader.read_u8() != VERSION:
            return  # a later version of the envelope: ignored, as unknown frame kinds are
        kind = reader.read_u8()
        if kind == K_NEIGHBOURS:
            count = reader.read_safe_uint()
            if count > _MAX_NEIGHBOURS:
                raise ProtocolError(f"{count} neighbours")
            names = frozenset(reader.read_var_string(64) for _ in range(count))
            reader.finish()
            lost = self._peers[peer_id] - names
            self._peers[peer_id] = names
            for other in lost:
                # We left what came from peer_id to it for ``other``; it can no longer deliver.
                if other in self._peers:
                    self._send_snapshot(other, source=peer_id)
            return
        if kind == K_REQUEST:
            reader.finish()
            self._send_snapshot(peer_id)
            return
        if kind == K_WITHDRAW:
            count = reader.read_safe_uint()
            if count > len(reader.data):
                raise ProtocolError(f"{count} withdrawn clients cannot fit")
            clients = [reader.read_safe_uint() for _ in range(count)]
            reader.finish()
            for client in clients:
                entry = self._entries.get(client)
                if entry is not None and entry.source == peer_id:
                    self._remove(client, entry, announce=True, forget=True, withdrawn=True)
            return
        if kind != K_UPDATE:
            return  # a later version's kind: ignored
        count = reader.read_safe_uint()
        if count > len(reader.data):
            raise ProtocolError(f"{count} owners cannot fit")
        owners = [
            Owner(
                reader.read_var_string(64),
                reader.read_var_string(_MAX_NAME_BYTES),
                reader.read_var_string(_MAX_NAME_BYTES),
            )
            for _ in range(count)
        ]
        entries = decode_awareness_update(reader.data[reader.pos :])
        if len(entries) != len(owners):
            raise ProtocolError(f"{len(owners)} owners for {len(entries)} entries")
        self.stats["received"] += 1
        for owner, (client, clock, text) in zip(owners, entries, strict=True):
            if self._authentic(peer_id, owner, client):
                self._apply(client, clock, text, owner, peer_id, now, reliable)
            else:
                self.stats["refused"] += 1

    def _authentic(self, peer_id: str, owner: Owner, client: int) -> bool:
        if owner.node == self.local_id:
            # Only a removal of our own entry is meaningful; _apply answers it with a renewal.
            return client == self.client_id and not owner.participant
        if owner.node in self._peers and owner.node != peer_id:
            return False  # we hear that node directly: only its own session speaks for it
        if not owner.participant:
            return client == client_id_for(owner.node) if _is_hex_id(owner.node) else False
        return _is_hex_id(owner.node)

    def _apply(
        self,
        client: int,
        clock: int,
        text: str | None,
        owner: Owner,
        source: str,
        now: float,
        reliable: bool,
    ) -> None:
        if client == self.client_id:
            local = self._local
            if text is None and clock >= local.clock and local.text is not None:
                # Someone removed us (y-protocols does the same): we are here, say so again.
                local.clock = clock + 1
                local.renewed = now
                self._mark(local, reliable=True)
            return
        if text is not None:
            try:
                parse_state(text, self.config.max_state_bytes)
            except ValueError as exc:
                self.stats["refused"] += 1
                log.warning("refusing presence of client %d from %s: %s", client, source[:8], exc)
                return
        entry = self._entries.get(client)
        tomb = self._tombs.get(client)
        known_owner = entry.owner if entry is not None else (tomb[0] if tomb is not None else None)
        if known_owner is not None and known_owner != owner and not _takes_over(owner, known_owner):
            self.stats["refused"] += 1
            return
        current = entry.clock if entry is not None else (tomb[1] if tomb is not None else -1)
        if entry is not None and entry.owner != owner:
            current = -1  # a node's own entry replaces a participant's claim to its client id
        if clock < current or (clock == current and text is not None):
            return
        if clock == current and (entry is None or source not in (entry.source, owner.node)):
            # A removal at the same clock ("gone as far as I can tell") counts only from the
            # path we heard the entry on; another path may still reach its owner.
            return
        if text is None:
            if entry is not None:
                # Same clock: the path was lost, not the state cleared; a refill may follow.
                forget = clock == entry.clock
                entry.clock = clock
                self._remove(client, entry, announce=True, forget=forget)
            else:
                self._bury(client, owner, clock)
            return
        if entry is None:
            if len(self._entries) >= self.config.max_clients:
                self.stats["refused"] += 1
                return
            if self._per_source.get(source, 0) >= self.config.max_clients_per_source:
                self.stats["refused"] += 1
                return
            self._tombs.pop(client, None)
            entry = _Entry(owner, clock, None, source, now)
            self._entries[client] = entry
            self._per_source[source] = self._per_source.get(source, 0) + 1
        elif entry.source != source:
            self._per_source[entry.source] = self._per_source.get(entry.source, 1) - 1
            self._per_source[source] = self._per_source.get(source, 0) + 1
            entry.source = source
        changed = entry.text != text
        if entry.owner != owner:
            if entry.text is not None:  # the participant's claim ends: its view of it goes
                self.events.append(PresenceChanged(client, entry.owner, None))
            changed = True
        entry.owner = owner
        entry.clock = clock
        entry.renewed = now
        entry.text = text
        self._mark(entry, reliable=reliable)
        if changed:
            self.events.append(PresenceChanged(client, owner, text))

    def _remove(
        self, client: int, entry: _Entry, *, announce: bool, forget: bool = False, withdrawn: bool = False
    ) -> None:
        del self._entries[client]
        count = self._per_source.get(entry.source, 0) - 1
        if count > 0:
            self._per_source[entry.source] = count
        else:
            self._per_source.pop(entry.source, None)
        was = entry.text
        entry.text = None
        if was is not None:
            self.events.append(PresenceChanged(client, entry.owner, None))
        if announce and was is not None:
            self._pending_removals.append((client, entry.owner, entry.clock, entry.source, withdrawn))
        if not forget:
            self._bury(client, entry.owner, entry.clock)

    def _bury(self, client: int, owner: Owner, clock: int) -> None:
        self._tombs[client] = (owner, clock)
        self._tombs.move_to_end(client)
        while len(self._tombs) > self.config.max_tombstones:
            self._tombs.popitem(last=False)

    def _mark(self, entry: _Entry, reliable: bool) -> None:
        if not entry.dirty:
            entry.reliable = reliable
        else:
            entry.reliable = entry.reliable and reliable
        entry.dirty = True

    def _send_snapshot(self, peer_id: str, source: str | None = None) -> None:
        items = [
            (c, e)
            for c, e in self._live_items()
            if e.owner.node != peer_id and e.source != peer_id and (source is None or e.source == source)
        ]
        if items:
            self.outbox.append((peer_id, self._update_payload(items), True))

    def _announce_neighbours(self) -> None:
        out = bytearray((VERSION, K_NEIGHBOURS))
        write_var_uint(out, len(self._peers))
        for peer in self._peers:
            write_var_string(out, peer)
        payload = bytes(out)
        for peer in self._peers:
            self.outbox.append((peer, payload, True))

    def _update_payload(self, items: list[tuple[int, _Entry]]) -> bytes:
        out = bytearray((VERSION, K_UPDATE))
        write_var_uint(out, len(items))
        for _, entry in items:
            write_var_string(out, entry.owner.node)
            write_var_string(out, entry.owner.name)
            write_var_string(out, entry.owner.participant)
        out += encode_awareness_update((c, e.clock, e.text) for c, e in items)
        return bytes(out)

    def _targets(self, entry: _Entry, everyone: bool = False) -> list[str]:
        """Neighbours and participants an entry is sent to (``everyone``: but its source)."""
        source = entry.source
        # Removals go to every other neighbour: whom we served depended on neighbour lists that
        # may have changed since, and a removal counts only where we were the source anyway.
        skip = frozenset() if everyone else self._peers.get(source, frozenset())
        peers = [p for p in self._peers if p != source and p != entry.owner.node and (p not in skip)]
        parts = [_participant_key(p) for p in self._participants if _participant_key(p) != source]
        return peers + parts

    def _flush(self, now: float) -> None:
        batches: dict[str, list[tuple[int, _Entry]]] = {}
        unreliable: dict[str, bool] = {}
        withdrawals: dict[str, list[int]] = {}
        removals = self._pending_removals
        self._pending_removals = []
        for client, owner, clock, source, withdrawn in removals:
            gone = _Entry(owner, clock, None, source, now)
            for target in self._targets(gone, everyone=True):
                if withdrawn and not target.startswith("@"):
                    # Not "cleared at this clock" (the receiver may never have seen this clock
                    # and would keep it as a tombstone): "no longer through me".
                    withdrawals.setdefault(target, []).append(client)
                    continue
                batches.setdefault(target, []).append((client, gone))
                unreliable[target] = False
        for target, clients in withdrawals.items():
            out = bytearray((VERSION, K_WITHDRAW))
            write_var_uint(out, len(clients))
            for client in clients:
                write_var_uint(out, client)
            self.outbox.append((target, bytes(out), True))
        for client, entry in [(self.client_id, self._local), *self._entries.items()]:
            if entry.dirty and now >= entry.sent + self._interval:
                entry.dirty = False
                entry.sent = now
                fast = not entry.reliable and self.config.unreliable
                entry.settle_at = now + self.config.settle if fast else None
                for target in self._targets(entry):
                    batches.setdefault(target, []).append((client, entry))
                    unreliable[target] = unreliable.get(target, True) and fast
            elif entry.settle_at is not None and now >= entry.settle_at and not entry.dirty:
                entry.settle_at = None
                for target in self._targets(entry):
                    if not target.startswith("@"):
                        batches.setdefault(target, []).append((client, entry))
                        unreliable[target] = False
        for target, items in batches.items():
            if target.startswith("@"):
                update = encode_awareness_update((c, e.clock, e.text) for c, e in items)
                self.outbox.append((target, update, True))
            else:
                reliable = not unreliable.get(target, False)
                self.outbox.append((target, self._update_payload(items), reliable))
                if any(e.source not in ("", target) for _, e in items):
                    self.stats["forwarded"] += 1
            self.stats["sent"] += 1


def _takes_over(new: Owner, old: Owner) -> bool:
    """A node's own claim to its derived client id beats a participant's claim to it."""
    return not new.participant and bool(old.participant)


def _is_hex_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)
