"""``MCTransport``: links over Apple's Multipeer Connectivity, written once on the bridge.

Each link is its own two-peer ``MCSession`` (a fresh one per attempt, as the known remedies
advise), so a failed attempt never disturbs the other links. Of each pair only the node with
the smaller node id invites; both ids travel in the discovery info and the invitation context,
never as an ObjC hash. An attempt that fails is retried once with a fresh session; a link that
drops while the peer is still in sight is re-invited (again with one retry). Losses the
framework never reports (a device sent to the background) are left to the session's heartbeats.

An invitation only *claims* a node id (anyone can copy one from the discovery info), so it never
ends or blocks a link: it is accepted alongside the node's live link or attempt, and the node's
sessions decide which one is the peer (``mpstore._pairing``). At most ``_MAX_EXTRA`` such extra
links per node id are kept; a newer one ends the oldest that is not yet connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..._errors import Closed, MpstoreError, ServiceTypeNotDeclared, TransportError
from ..base import LinkId, LinkListener, LocalNode, Transport
from .bridge import (
    CONNECTED,
    ERR_SERVICE_NOT_DECLARED,
    MAX_PEERS_PER_SESSION,
    NOT_CONNECTED,
    Bridge,
    DataReceived,
    DidNotStart,
    Event,
    Found,
    Invited,
    Lost,
    StateChanged,
)

__all__ = ["INFO_KEY", "MAX_REMOTE_PEERS", "MCTransport"]

log = logging.getLogger("mpstore.transports.mc")

#: Discovery info key carrying "<version>.<node id>"; reserved, a user's value is replaced.
INFO_KEY = "mpstore"
_INFO_VERSION = "1"
_CONTEXT_PREFIX = b"mpstore/1 "
#: Multipeer Connectivity connects at most 8 devices: this one and 7 others.
MAX_REMOTE_PEERS = MAX_PEERS_PER_SESSION - 1
_ATTEMPTS = 2  # the first invitation and one retry
#: Links beside a node's own link (invitations claiming the same node id) kept at once.
_MAX_EXTRA = 2
#: Advertisers claiming one node id that we keep as ones to invite (a copy may come first).
_MAX_CANDIDATES = 4


def _valid_node(node: str) -> bool:
    return 0 < len(node) <= 64 and all(c in "0123456789abcdef" for c in node)


def node_from_info(info: dict[str, str] | object) -> str | None:
    """The node id a peer advertises, or None if it is not an mpstore peer."""
    value = info.get(INFO_KEY) if isinstance(info, dict) else None
    if not isinstance(value, str):
        return None
    version, _, node = value.partition(".")
    return node if version == _INFO_VERSION and _valid_node(node) else None


def node_from_context(context: bytes) -> str | None:
    """The node id an inviter put in its invitation context, or None."""
    if not context.startswith(_CONTEXT_PREFIX):
        return None
    try:
        node = context[len(_CONTEXT_PREFIX) :].decode("ascii")
    except UnicodeDecodeError:
        return None
    return node if _valid_node(node) else None


def _before(a: str, b: str) -> bool:
    return (len(a), a) < (len(b), b)


@dataclass(eq=False)
class _Link:
    id: str
    session: int
    peer: int
    node: str
    name: str
    inviter: bool
    up: bool = False
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Remote:
    node: str
    name: str = ""
    peer: int | None = None  # handle from discovery; what we invite
    found: bool = False
    attempts: int = 0
    rejoins: int = 0  # re-invitations left after a link drops; refilled when found again
    link: _Link | None = None
    others: list[_Link] = field(default_factory=list)
    """Links from invitations that claim this node id while it has a link or attempt already."""
    candidates: dict[int, str] = field(default_factory=dict)
    """Advertisers (handle: name) claiming this node id, oldest first; ``peer`` is one of them."""
    rotations: int = 0
    warned_full: bool = False


class MCTransport(Transport):
    """Multipeer Connectivity: one encrypted two-peer session per link."""

    name = "mc"
    #: Frames the framework carries well in both modes; the session fragments above it.
    max_frame_size = 16 * 1024
    #: kMCSessionMaximumNumberOfPeers; the wrapper refuses a larger ``max_peers``.
    max_peers = MAX_PEERS_PER_SESSION

    def __init__(
        self,
        bridge: Bridge | None = None,
        *,
        invite_timeout: float = 25.0,
        retry_delay: float = 1.0,
        flush_grace: float = 0.3,
        on_failure: Callable[[MpstoreError], None] | None = None,
    ) -> None:
        if bridge is None:
            from . import make_bridge

            bridge = make_bridge()
        self._bridge = bridge
        self._invite_timeout = invite_timeout
        self._retry_delay = retry_delay
        self._flush_grace = flush_grace
        self.on_failure = on_failure
        #: The first error the framework reported on starting (e.g. ServiceTypeNotDeclared).
        self.failure: MpstoreError | None = None
        #: Peers not connected because 8 devices were already connected.
        self.full_refusals = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: LinkListener | None = None
        self._node = ""
        self._local: LocalNode | None = None
        self._remotes: dict[str, _Remote] = {}
        self._peer_nodes: dict[int, str] = {}
        self._links: dict[LinkId, _Link] = {}
        self._by_session: dict[int, _Link] = {}
        self._pending_disconnects: dict[int, asyncio.TimerHandle] = {}
        self._discovering = False
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<MCTransport node={self._node[:8]} links={len(self._links)}>"

    # ---------------------------------------------------------------- Transport
    def open(self, loop: asyncio.AbstractEventLoop, listener: LinkListener, local: LocalNode) -> None:
        """Bind to the core loop and make our MCPeerID."""
        self._loop, self._listener, self._local = loop, listener, local
        self._node = local.peer_id.lower()
        self._bridge.open(local.display_name, local.service_type, self._post)

    def start_discovery(self) -> None:
        """Advertise with our node id in the discovery info, and browse."""
        if self._closed:
            raise Closed("the MC transport is closed")
        assert self._local is not None
        if self._discovering and self.failure is None:
            return
        self.failure = None
        if self._started:
            # Rebuild on return, as the known remedies advise: others may still hold our old
            # MCPeerID as a ghost; a fresh one is found anew and deduplicated by node id.
            self._bridge.renew_identity()
        self._started = True
        info = dict(self._local.discovery_info)
        info[INFO_KEY] = f"{_INFO_VERSION}.{self._node}"
        self._discovering = True
        self._bridge.advertise(info)
        self._bridge.browse()

    def stop_discovery(self) -> None:
        """Stop advertising and browsing; abandon attempts in progress; live links stay."""
        if self._closed or not self._discovering:
            return
        self._discovering = False
        self._bridge.stop_advertising()
        self._bridge.stop_browsing()
        for link in [lk for lk in self._links.values() if not lk.up]:
            self._end(link, "stopped looking", retry=False)
        for r in self._remotes.values():
            r.found = False
            r.candidates.clear()
        for peer in list(self._peer_nodes):
            self._release_peer(peer)

    def send(self, link: LinkId, frame: bytes, reliable: bool = True) -> bool:
        """Send one frame in the framework's reliable or unreliable mode."""
        lk = self._links.get(link)
        if lk is None or not lk.up or len(frame) > self.max_frame_size or self._closed:
            return False
        error = self._bridge.send(lk.session, lk.peer, frame, reliable)
        if error is not None:
            log.debug("mc: send to %s failed: %s", lk.name, error)
            return False
        return True

    def peer_key(self, link: LinkId) -> str | None:
        """The link's MCPeerID (as the bridge's handle): what names a device to the framework."""
        lk = self._links.get(link)
        return f"mc-peer:{lk.peer}" if lk is not None else None

    def close_link(self, link: LinkId, reason: str = "closed") -> None:
        """End a link; its session is left after a short grace so queued frames can go."""
        lk = self._links.get(link)
        if lk is not None:
            self._end(lk, reason, retry=False, grace=True)

    async def aclose(self) -> None:
        """Stop discovery, end every link, leave every session, release the framework objects."""
        if self._closed:
            return
        self.stop_discovery()
        had_links = bool(self._links)
        for link in list(self._links.values()):
            self._end(link, "transport closed", retry=False, grace=True)
        self._closed = True
        if had_links:
            await asyncio.sleep(self._flush_grace)
        for session, handle in list(self._pending_disconnects.items()):
            handle.cancel()
            self._bridge.disconnect(session)
        self._pending_disconnects.clear()
        self._remotes.clear()
        self._peer_nodes.clear()
        self._bridge.close()

    # ---------------------------------------------------------------- framework events
    def _post(self, event: Event) -> None:
        """Called on a framework queue: hop onto the core loop, nothing else."""
        loop = self._loop
        if loop is None or self._closed:
            return
        # A closed loop raises RuntimeError: nothing is listening any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._handle, event)

    def _handle(self, event: Event) -> None:
        if self._closed:
            return
        try:
            if isinstance(event, Found):
                self._on_found(event)
            elif isinstance(event, Lost):
                self._on_lost(event)
            elif isinstance(event, Invited):
                self._on_invited(event)
            elif isinstance(event, StateChanged):
                self._on_state(event)
            elif isinstance(event, DataReceived):
                self._on_data(event)
            elif isinstance(event, DidNotStart):
                self._on_not_started(event)
        except Exception:
            log.exception("mc: handling a %s event failed", type(event).__name__)

    def _on_found(self, ev: Found) -> None:
        node = node_from_info(dict(ev.info))
        if node is None or node == self._node or not self._discovering:
            self._release_peer(ev.peer)
            return
        r = self._remotes.setdefault(node, _Remote(node))
        old = r.peer
        r.peer, r.name, r.found, r.attempts, r.rejoins = ev.peer, ev.display_name, True, 0, 1
        r.rotations = 0
        r.candidates.pop(ev.peer, None)
        r.candidates[ev.peer] = ev.display_name
        while len(r.candidates) > _MAX_CANDIDATES:
            dropped = next(iter(r.candidates))
            del r.candidates[dropped]
            self._release_peer(dropped)
        self._peer_nodes[ev.peer] = node
        if old is not None and old != ev.peer:
            self._release_peer(old)
        self._maybe_invite(r)

    def _on_lost(self, ev: Lost) -> None:
        node = self._peer_nodes.get(ev.peer)
        r = self._remotes.get(node) if node is not None else None
        if r is not None:
            r.candidates.pop(ev.peer, None)
            if r.peer == ev.peer:
                if r.candidates:  # another advertiser of this node id is still in sight
                    r.peer, r.name = next(reversed(r.candidates.items()))
                else:
                    r.found = False
        self._release_peer(ev.peer)

    def _on_invited(self, ev: Invited) -> None:
        node = node_from_context(ev.context)
        r = self._remotes.get(node) if node is not None else None
        decline = None
        if not self._discovering:
            decline = "not looking for peers"
        elif node is None or node == self._node:
            decline = "not an mpstore peer"
        elif self._count_links() >= MAX_REMOTE_PEERS:
            self._refuse_full(r or _Remote(node, ev.display_name))
            decline = "8 devices already connected"
        if decline is not None:
            log.debug("mc: declining %s: %s", ev.display_name, decline)
            self._bridge.answer(ev.invitation, False, None)
            self._release_peer(ev.peer)
            return
        assert node is not None
        r = self._remotes.setdefault(node, _Remote(node, ev.display_name))
        # Only the node that should invite (the smaller id) takes the node's own slot; anything
        # else goes alongside, so a copied id never ends nor blocks the node's link or attempt.
        extra = r.link is not None or _before(self._node, node)
        if extra and len(r.others) >= _MAX_EXTRA:
            waiting = [lk for lk in r.others if not lk.up]
            if not waiting:
                log.debug("mc: declining %s: %d links already claim its node id", ev.display_name, _MAX_EXTRA)
                self._bridge.answer(ev.invitation, False, None)
                self._release_peer(ev.peer)
                return
            self._end(waiting[0], "superseded by a newer invitation", retry=False)
        session = self._bridge.new_session(ev.invitation)
        self._bridge.answer(ev.invitation, True, session)
        self._peer_nodes.setdefault(ev.peer, node)
        self._new_link(r, session, ev.peer, ev.display_name, inviter=False, extra=extra)

    def _on_state(self, ev: StateChanged) -> None:
        link = self._by_session.get(ev.session)
        if link is None or ev.peer != link.peer:
            return
        if ev.state == CONNECTED:
            self._up(link)
        elif ev.state == NOT_CONNECTED:
            self._end(link, "disconnected" if link.up else "connection failed", retry=True)

    def _on_data(self, ev: DataReceived) -> None:
        link = self._by_session.get(ev.session)
        if link is None or ev.peer != link.peer:
            return
        if not link.up:  # data can overtake the state callback; it proves the connection
            self._up(link)
        assert self._listener is not None
        self._listener.link_frame(link.id, ev.data)

    def _on_not_started(self, ev: DidNotStart) -> None:
        error: MpstoreError
        if ev.code == ERR_SERVICE_NOT_DECLARED:
            service = self._local.service_type if self._local else "?"
            error = ServiceTypeNotDeclared(
                f"iOS refused to {'advertise' if ev.role == 'advertiser' else 'browse'} service "
                f"type {service!r} (NSNetServices error -72008): the app's Info.plist does not "
                f"declare it. iOS 14+ lets an app use only the Bonjour services listed under "
                f"NSBonjourServices (_{service}._tcp and _{service}._udp). In Pythonista, use a "
                f"service type that Pythonista declares, or run mpstore from an app whose "
                f"Info.plist declares yours; see docs/MC.md."
            )
        else:
            error = TransportError(
                f"Multipeer Connectivity could not start the {ev.role}: {ev.domain} {ev.code}: {ev.message}"
            )
        log.error("mc: %s", error)
        if self.failure is None:
            self.failure = error
            if self.on_failure is not None:
                self.on_failure(error)

    # ---------------------------------------------------------------- links
    def _count_links(self, excluding: _Link | None = None) -> int:
        return sum(1 for lk in self._links.values() if lk is not excluding)

    def _refuse_full(self, r: _Remote) -> None:
        self.full_refusals += 1
        if not r.warned_full:
            r.warned_full = True
            log.warning(
                "mc: not connecting %r: Multipeer Connectivity connects at most %d devices "
                "(this one and %d peers), and %d are connected or connecting",
                r.name,
                MAX_PEERS_PER_SESSION,
                MAX_REMOTE_PEERS,
                self._count_links(),
            )

    def _maybe_invite(self, r: _Remote) -> None:
        if (
            self._closed
            or not self._discovering
            or r.link is not None
            or not r.found
            or r.peer is None
            or not _before(self._node, r.node)
        ):
            return
        if r.attempts >= _ATTEMPTS:
            log.warning(
                "mc: could not connect to %r after %d attempts (declined, out of range, or it "
                "already has %d peers: Multipeer Connectivity connects at most %d devices); "
                "trying again when it is found again",
                r.name,
                r.attempts,
                MAX_REMOTE_PEERS,
                MAX_PEERS_PER_SESSION,
            )
            return
        if self._count_links() >= MAX_REMOTE_PEERS:
            self._refuse_full(r)
            return
        session = self._bridge.new_session()
        r.attempts += 1
        link = self._new_link(r, session, r.peer, r.name, inviter=True)
        try:
            self._bridge.invite(r.peer, session, _CONTEXT_PREFIX + self._node.encode(), self._invite_timeout)
        except Exception:
            log.exception("mc: inviting %s failed", r.name)
            self._end(link, "invitation failed", retry=False)

    def _new_link(
        self, r: _Remote, session: int, peer: int, name: str, *, inviter: bool, extra: bool = False
    ) -> _Link:
        assert self._loop is not None
        link = _Link(f"mc-{session}", session, peer, r.node, name, inviter)
        # The framework's own timeout should fire first; this guards against silence.
        link.timer = self._loop.call_later(self._invite_timeout + 5.0, self._attempt_silent, link)
        if extra:
            r.others.append(link)
        else:
            r.link = link
        self._links[link.id] = link
        self._by_session[session] = link
        return link

    def _attempt_silent(self, link: _Link) -> None:
        link.timer = None
        if not link.up and self._links.get(link.id) is link:
            self._end(link, "connection timed out", retry=True)

    def _up(self, link: _Link) -> None:
        if link.up:
            return
        link.up = True
        if link.timer is not None:
            link.timer.cancel()
            link.timer = None
        r = self._remotes.get(link.node)
        if r is not None:
            r.attempts = 0
        assert self._listener is not None
        self._listener.link_up(link.id, f"mc:{link.name}")

    def _end(self, link: _Link, reason: str, *, retry: bool, grace: bool = False) -> None:
        if self._links.get(link.id) is not link:
            return
        del self._links[link.id]
        self._by_session.pop(link.session, None)
        if link.timer is not None:
            link.timer.cancel()
            link.timer = None
        r = self._remotes.get(link.node)
        if r is not None and link in r.others:
            r.others.remove(link)
        elif r is not None and r.link is link:
            # A link that came alongside (and may have become the peer's) takes the slot.
            up = [lk for lk in r.others if lk.up]
            r.link = (up or r.others)[0] if r.others else None
            if r.link is not None:
                r.others.remove(r.link)
        if grace and self._loop is not None and not self._closed:
            self._pending_disconnects[link.session] = self._loop.call_later(
                self._flush_grace, self._disconnect_later, link.session
            )
        else:
            self._bridge.disconnect(link.session)
        if link.up:
            assert self._listener is not None
            self._listener.link_down(link.id, reason)
        self._release_peer(link.peer)
        if r is None or not link.inviter or self._loop is None:
            return
        others = [h for h in r.candidates if h != link.peer]
        if r.peer == link.peer and others and r.rotations < 2 * _MAX_CANDIDATES:
            # Several advertisers claim this node id (one may be a copy): try the next one.
            r.rotations += 1
            name = r.candidates.pop(link.peer, r.name)
            r.candidates = {link.peer: name, **r.candidates}
            r.peer, r.name = others[-1], r.candidates[others[-1]]
        if r.peer is not None and r.peer != link.peer:
            # The peer was found again under a new MCPeerID (it rebuilt its framework): the
            # link that ended was a ghost; invite the new identity whoever ended it.
            r.attempts = 0
        elif not retry:
            return
        elif link.up:
            if r.rejoins <= 0:
                return
            r.rejoins -= 1
            r.attempts = 0
        self._loop.call_later(self._retry_delay, self._maybe_invite, r)

    def _disconnect_later(self, session: int) -> None:
        if self._pending_disconnects.pop(session, None) is not None:
            self._bridge.disconnect(session)

    def _release_peer(self, peer: int) -> None:
        node = self._peer_nodes.get(peer)
        r = self._remotes.get(node) if node is not None else None
        in_use = (r is not None and ((r.peer == peer and r.found) or peer in r.candidates)) or any(
            lk.peer == peer for lk in self._links.values()
        )
        if in_use:
            return
        # The bridge keeps the handle: an event already on its way may still name it.
        self._peer_nodes.pop(peer, None)
        if r is not None and r.peer == peer:
            r.peer = None
        if r is not None and r.link is None and not r.others and r.peer is None:
            self._remotes.pop(r.node, None)
