"""The node: everything the core thread owns (links, sessions, peers), driven by plain events.

It implements the transport's LinkListener, runs one LinkSession per link, decides admissions,
keeps the list of connected peers, and hands user callbacks to the dispatcher. Every method
here runs on the core thread; the facade in ``_wrapper.py`` hops onto it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._drain import DrainWatch
from ._pairing import PairTable, Verdict
from ._peer import PeerID, make_peer
from ._presence_node import PresenceNode
from ._runtime import Runtime
from ._session import (
    Hello,
    HelloReceived,
    LinkClosed,
    LinkSession,
    MessageReceived,
    PeerOpened,
    SessionConfig,
    advertised_rate,
)
from ._wire import Kind
from .transports.base import LinkId, LocalNode, Transport

__all__ = ["Node", "NodeOptions", "Owner"]

log = logging.getLogger("mpstore")

#: Kind.APP as a plain int: an IntEnum member is slow to look up on the per-message path.
_APP = int(Kind.APP)
#: Bytes of frames handed to a link's transport per turn of the core loop.
LINK_BURST = 1 << 20
#: Above this many bytes queued for a link, reliable senders wait (SendTimeout after
#: send_timeout) and the store holds its outbox.
LINK_QUEUE_HIGH = 1 << 20
#: Application messages from one peer waiting for the ``receive`` callback before we stop
#: reading that peer's link (its sends then wait: push-back); reading resumes at half of it.
APP_QUEUE_LIMIT = 256
#: A timer this late (seconds) means the core loop was blocked: frames are read before timers run.
STALL = 0.5
#: end_all() waits at most this long (seconds) for store messages to reach connected peers.
STORE_FLUSH_TIMEOUT = 5.0
#: Links in their session handshake at once (each holds a socket until handshake_timeout).
_MAX_HANDSHAKING_LINKS = 64
#: The shortest timer delay: a deadline already due is run after this, never in a tight loop.
MIN_TICK = 0.005
#: Devices whose failed proofs are remembered at once (each new one would otherwise grow it).
_MAX_FAILING_HOSTS = 4096
#: Failed proofs from all devices together, per window, after which only devices that were
#: connected before may start a handshake (fresh identities cost a stranger nothing).
_GLOBAL_FAILURES_FACTOR = 4
#: Seconds between two warnings about failed proofs from one device (the rest are counted).
_WARN_EVERY = 10.0


class Owner(Protocol):
    """The user-facing object whose callbacks the node invokes (on the dispatcher thread)."""

    def peer_added(self, peer: PeerID) -> None: ...
    def peer_removed(self, peer: PeerID) -> None: ...
    def receive(self, message: Any, from_peer: PeerID) -> None: ...
    def accept_peer(self, peer: PeerID) -> bool: ...


class StoreHook(Protocol):
    """What the node tells the replicated store (core thread only)."""

    def peer_added(self, peer: PeerID) -> None: ...
    def peer_removed(self, peer: PeerID) -> None: ...
    def message(self, peer: PeerID, payload: bytes) -> None: ...
    def link_writable(self, peer: PeerID, writable: bool) -> None: ...
    def flush_step(self) -> bool: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class NodeOptions:
    """Tunables of a node."""

    session: SessionConfig
    max_message_size: int
    max_peers: int
    key: bytes | None = None
    max_auth_failures: int = 5
    auth_failure_window: float = 60.0
    #: A held link whose send buffer drains not at all for this long is closed as failed
    #: (the wrapper passes 2 x send_timeout); None: never.
    stall_timeout: float | None = None


@dataclass
class _Link:
    session: LinkSession
    address: str | None
    key: str | None = None
    """What identifies the remote device on the transport (failed proofs are counted by it)."""
    peer: PeerID | None = None
    # Reliable frames the session produced and the transport has not taken yet: handed over at
    # most LINK_BURST bytes per loop turn and only while the transport says writable, so a big
    # message (a 16 MiB send, a snapshot) never overflows the transport's buffer.
    out: deque[bytes] = field(default_factory=deque)
    out_bytes: int = 0
    writable: bool = True
    slow: bool = False  # told to senders (blocked) and to the store
    resume: Any = None  # the scheduled continuation, if any
    watch: DrainWatch | None = None  # progress while slow (see _drain.py)


class Node:
    """The core thread's state and logic for one MultipeerConnectivity object."""

    def __init__(
        self,
        runtime: Runtime,
        transport: Transport,
        local: LocalNode,
        options: NodeOptions,
        owner: weakref.ref[Any],
    ) -> None:
        self.runtime = runtime
        self.transport = transport
        self.local = local
        self.options = options
        self._owner = owner
        self.my_peer = make_peer(local.peer_id, local.display_name, local.discovery_info)
        self.looking = False
        self.links: dict[LinkId, _Link] = {}
        self.peers: dict[str, tuple[PeerID, LinkId]] = {}
        self.known: dict[str, PeerID] = {}
        self.store: StoreHook | None = None
        self.files: Any = None  # a _filenode.FileManager, installed by the wrapper after start
        self.presence: PresenceNode | None = None
        self._decisions: dict[str, bool] = {}
        self._auth_failures: dict[str, deque[float]] = {}
        self._all_failures: deque[float] = deque()
        self._known_devices: dict[str, None] = {}  # an ordered set, oldest first
        self._warned: dict[str, tuple[float, int]] = {}
        self._pairs: PairTable[LinkId] = PairTable()
        self._tick_handle: Any = None
        self._tick_at: float | None = None
        self._closed = False
        # Shared with user threads: replaced whole under the condition's lock.
        self.changed = threading.Condition()
        self.peers_snapshot: tuple[PeerID, ...] = ()
        self.blocked: set[str] = set()
        self.peer_rates: dict[str, float] = {}
        # Application messages handed to the dispatcher and not consumed yet, per peer, and the
        # links we stopped reading because of them (both shared with the dispatcher thread).
        self._stalled = False
        self._app_lock = threading.Lock()
        self._app_queued: dict[str, int] = {}
        self._app_paused: dict[str, LinkId] = {}
        # Application messages of one peer read in this pump, not yet handed to the dispatcher.
        self._app_batch: list[bytes] = []
        self._app_batch_peer: PeerID | None = None
        #: Bytes of reliable messages that user threads posted and the core has not sent yet.
        self.posted = 0
        # Core thread: posted sends queued on their sessions since the last _after_posted.
        self._posted_links: dict[LinkId, _Link] = {}
        self._unposted = 0
        self._after_posted_due = False
        self._transport_flush_due = False
        #: Stopped at shutdown after the store's last messages left (servers attached to the node,
        #: such as mpstore.web endpoints); each removes itself when stopped earlier. Core thread.
        self.attached_servers: list[Callable[[], Awaitable[None]]] = []

    # -- life cycle (core thread) -------------------------------------------------------------------
    def start(
        self, engine: str | None = None, data_dir: str | os.PathLike[str] | None = None, durable: bool = False
    ) -> None:
        """Open the stores' data_dir (if any), the transport, and start looking for peers."""
        self.store = _make_store(self, engine, data_dir, durable)
        self.presence = PresenceNode(self)
        self.transport.open(self.runtime.loop, self, self.local)
        self.start_looking()

    def start_looking(self) -> None:
        """Advertise and browse; forget earlier admission decisions."""
        if self._closed:
            return
        self._decisions.clear()
        self.looking = True
        self.transport.start_discovery()

    def stop_looking(self) -> None:
        """Stop advertising and browsing; links still in their handshake are refused."""
        self.looking = False
        self.transport.stop_discovery()
        for link, entry in list(self.links.items()):
            if entry.peer is None and not entry.session.is_open:
                entry.session.refuse("not accepting new peers")
                self._pump(link)

    def disconnect(self) -> None:
        """Say goodbye on every link and stop looking."""
        self.looking = False
        self.transport.stop_discovery()
        for link in list(self.links):
            entry = self.links.get(link)
            if entry is not None:
                entry.session.close("disconnected")
                self._pump(link)

    async def shutdown(self) -> None:
        """Disconnect, close the store and the transport, stop the timer."""
        if self._closed:
            return
        await self._flush_store()
        for stop in list(self.attached_servers):
            try:
                await stop()
            except Exception:
                log.exception("stopping an attached server failed")
        if self.presence is not None:
            self.presence.close()  # our state's removal goes out before the goodbyes
        if self.files is not None:  # so peers hear why transfers end before our goodbye
            try:
                self.files.close()
            except Exception:
                log.exception("closing file transfers failed")
        self.disconnect()
        self._closed = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self.store is not None:
            try:
                self.store.close()
            except Exception:
                log.exception("closing the store failed")
        try:
            await self.transport.aclose()
        except Exception:
            log.exception("closing the %s transport failed", self.transport.name)
        for link in list(self.links):
            self.link_down(link, "ended")

    async def _flush_store(self) -> None:
        """Let every store message go to the connected peers before the goodbyes: writes that
        returned, those held for a new peer's first sync, those over the pacing (bounded by
        STORE_FLUSH_TIMEOUT)."""
        store = self.store
        if store is None:
            return
        deadline = time.monotonic() + STORE_FLUSH_TIMEOUT
        while True:
            try:
                settled = store.flush_step()
            except Exception:
                log.exception("flushing the store failed")
                return
            if settled:
                return
            if time.monotonic() > deadline:
                log.warning("store messages still waiting after %s s at end_all", STORE_FLUSH_TIMEOUT)
                return
            await asyncio.sleep(0.005)

    # -- LinkListener (core thread) -------------------------------------------------------------
    def link_up(self, link: LinkId, address: str | None) -> None:
        """A transport opened a link: start a session on it."""
        if self._closed:
            self.transport.close_link(link, "ended")
            return
        if not self.looking:
            self.transport.close_link(link, "not accepting new peers")
            return
        key = self._device_key(link, address)
        if self._rate_limited(key):
            self._warn(f"refuse:{key}", "refusing a link from %s: too many failed authentications", address)
            self.transport.close_link(link, "too many failed authentications")
            return
        if sum(1 for e in self.links.values() if e.peer is None) >= _MAX_HANDSHAKING_LINKS:
            log.info("refusing a link from %s: %d handshakes in progress", address, _MAX_HANDSHAKING_LINKS)
            self.transport.close_link(link, "too many handshakes in progress")
            return
        rate = self.options.session.max_message_rate
        hello = Hello(
            self.local.peer_id,
            self.local.display_name,
            self.local.discovery_info,
            LinkSession.new_nonce(),
            extra={"rate": rate} if rate else {},
        )
        session = LinkSession(
            hello,
            self.options.session,
            time.monotonic(),
            key=self.options.key,
            channel_binding=self.transport.channel_binding(link),
        )
        stall = self.options.stall_timeout
        self.links[link] = _Link(session, address, key, watch=DrainWatch(stall) if stall else None)
        self._pump(link)

    def link_frame(self, link: LinkId, frame: bytes) -> None:
        """A frame arrived on a link."""
        self.link_frames(link, (frame,))

    def link_frames(self, link: LinkId, frames: Sequence[bytes]) -> None:
        """Frames that arrived together on a link, in order: one pump for all of them."""
        entry = self.links.get(link)
        if entry is not None:
            entry.session.receive_frames(frames, time.monotonic())
            self._pump(link)

    def link_down(self, link: LinkId, reason: str) -> None:
        """The transport lost or closed a link."""
        entry = self.links.get(link)
        if entry is not None:
            entry.session.link_lost(reason)
            self._pump(link)

    def link_writable(self, link: LinkId, writable: bool) -> None:
        """Back-pressure from the transport: hold or release what is queued for that link."""
        entry = self.links.get(link)
        if entry is None:
            return
        entry.writable = writable
        if writable:
            entry.session.note_drained(time.monotonic())
            self._send_out(link, entry)
        else:
            self._update_slow(link, entry)

    def _update_slow(self, link: LinkId, entry: _Link) -> None:
        """Tell reliable senders and the store whether the link takes more now."""
        slow = not entry.writable or entry.out_bytes > LINK_QUEUE_HIGH
        watch = entry.watch
        if watch is not None and entry.peer is not None and (slow or watch.held):
            watch.update(slow, self._unsent(link, entry), time.monotonic())
            deadline = watch.next_deadline()
            if deadline is not None:
                self._arm(deadline)
        if slow == entry.slow or entry.peer is None:
            entry.slow = slow
            return
        entry.slow = slow
        with self.changed:
            if slow:
                self.blocked.add(entry.peer.id)
            else:
                self.blocked.discard(entry.peer.id)
            self.changed.notify_all()
        if self.store is not None:
            try:
                self.store.link_writable(entry.peer, not slow)
            except Exception:
                log.exception("the store failed on link_writable")
        if not slow and self.files is not None:
            self.files.writable(entry.peer.id)

    # -- sending (core thread) --------------------------------------------------------------------
    def send(self, kind: int, peer_ids: list[str], payload: bytes, reliable: bool) -> None:
        """Send one message to each listed peer that is still connected."""
        now = time.monotonic()
        for peer_id in peer_ids:
            found = self.peers.get(peer_id)
            if found is None:
                continue
            entry = self.links.get(found[1])
            if entry is not None:
                entry.session.send(kind, payload, reliable, now)
                self._flush(found[1], entry)

    def send_posted(
        self, kind: int, peer_ids: list[str], payload: bytes, cut_held: str | None = None
    ) -> None:
        """Send a reliable message a user thread counted in ``posted``.

        The frames are queued in order on each link's session now; they reach the links' queues
        (and the count is released) once per burst of posted sends (Runtime.at_batch_end), so a
        burst of small messages costs one hand-over to the transport, not one per message.
        With ``cut_held`` (a reason), a listed peer whose link is still over its high-water mark
        is not sent to: its link is closed as failed, for that reason.
        """
        try:
            if cut_held is not None:
                for peer_id in peer_ids:
                    found = self.peers.get(peer_id)
                    entry = self.links.get(found[1]) if found is not None else None
                    if found is not None and entry is not None and entry.slow:
                        self.cut(found[1], entry, cut_held)
                peer_ids = [peer_id for peer_id in peer_ids if peer_id in self.peers]
            for peer_id in peer_ids:
                found = self.peers.get(peer_id)
                if found is None:
                    continue
                entry = self.links.get(found[1])
                if entry is not None:
                    entry.session.send(kind, payload, True)
                    self._posted_links[found[1]] = entry
        finally:
            self._unposted += len(payload)
            if not self._after_posted_due:
                self._after_posted_due = True
                self.runtime.at_batch_end(self._after_posted)

    def send_posted_many(self, sends: list[tuple[int, list[str], bytes]]) -> None:
        """Several posted reliable sends, (kind, peer_ids, payload) each, in order (the user
        threads' common case, Runtime.post_many); as send_posted for each."""
        peers, links = self.peers, self.links
        posted_links = self._posted_links
        size = 0
        for kind, peer_ids, payload in sends:
            size += len(payload)
            try:
                for peer_id in peer_ids:
                    found = peers.get(peer_id)
                    if found is None:
                        continue
                    entry = links.get(found[1])
                    if entry is not None:
                        entry.session.send(kind, payload, True)
                        posted_links[found[1]] = entry
            except Exception:  # as a failing post would be: logged, and the next ones go
                log.exception("sending a posted message failed")
        self._unposted += size
        if not self._after_posted_due:
            self._after_posted_due = True
            self.runtime.at_batch_end(self._after_posted)

    def _after_posted(self) -> None:
        """Hand the frames of the posted sends to their links, then release their count."""
        self._after_posted_due = False
        links, self._posted_links = self._posted_links, {}
        try:
            for link, entry in links.items():
                if self.links.get(link) is entry:
                    self._flush(link, entry)
        finally:
            released, self._unposted = self._unposted, 0
            with self.changed:
                self.posted -= released
                self.changed.notify_all()

    def cut(self, link: LinkId, entry: _Link, reason: str) -> None:
        """Close a link whose peer takes nothing more: a failed link (peer_removed follows).

        What was queued for it is dropped, not flushed into a buffer it does not drain; when it
        comes back, the stores resync by state vector.
        """
        unsent = self._unsent(link, entry)
        log.warning(
            "closing the link to %r: %s (%s bytes it had not read dropped)",
            entry.peer,
            reason,
            entry.out_bytes if unsent is None else unsent,
        )
        entry.out.clear()
        entry.out_bytes = 0
        entry.session.frames_to_send()  # posted sends not handed to the link yet: dropped too
        entry.session.close(f"peer not reading: {reason}")
        self._pump(link)

    def _unsent(self, link: LinkId, entry: _Link) -> int | None:
        """Bytes queued for the link here and in its transport (None: the transport cannot tell)."""
        buffered = self.transport.buffered(link)
        return None if buffered is None else entry.out_bytes + buffered

    def _check_stall(self, link: LinkId, entry: _Link, now: float) -> None:
        """Sample a held link's progress; close it when it has drained nothing for the bound."""
        watch = entry.watch
        if watch is None or not watch.held or entry.peer is None:
            return
        watch.update(entry.slow, self._unsent(link, entry), now)
        if watch.stalled(now):
            self.cut(
                link,
                entry,
                f"it read nothing we sent for {watch.idle_for(now):.0f} s "
                f"(the bound is {watch.bound:g} s, twice send_timeout)",
            )

    def app_consumed(self, peer_id: str, count: int = 1) -> None:
        """Dispatcher thread: ``count`` application messages of ``peer_id`` were handed to receive."""
        with self._app_lock:
            queued = self._app_queued.get(peer_id, count) - count
            if queued > 0:
                self._app_queued[peer_id] = queued
            else:
                self._app_queued.pop(peer_id, None)
            link = self._app_paused.get(peer_id) if queued <= APP_QUEUE_LIMIT // 2 else None
            if link is not None:
                del self._app_paused[peer_id]
        if link is not None and not self.runtime.closed:
            try:
                self.runtime.post(self.transport.pause_reading, link, False)
            except Exception:
                pass

    def send_to_peer(self, peer: PeerID, kind: int, payload: bytes) -> None:
        """Send one reliable message to one connected peer (used by the store)."""
        self.send(kind, [peer.id], payload, True)

    def connected_peers(self) -> list[PeerID]:
        """The connected peers, in join order."""
        return [peer for peer, _ in self.peers.values()]

    # -- internals ----------------------------------------------------------------------------------
    def _flush(self, link: LinkId, entry: _Link) -> None:
        frames = entry.session.frames_to_send()
        if not frames:
            return
        for frame, reliable in frames:
            if reliable:
                entry.out.append(frame)
                entry.out_bytes += len(frame)
            elif not entry.out and entry.writable:
                self.transport.send(link, frame, False)
            # else: an unreliable frame behind a queue is dropped, as a full link drops it
        self._send_out(link, entry)

    def _send_out(self, link: LinkId, entry: _Link) -> None:
        """Hand queued frames to the transport: LINK_BURST bytes per turn, while writable."""
        out = entry.out
        sent = 0
        if out and entry.writable:
            batch = []
            while out and sent < LINK_BURST:
                frame = out.popleft()
                sent += len(frame)
                batch.append(frame)
            entry.out_bytes -= sent
            self.transport.send_frames(link, batch)
            entry.session.note_sent(time.monotonic())
            if not self._transport_flush_due and self.runtime.in_batch:
                # Sent from posted calls (user sends, store writes): the transport writes them at
                # the end of this burst rather than on the loop's next turn (a turn less latency).
                self._transport_flush_due = True
                self.runtime.at_batch_end(self._flush_transport)
            if out and entry.resume is None:
                # Let the transport report its buffer (link_writable) before more goes.
                entry.resume = self.runtime.loop.call_soon(self._resume, link)
        self._update_slow(link, entry)

    def _flush_transport(self) -> None:
        self._transport_flush_due = False
        self.transport.flush()

    def _resume(self, link: LinkId) -> None:
        entry = self.links.get(link)
        if entry is not None:
            entry.resume = None
            self._send_out(link, entry)

    def _send_all(self, link: LinkId, entry: _Link) -> None:
        """The link is closing: everything queued goes to the transport, before the close."""
        while entry.out:
            self.transport.send(link, entry.out.popleft(), True)
        entry.out_bytes = 0
        if entry.resume is not None:
            entry.resume.cancel()
            entry.resume = None

    def _pump(self, link: LinkId) -> None:
        """Send what the link's session queued and act on its events."""
        entry = self.links.get(link)
        if entry is None:
            return
        # Loop until quiet: handling one event may queue frames or produce further events.
        while True:
            self._flush(link, entry)
            events = entry.session.events()
            if not events:
                deadline = entry.session.next_deadline()
                if deadline is not None:
                    self._arm(deadline)
                return
            for event in events:
                if isinstance(event, MessageReceived):
                    if event.kind != _APP and self._app_batch:
                        self._dispatch_apps()
                    self._on_message(entry, event)
                    continue
                if self._app_batch:
                    self._dispatch_apps()  # callbacks keep the order of the events
                if isinstance(event, HelloReceived):
                    self._on_hello(link, entry, event.hello)
                elif isinstance(event, PeerOpened):
                    self._on_open(link, entry, event.hello)
                elif isinstance(event, LinkClosed):
                    self._on_closed(link, entry, event)
            if self._app_batch:
                self._dispatch_apps()

    def _on_hello(self, link: LinkId, entry: _Link, hello: Hello) -> None:
        authenticated = self.options.key is not None
        if self._pairs.on_hello(link, hello.peer_id, authenticated=authenticated) is Verdict.WAIT:
            # Unauthenticated, and the peer is connected on another link: this one waits until
            # that link ends (it does on its own when it fails its heartbeats).
            log.info(
                "holding a link from %s claiming %s (%s): that peer is connected on another link",
                entry.address,
                hello.display_name,
                hello.peer_id[:8],
            )
            return
        reason = self._admission_problem(link, hello)
        if reason is not None:
            log.info("refusing %s (%s): %s", hello.display_name, hello.peer_id[:8], reason)
            entry.session.refuse(reason)
            return
        decided = self._decisions.get(hello.peer_id)
        if decided is not None:
            self._decide(link, hello.peer_id, decided)
            return
        peer = self._peer_for(hello)
        self.runtime.dispatch(_ask_accept, self._owner, self.runtime, self, link, peer)

    def _admission_problem(self, link: LinkId, hello: Hello) -> str | None:
        if hello.peer_id == self.local.peer_id:
            return "a link to ourselves"
        if not self.looking:
            return "not accepting new peers"
        connected = hello.peer_id in self.peers
        if connected and self.options.key is None:
            return "already connected on another link"
        claims = {
            entry.session.remote_hello.peer_id
            for other, entry in self.links.items()
            if other != link
            and entry.peer is None
            and entry.session.accepted_locally
            and entry.session.remote_hello is not None
            and entry.session.remote_hello.peer_id not in self.peers
        }
        # Links of one claimed id count once: only one of them can become the peer's link.
        newcomer = 0 if connected or hello.peer_id in claims else 1
        if len(self.peers) + len(claims) + newcomer >= self.options.max_peers:
            return f"the session is full ({self.options.max_peers} peers including us)"
        return None

    def decide(self, link: LinkId, peer_id: str, accepted: bool) -> None:
        """The user's accept_peer answered (posted from the dispatcher)."""
        self._decisions[peer_id] = accepted
        self._decide(link, peer_id, accepted)
        self._pump(link)

    def _decide(self, link: LinkId, peer_id: str, accepted: bool) -> None:
        entry = self.links.get(link)
        remote = entry.session.remote_hello if entry is not None else None
        if entry is None or remote is None or remote.peer_id != peer_id:
            return
        if not accepted:
            entry.session.refuse("refused by accept_peer")
        else:
            problem = self._admission_problem(link, remote)
            if problem is not None:
                entry.session.refuse(problem)
            else:
                entry.session.accept()

    def _peer_for(self, hello: Hello) -> PeerID:
        known = self.known.get(hello.peer_id)
        if (
            known is not None
            and known.display_name == hello.display_name
            and dict(known.discovery_info) == dict(hello.discovery_info)
        ):
            return known
        peer = make_peer(hello.peer_id, hello.display_name, hello.discovery_info)
        self.known[hello.peer_id] = peer
        return peer

    def _on_open(self, link: LinkId, entry: _Link, hello: Hello) -> None:
        authenticated = self.options.key is not None
        verdict, other = self._pairs.on_open(link, hello.peer_id, authenticated=authenticated)
        if verdict is Verdict.REFUSE:
            entry.session.close("already connected on another link")
            return
        if verdict is Verdict.REPLACE and other is not None:
            old = self.links.get(other)
            if old is not None:
                log.info(
                    "%s (%s) proved itself on a new link: it replaces the old one",
                    hello.display_name,
                    hello.peer_id[:8],
                )
                old.session.close("replaced by a newer link from the same peer")
                self._pump(other)
        if entry.key is not None:
            self._known_devices.pop(entry.key, None)
            self._known_devices[entry.key] = None
            if len(self._known_devices) > _MAX_FAILING_HOSTS:
                del self._known_devices[next(iter(self._known_devices))]
        peer = self._peer_for(hello)
        entry.peer = peer
        self.peers[peer.id] = (peer, link)
        rate = advertised_rate(hello)
        # The peer cuts off whoever sends faster than it advertised: senders pace themselves
        # (never below the floor, so a peer advertising a crawl cannot stall our sends).
        if rate is not None:
            self.peer_rates[peer.id] = rate
        else:
            self.peer_rates.pop(peer.id, None)
        self._publish()
        log.info("peer added: %r via %s", peer, entry.address)
        self.runtime.dispatch(_call_owner, self._owner, "peer_added", peer)
        if self.presence is not None:
            self.presence.peer_added(peer)
        if self.store is not None:
            try:
                self.store.peer_added(peer)
            except Exception:
                log.exception("the store failed on peer_added")
        if self.files is not None:
            try:
                self.files.peer_added(peer)
                self.wake_files()
            except Exception:
                log.exception("file transfers failed on peer_added")

    def _device_key(self, link: LinkId, address: str | None) -> str | None:
        """What identifies the remote device: the transport's key (a TLS certificate, an
        MCPeerID), else the host of its address."""
        key = self.transport.peer_key(link)
        if key is not None:
            return key
        return None if address is None else "host:" + _host_of(address)

    def _rate_limited(self, key: str | None) -> bool:
        horizon = time.monotonic() - self.options.auth_failure_window
        every = self._all_failures
        while every and every[0] < horizon:
            every.popleft()
        if key is None:
            return False
        cap = _GLOBAL_FAILURES_FACTOR * self.options.max_auth_failures
        if len(every) >= cap and key not in self._known_devices:
            return True
        failures = self._auth_failures.get(key)
        if not failures:
            return False
        while failures and failures[0] < horizon:
            failures.popleft()
        return len(failures) >= self.options.max_auth_failures

    def _warn(self, topic: str, message: str, *args: Any) -> None:
        """Log a warning, at most once per topic every _WARN_EVERY seconds (the rest counted)."""
        now = time.monotonic()
        last, skipped = self._warned.get(topic, (-_WARN_EVERY, 0))
        if now - last < _WARN_EVERY:
            self._warned[topic] = (last, skipped + 1)
            return
        if len(self._warned) >= _MAX_FAILING_HOSTS:
            self._warned.clear()
        self._warned[topic] = (now, 0)
        if skipped:
            message += f" (and {skipped} more like it in the last {now - last:.0f} s)"
        log.warning(message, *args)

    def _forget_failures(self, now: float) -> None:
        """Bound the table: drop hosts without a failure in the window, else the older half."""
        table = self._auth_failures
        horizon = now - self.options.auth_failure_window
        for host in [h for h, failures in table.items() if not failures or failures[-1] < horizon]:
            del table[host]
        if len(table) >= _MAX_FAILING_HOSTS:
            for host in list(table)[: len(table) // 2]:
                del table[host]

    def _on_closed(self, link: LinkId, entry: _Link, event: LinkClosed) -> None:
        self.links.pop(link, None)
        self._send_all(link, entry)
        waiting = self._pairs.on_closed(link)
        if event.auth_failed:
            self._warn(f"auth:{entry.key}", "authentication with %s failed: %s", entry.address, event.reason)
            now = time.monotonic()
            self._all_failures.append(now)
            if len(self._all_failures) > 1024:
                self._all_failures.popleft()
            if entry.key is not None:
                if entry.key not in self._auth_failures and len(self._auth_failures) >= _MAX_FAILING_HOSTS:
                    self._forget_failures(now)
                self._auth_failures.setdefault(entry.key, deque(maxlen=64)).append(now)
        self.transport.close_link(link, event.reason)
        peer = entry.peer
        if peer is None or self.peers.get(peer.id, (None, None))[1] != link:
            log.debug("link closed before it opened: %s", event.reason)
            return
        del self.peers[peer.id]
        with self.changed:
            self.blocked.discard(peer.id)
        self._publish()
        log.info("peer removed: %r (%s)", peer, event.reason)
        if self.store is not None:
            try:
                self.store.peer_removed(peer)
            except Exception:
                log.exception("the store failed on peer_removed")
        if self.files is not None:
            try:
                self.files.peer_removed(peer)
                self.wake_files()
            except Exception:
                log.exception("file transfers failed on peer_removed")
        if self.presence is not None:
            self.presence.peer_removed(peer)  # its presence_changed(peer, None) comes first
        self.runtime.dispatch(_call_owner, self._owner, "peer_removed", peer)
        for other in waiting:  # the peer's link ended: links held for it are judged again
            held = self.links.get(other)
            hello = held.session.remote_hello if held is not None else None
            if held is not None and hello is not None and not held.session.accepted_locally:
                self._on_hello(other, held, hello)
                self._pump(other)

    def _on_message(self, entry: _Link, event: MessageReceived) -> None:
        peer = entry.peer
        if peer is None:
            return
        if event.kind == _APP:
            if len(event.payload) > self.options.max_message_size:
                log.warning(
                    "dropping a %d-byte message from %r: over max_message_size",
                    len(event.payload),
                    peer,
                )
                return
            # Collected and handed to the dispatcher as one batch when the pump's events are
            # done (or an event of another kind comes): one queue item and one lock per batch.
            if self._app_batch_peer is not peer:
                if self._app_batch:
                    self._dispatch_apps()
                self._app_batch_peer = peer
            self._app_batch.append(event.payload)
        elif event.kind == Kind.PRESENCE and self.presence is not None:
            self.presence.message(peer, event.payload, event.reliable)
        elif event.kind == Kind.STORE and self.store is not None:
            try:
                self.store.message(peer, event.payload)
            except Exception:
                log.exception("the store failed on a message from %r", peer)
        elif event.kind == Kind.FILE and self.files is not None:
            try:
                self.files.message(peer, event.payload)
                self.wake_files()
            except Exception:
                log.exception("file transfers failed on a message from %r", peer)

    def _dispatch_apps(self) -> None:
        """Hand the collected application messages of one peer to the dispatcher; push back
        (stop reading its link) while APP_QUEUE_LIMIT or more of its messages wait there."""
        peer, payloads = self._app_batch_peer, self._app_batch
        self._app_batch = []
        self._app_batch_peer = None
        if peer is None or not payloads:
            return
        link: LinkId | None = None
        with self._app_lock:
            queued = self._app_queued[peer.id] = self._app_queued.get(peer.id, 0) + len(payloads)
            pause = queued >= APP_QUEUE_LIMIT and peer.id not in self._app_paused
            if pause:
                link = self.peers[peer.id][1] if peer.id in self.peers else None
                if link is not None:
                    self._app_paused[peer.id] = link
                else:
                    pause = False
        if len(payloads) == 1:
            self.runtime.dispatch(_deliver_app, self._owner, peer, payloads[0], self)
        else:
            self.runtime.dispatch(_deliver_apps, self._owner, peer, payloads, self)
        if pause and link is not None:
            # ``link`` from under the lock: the dispatcher may already have drained the queue
            # and removed the _app_paused entry (its resume is posted, so it runs after this).
            self.transport.pause_reading(link, True)

    def _publish(self) -> None:
        with self.changed:
            self.peers_snapshot = tuple(peer for peer, _ in self.peers.values())
            self.changed.notify_all()

    def _arm(self, at: float) -> None:
        """Make sure the timer fires no later than ``at`` (time.monotonic())."""
        now = time.monotonic()
        # A floor of MIN_TICK keeps a deadline that is already due from spinning the loop.
        delay = max(MIN_TICK, at - now)
        # Compare with when the timer would really fire: re-arming a due deadline MIN_TICK from
        # now on every frame would push the tick forever while frames keep coming (every ms),
        # and no heartbeat would go out (the peer then drops us as silent).
        if self._closed or (self._tick_at is not None and self._tick_at <= now + delay):
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._tick_at = now + delay
        self._tick_handle = self.runtime.loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        """Run the timers that are due (sessions, file transfers); re-arm for the next deadline."""
        due = self._tick_at
        self._tick_handle = self._tick_at = None
        if self._closed:
            return
        now = time.monotonic()
        if due is not None and now - due > STALL and not self._stalled:
            # This loop was blocked (a long callback, a garbage-collection pause): frames that
            # arrived meanwhile are still unread, so judging a peer silent now would be judging
            # our own deafness. Read first; the timers run right after.
            self._stalled = True
            self._tick_at = now + MIN_TICK
            self._tick_handle = self.runtime.loop.call_later(MIN_TICK, self._tick)
            return
        self._stalled = False
        try:
            for link in list(self.links):
                entry = self.links.get(link)
                if entry is None:
                    continue
                try:
                    self._check_stall(link, entry, now)
                    if self.links.get(link) is not entry:
                        continue
                    deadline = entry.session.next_deadline()
                    if deadline is not None and deadline <= now:
                        entry.session.handle_timer(now)
                    self._pump(link)
                except Exception:
                    log.exception("the timer failed on a link; the other links' timers go on")
            if self.files is not None:
                try:
                    self.files.tick(now)
                except Exception:
                    log.exception("file transfers failed on a timer")
        finally:
            # Re-armed from every deadline, not only from the pumps above: a link whose reading
            # is paused gets no other pump, and its heartbeats must still go out.
            self._arm_all(now)

    def _arm_all(self, now: float) -> None:
        """Arm the timer for the earliest deadline of every link and of the file transfers."""
        earliest: float | None = None
        for entry in self.links.values():
            deadline = entry.session.next_deadline()
            if entry.watch is not None:
                sample = entry.watch.next_deadline()
                if sample is not None and (deadline is None or sample < deadline):
                    deadline = sample
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        if self.files is not None:
            try:
                deadline = self.files.next_deadline(now)
            except Exception:
                log.exception("file transfers failed on a timer")
                deadline = now + 1.0
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        if earliest is not None:
            self._arm(earliest)

    def wake_files(self) -> None:
        """A file transfer started or changed: make sure its timers run."""
        if self.files is not None:
            deadline = self.files.next_deadline(time.monotonic())
            if deadline is not None:
                self._arm(deadline)


def _host_of(address: str) -> str:
    """The host part of 'host:port', '[v6]:port' or an opaque address (for rate limits)."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    if address.count(":") == 1:
        return address.split(":", 1)[0]
    return address


def _make_store(
    node: Node, engine: str | None, data_dir: str | os.PathLike[str] | None = None, durable: bool = False
) -> StoreHook:
    from ._store import StoreManager  # imported on start: the store loads its engine lazily

    manager: StoreHook = StoreManager(NodeStoreHost(node), engine=engine, data_dir=data_dir, durable=durable)
    return manager


# Dispatcher-thread helpers: they hold the owner only weakly, so that an abandoned
# MultipeerConnectivity object can be garbage-collected (and then shut down by its finalizer).


def _call_owner(owner_ref: weakref.ref[Any], method: str, *args: Any) -> None:
    owner = owner_ref()
    if owner is not None:
        getattr(owner, method)(*args)


def _deliver_app(owner_ref: weakref.ref[Any], peer: PeerID, payload: bytes, node: Node | None = None) -> None:
    try:
        owner = owner_ref()
        if owner is None:
            return
        try:
            message = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            log.warning("dropping a message from %r that is not UTF-8 JSON", peer)
            return
        owner.receive(message, peer)
    finally:
        if node is not None:
            node.app_consumed(peer.id)


def _deliver_apps(owner_ref: weakref.ref[Any], peer: PeerID, payloads: list[bytes], node: Node) -> None:
    """Several application messages of one peer, in order (one dispatcher item)."""
    try:
        for payload in payloads:
            try:
                _deliver_app(owner_ref, peer, payload)
            except BaseException:  # as the dispatcher does per item: the next message still goes
                log.exception("error in an mpstore callback (receive)")
    finally:
        node.app_consumed(peer.id, len(payloads))


def _ask_accept(
    owner_ref: weakref.ref[Any], runtime: Runtime, node: Node, link: LinkId, peer: PeerID
) -> None:
    owner = owner_ref()
    accepted = False
    if owner is not None:
        try:
            accepted = bool(owner.accept_peer(peer))
        except Exception:
            log.exception("accept_peer raised; refusing %r", peer)
    if not runtime.closed:
        try:
            runtime.post(node.decide, link, peer.id, accepted)
        except Exception:
            pass


Callback = Callable[..., None]


class NodeStoreHost:
    """The core's side of the store seam (see ``mpstore/_store.py``)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.runtime = node.runtime

    def call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn`` on the core thread and return its result."""
        return self.runtime.call(fn, timeout=timeout)

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the core thread soon."""
        self.runtime.post(fn)

    def dispatch(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the dispatcher thread, after what is already queued."""
        self.runtime.dispatch(fn)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the core thread after ``delay`` seconds (core thread)."""
        self.runtime.loop.call_later(delay, fn)

    @property
    def local_id(self) -> str:
        """This node's own peer id."""
        return self._node.my_peer.id

    def send_sync(self, peer: PeerID, payload: bytes) -> None:
        """Send one store message reliably to a connected peer (core thread)."""
        self._node.send_to_peer(peer, Kind.STORE, payload)

    def connected_peers(self) -> list[PeerID]:
        """The connected peers, in join order (core thread)."""
        return self._node.connected_peers()

    def anchor(self, obj: object) -> Callable[[], None]:
        """Keep ``obj`` alive as long as the user's object, not longer; return its release."""
        owner_ref = self._node._owner
        anchors: dict[int, object] | None = getattr(owner_ref(), "_anchors", None)
        if anchors is None:
            return lambda: None
        key = id(obj)
        anchors[key] = obj

        def release() -> None:  # reaches the anchors only through the weak reference
            gone: dict[int, object] | None = getattr(owner_ref(), "_anchors", None)
            if gone is not None:
                gone.pop(key, None)

        return release

    def peer_rate(self, peer_id: str) -> float | None:
        """The message rate the peer advertised, or None (core thread)."""
        return self._node.peer_rates.get(peer_id)

    def peer_by_id(self, peer_id: str) -> PeerID | None:
        """Any peer seen so far, by id (core thread)."""
        return self._node.known.get(peer_id)

    def store_changed(self, store: Any, change: Any) -> None:
        """Invoke the owner's store_changed (dispatcher thread)."""
        owner = self._node._owner()
        if owner is not None:
            owner.store_changed(store, change)
