"""Sans-IO pair decisions: which link a pair of peers keeps, and when a new one may replace it.

The rule: **an unauthenticated connection never displaces or blocks a live link.** A new link
that claims the id of a peer we already have a link with

- is kept *alongside* the old one by the transport (it is not refused, so a stranger who got
  there first cannot squat a pair's slot), unless the transport itself authenticated it as the
  same peer (on the LAN: the same TLS certificate that peer id already uses), in which case it
  is the same peer's duplicate or its replacement (:func:`connection_verdict`);
- is held by the node after its hello (:meth:`PairTable.on_hello` says WAIT) until the old
  link ends, when the old one is open and the new one has not completed a proof of the group
  secret; the old link ends on its own if it has failed its heartbeats;
- replaces the old link once it is open itself, if it completed a proof (:meth:`PairTable.on_open`).

Nothing here touches sockets, threads or clocks; the LAN transport, the Multipeer Connectivity
transport and the node each keep a table and act on its verdicts.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

__all__ = ["Connection", "PairTable", "Verdict", "connection_verdict"]

L = TypeVar("L", bound=Hashable)


class Verdict(Enum):
    """What to do with a link that claims a peer id."""

    PROCEED = "proceed"
    """Go on (admission, or keep the connection)."""
    WAIT = "wait"
    """Hold it: the peer has a live link and this one has not proved it is the same peer."""
    REFUSE = "refuse"
    """Refuse it (a duplicate of a link the same peer already has, or we are not accepting)."""
    REPLACE = "replace"
    """It is the same peer, authenticated: it takes over from the old link."""


@dataclass(frozen=True)
class Connection(Generic[L]):
    """A transport connection that claims a peer id, as the transport's pair decision sees it."""

    key: L
    identity: bytes | None
    """What the transport authenticated about the remote end (LAN: its TLS certificate), if any."""


def connection_verdict(
    held: Sequence[Connection[L]],
    identity: bytes | None,
    *,
    we_decide: bool,
) -> tuple[Verdict, Connection[L] | None]:
    """A transport's decision on a new connection claiming a peer id it already has ``held``
    connections for: (verdict, the held connection it concerns).

    The decider (the end that decides for the pair) refuses a second connection from the same
    authenticated identity as a duplicate; the other end, told that the decider accepted one,
    lets it replace the held connection of that identity. A connection from another identity is
    kept alongside (PROCEED): only the session above can tell which one is the peer.
    """
    if identity is not None:
        for conn in held:
            if conn.identity == identity:
                return (Verdict.REFUSE, conn) if we_decide else (Verdict.REPLACE, conn)
    return Verdict.PROCEED, None


class PairTable(Generic[L]):
    """The node's view: each peer id's open link, and links waiting for it to end."""

    def __init__(self) -> None:
        self._open: dict[str, L] = {}
        self._peer_of: dict[L, str] = {}
        self._waiting: dict[str, list[L]] = {}

    def open_link(self, peer_id: str) -> L | None:
        """The link the peer is open on, if any."""
        return self._open.get(peer_id)

    def waiting(self, peer_id: str) -> list[L]:
        """Links held for ``peer_id``, oldest first."""
        return list(self._waiting.get(peer_id, ()))

    def on_hello(self, link: L, peer_id: str, *, authenticated: bool) -> Verdict:
        """A link said hello as ``peer_id`` (after its proof, if ``authenticated``)."""
        current = self._open.get(peer_id)
        if current is None or current == link or authenticated:
            self._unwait(link)
            return Verdict.PROCEED
        queue = self._waiting.setdefault(peer_id, [])
        if link not in queue:
            queue.append(link)
        return Verdict.WAIT

    def on_open(self, link: L, peer_id: str, *, authenticated: bool) -> tuple[Verdict, L | None]:
        """The link's session opened: PROCEED (it is the pair's link), REPLACE (it is, and the
        returned old link must be closed), or REFUSE (the peer is open on another link)."""
        self._unwait(link)
        current = self._open.get(peer_id)
        if current is not None and current != link and not authenticated:
            return Verdict.REFUSE, current
        self._open[peer_id] = link
        self._peer_of[link] = peer_id
        if current is not None and current != link:
            self._peer_of.pop(current, None)
            return Verdict.REPLACE, current
        return Verdict.PROCEED, None

    def on_closed(self, link: L) -> list[L]:
        """The link ended; the links that were waiting for it (to be judged again), oldest first."""
        self._unwait(link)
        peer_id = self._peer_of.pop(link, None)
        if peer_id is None or self._open.get(peer_id) != link:
            return []
        del self._open[peer_id]
        return self._waiting.pop(peer_id, [])

    def _unwait(self, link: L) -> None:
        for peer_id, queue in list(self._waiting.items()):
            if link in queue:
                queue.remove(link)
                if not queue:
                    del self._waiting[peer_id]
