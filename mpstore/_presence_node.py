"""Presence on a node: the core thread's glue around :class:`PresenceCore`, and ``mc.presence``.

:class:`PresenceNode` lives on the core thread: it feeds the sans-IO core with peers, messages
and time, sends what it queues (PRESENCE messages to peers, awareness updates to participants),
keeps one timer at the core's next deadline, and hands changes to the dispatcher thread, where
``presence_changed`` and the observers run in order with every other callback.

:class:`Presence` is the user's side (any thread): our own state, everyone else's, observers.

Participants (browser tabs, Yjs-server rooms; Seam B), on the core thread::

    part = node.presence.attach_participant(pid, send)   # send(awareness_update: bytes)
    part.receive(awareness_update)    # from it: it may only set/clear client ids it introduced
    part.query()                      # y-websocket's "query awareness": send it every state
    part.detach()                     # its states go away everywhere

``send`` and ``receive`` carry a bare awareness update (``encodeAwarenessUpdate``'s bytes);
wrap it with :func:`mpstore._presence.encode_awareness_message` for y-websocket.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import Closed, InvalidDisplayName
from ._peer import PeerID, make_peer, validate_display_name
from ._presence import Owner, PresenceChanged, PresenceConfig, PresenceCore, encode_state
from ._store import Subscription
from ._wire import Kind

if TYPE_CHECKING:
    from ._core import Node

__all__ = ["Presence", "PresenceNode", "PresenceParticipant"]

log = logging.getLogger("mpstore.presence")


class PresenceParticipant:
    """A browser tab or Yjs-server room attached to presence (core thread only)."""

    def __init__(self, node: PresenceNode, pid: str, send: Callable[[bytes], None]) -> None:
        self._node = node
        self.pid = pid
        self.send = send
        self.attached = True

    def receive(self, update: bytes) -> None:
        """An awareness update from the participant."""
        if self.attached:
            self._node._core.receive_participant(self.pid, bytes(update), time.monotonic())
            self._node._after()

    def query(self) -> None:
        """Send the participant every state we hold."""
        if self.attached:
            self._node._core.query(self.pid)
            self._node._after()

    def detach(self) -> None:
        """The participant left: the states it introduced go away."""
        if self.attached:
            self.attached = False
            self._node._core.remove_participant(self.pid, time.monotonic())
            self._node._participants.pop(self.pid, None)
            self._node._after()


class PresenceNode:
    """The core thread's side of presence for one node."""

    def __init__(self, node: Node, config: PresenceConfig | None = None) -> None:
        self._node = node
        self._runtime = node.runtime
        self._core = PresenceCore(node.my_peer.id, node.my_peer.display_name, time.monotonic(), config)
        self._participants: dict[str, PresenceParticipant] = {}
        self._peers: dict[tuple[Owner, int], PeerID] = {}
        self._timer: Any = None
        self._timer_at: float | None = None
        self._closed = False
        self.facade = Presence(self)

    @property
    def core(self) -> PresenceCore:
        """The sans-IO presence state (core thread)."""
        return self._core

    # -- from the node (core thread) ------------------------------------------------------------
    def peer_added(self, peer: PeerID) -> None:
        """A neighbour connected."""
        self._core.peer_added(peer.id, time.monotonic())
        self._after()

    def peer_removed(self, peer: PeerID) -> None:
        """A neighbour left: its presence and what it relayed go at once."""
        self._core.peer_removed(peer.id, time.monotonic())
        self._after()

    def message(self, peer: PeerID, payload: bytes, reliable: bool) -> None:
        """A PRESENCE message from a neighbour."""
        self._core.receive(peer.id, payload, time.monotonic(), reliable)
        self._after()

    def set_local(self, text: str | None) -> None:
        """Our own state changed (posted by :meth:`Presence.set`)."""
        if not self._closed:
            self._core.set_local(text, time.monotonic())
            self._after()

    def attach_participant(self, pid: str, send: Callable[[bytes], None]) -> PresenceParticipant:
        """Attach a participant (Seam B); it gets every state now and every change later."""
        if pid in self._participants:
            raise ValueError(f"participant {pid!r} is already attached")
        part = PresenceParticipant(self, pid, send)
        self._participants[pid] = part
        self._core.add_participant(pid, time.monotonic())
        self._after()
        return part

    def close(self) -> None:
        """Tell the participants we are gone, then stop the timer."""
        if self._closed:
            return
        self._core.leave(time.monotonic())
        self._after()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- internals ------------------------------------------------------------------------------
    def _after(self) -> None:
        core = self._core
        if core.outbox:
            out, core.outbox = core.outbox, []
            for target, payload, reliable in out:
                if target.startswith("@"):
                    part = self._participants.get(target[1:])
                    if part is not None and part.attached:
                        try:
                            part.send(payload)
                        except Exception:
                            log.exception("sending presence to participant %s failed", part.pid)
                else:
                    self._node.send(Kind.PRESENCE, [target], payload, reliable)
        if core.events:
            events, core.events = core.events, []
            for event in events:
                self._deliver(event)
        self._schedule()

    def _deliver(self, event: PresenceChanged) -> None:
        key = (event.owner, event.client)
        peer = self._peers.get(key)
        if peer is None:
            if event.text is None:
                return
            peer = self._peer_for(event.owner, event.client, event.text)
            self._peers[key] = peer
        if event.text is None:
            del self._peers[key]
        self.facade._publish(peer, event.text)
        self._runtime.dispatch(_presence_event, self._node._owner, self.facade, peer, event.text)

    def _peer_for(self, owner: Owner, client: int, text: str) -> PeerID:
        if not owner.participant:
            known = self._node.known.get(owner.node)
            if known is not None:
                return known
            return make_peer(owner.node, _display_name(owner.name, "peer"), {})
        digest = hashlib.sha256(f"{owner.node}/{owner.participant}/{client}".encode()).hexdigest()
        name = None
        try:
            state = json.loads(text)
            user = state.get("user") if isinstance(state, dict) else None
            name = user.get("name") if isinstance(user, dict) else None
        except ValueError:
            pass
        fallback = f"{owner.participant[:40]} {client}"
        return make_peer(digest[:32], _display_name(name, fallback), {"participant": owner.participant[:200]})

    def _schedule(self) -> None:
        if self._closed:
            return
        deadline = self._core.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        delay = max(0.0, deadline - time.monotonic())
        self._timer = self._runtime.loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        self._core.handle_timer(time.monotonic())
        self._after()


def _display_name(name: object, fallback: str) -> str:
    for candidate in (name, fallback, "peer"):
        try:
            return validate_display_name(candidate)
        except InvalidDisplayName:
            continue
    return "peer"


def _presence_event(owner_ref: weakref.ref[Any], facade: Presence, peer: PeerID, text: str | None) -> None:
    """Dispatcher thread: the owner's presence_changed, then each observer, each with its own copy."""
    owner = owner_ref()
    if owner is not None:
        callback = getattr(owner, "presence_changed", None)
        if callback is not None:
            callback(peer, None if text is None else json.loads(text))
    for sub in list(facade._subs):
        try:
            sub._run((peer, None if text is None else json.loads(text)))
        except Exception:
            log.exception("a presence observer raised")


class Presence:
    """Who is here and what they are doing: our own JSON state and every other peer's.

    States are small JSON values (at most 8 KiB as JSON; tuples come back as lists), never
    stored in any shared_dict's history. Updates go out at most 20 times a second (the latest
    wins), a state not renewed within 30 s expires, and a peer's state goes as soon as the peer
    is removed. ``states()`` lists the others, not ourselves (``mine`` is ours).
    """

    def __init__(self, node: PresenceNode) -> None:
        self._node = node
        self._runtime = node._runtime
        self._lock = threading.Lock()
        self._mine: str | None = None
        self._posted = False
        self._max = node._core.config.max_state_bytes
        self._states: dict[PeerID, str] = {}
        self._subs: list[Subscription] = []

    def set(self, state: Any) -> None:
        """Set our state to a JSON value (None clears it).

        mpstore.InvalidArgument (a TypeError) if it is not JSON or would not come back the same;
        mpstore.MessageTooLarge over 8 KiB of JSON. Nothing changes then.
        """
        text = encode_state(state, self._max)
        if self._runtime.closed:
            raise Closed("this object was ended with end_all()")
        with self._lock:
            # One hop in flight at most: a flood of set() from any thread replaces the pending
            # state (latest kept) instead of queueing on the core loop.
            if not self._posted:
                self._runtime.post(self._take)
                self._posted = True
            self._mine = text

    def _take(self) -> None:
        """Core thread: hand the latest state set by a user thread to the core."""
        with self._lock:
            text = self._mine
            self._posted = False
        self._node.set_local(text)

    def update(self, **fields: Any) -> None:
        """Set some fields of our state (a dict; starts from {} if there is none)."""
        with self._lock:
            current = json.loads(self._mine) if self._mine is not None else None
        state = current if isinstance(current, dict) else {}
        state.update(fields)
        self.set(state)

    def clear(self) -> None:
        """Clear our state: peers see it go (presence_changed with None)."""
        self.set(None)

    @property
    def mine(self) -> Any:
        """Our own state (a fresh copy), or None."""
        text = self._mine
        return None if text is None else json.loads(text)

    def get(self, peer: PeerID) -> Any:
        """The state of ``peer`` (ourselves included), or None if it has none."""
        if not isinstance(peer, PeerID):
            raise TypeError(f"peer must be a PeerID, not {type(peer).__name__}")
        if peer.id == self._node._core.local_id:
            return self.mine
        text = self._states.get(peer)
        return None if text is None else json.loads(text)

    def states(self) -> dict[PeerID, Any]:
        """Every other peer's state now (fresh copies), by peer; peers without one are left out."""
        return {peer: json.loads(text) for peer, text in self._states.items()}

    def observe(self, callback: Callable[[PeerID, Any], Any]) -> Subscription:
        """Call ``callback(peer, state)`` on each change (state None: gone); cancel() to stop."""
        sub = Subscription(self, lambda change: callback(*change))
        with self._lock:
            self._subs = [*self._subs, sub]
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        sub.active = False
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    def _publish(self, peer: PeerID, text: str | None) -> None:
        """Core thread: the new view, replaced whole so readers never see it half-made."""
        states = dict(self._states)
        if text is None:
            states.pop(peer, None)
        else:
            states[peer] = text
        self._states = states

    def __repr__(self) -> str:
        return f"<Presence: {len(self._states)} others, mine={self._mine}>"
