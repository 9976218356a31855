"""An in-process simulation of Apple's Multipeer Connectivity, following its documented behaviour.

Several simulated devices (one per local ``MCPeerID``) live in one :class:`World`. Every
delegate call is made on the world's own thread (the "framework queue"), never on the caller's.
The surface is pyobjc-shaped (``initWithDisplayName_``, Python callables for blocks, ``(ok,
error)`` tuples for ``NSError**``); ``fake_pyobjc`` exposes it as-is and ``fake_objc_util`` puts
pointers, type encodings and the block ABI in front of it.

What it models: discovery with info (found/lost, found again when browsing restarts), invitations
with context and timeout, the handler block that must be called exactly once, declines, both
sides inviting each other at once (both attempts fail, as reported in the field), injected
Connecting -> NotConnected failures, reliable in-order delivery, unreliable loss, the 8-peer
session limit, a device going to the background (silent: nobody is told), weak delegates,
required delegate selectors, and NSNetServices error -72008 for undeclared service types.
"""

from __future__ import annotations

import heapq
import itertools
import random
import re
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

NOT_CONNECTED, CONNECTING, CONNECTED = 0, 1, 2
RELIABLE, UNRELIABLE = 0, 1
MAX_PEERS = 8
MC_ERROR_DOMAIN = "MCErrorDomain"
NETSERVICES_DOMAIN = "NSNetServicesErrorDomain"

#: Apple's type encodings for the delegate methods (arm64), keyed by selector.
DELEGATE_ENCODINGS = {
    "session:peer:didChangeState:": "v@:@@q",
    "session:didReceiveData:fromPeer:": "v@:@@@",
    "session:didReceiveStream:withName:fromPeer:": "v@:@@@@",
    "session:didStartReceivingResourceWithName:fromPeer:withProgress:": "v@:@@@@",
    "session:didFinishReceivingResourceWithName:fromPeer:atURL:withError:": "v@:@@@@@",
    "session:didReceiveCertificate:fromPeer:certificateHandler:": "v@:@@@@?",
    "browser:foundPeer:withDiscoveryInfo:": "v@:@@@",
    "browser:lostPeer:": "v@:@@",
    "browser:didNotStartBrowsingForPeers:": "v@:@@",
    "advertiser:didReceiveInvitationFromPeer:withContext:invitationHandler:": "v@:@@@@?",
    "advertiser:didNotStartAdvertisingPeer:": "v@:@@",
}
REQUIRED_SESSION_SELECTORS = (
    "session:peer:didChangeState:",
    "session:didReceiveData:fromPeer:",
    "session:didReceiveStream:withName:fromPeer:",
    "session:didStartReceivingResourceWithName:fromPeer:withProgress:",
    "session:didFinishReceivingResourceWithName:fromPeer:atURL:withError:",
)
_SERVICE_RE = re.compile(r"^(?=.*[a-z])[a-z0-9](?:[a-z0-9]|-(?!-))*$")


class SimCrash(Exception):
    """What would terminate the app on a device (an ObjC exception, a bad block call)."""


def pyname(selector: str) -> str:
    """The Python method name of a selector."""
    return selector.replace(":", "_")


# ---------------------------------------------------------------- Foundation-like values


class NSData:
    """Immutable bytes, as the framework hands them out."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)

    def __bytes__(self) -> bytes:
        return self._data

    def length(self) -> int:
        return len(self._data)

    @classmethod
    def dataWithBytes_length_(cls, data: bytes, length: int) -> NSData:
        return cls(bytes(data)[:length])


class NSError:
    """An error with a domain and code."""

    def __init__(self, domain: str, code: int, description: str) -> None:
        self._domain, self._code, self._description = domain, code, description

    def domain(self) -> str:
        return self._domain

    def code(self) -> int:
        return self._code

    def localizedDescription(self) -> str:
        return self._description


class _SimObject:
    @classmethod
    def alloc(cls) -> Any:
        return cls.__new__(cls)

    def respondsToSelector_(self, selector: str) -> bool:
        return callable(getattr(type(self), pyname(selector), None))


def world() -> World:
    """The current world (tests install one with the ``mc_world`` fixture)."""
    if World.current is None:
        raise SimCrash("no simulated world is installed")
    return World.current


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, NSData):
        return bytes(data)
    raise SimCrash(f"expected NSData, got {type(data).__name__}")


# ---------------------------------------------------------------- the framework's classes


class MCPeerID(_SimObject):
    """A peer; copies handed to other devices are distinct objects that compare equal."""

    _uids = itertools.count(1)

    def initWithDisplayName_(self, name: Any) -> MCPeerID:
        if not isinstance(name, str) or not name or len(name.encode("utf-8")) > 63:
            raise SimCrash(f"NSInvalidArgumentException: invalid displayName {name!r}")
        self._uid = next(MCPeerID._uids)
        self._name = name
        world().register_peer(self)
        return self

    def displayName(self) -> str:
        return self._name

    def hash(self) -> int:
        return (self._uid * 2654435761) & 0xFFFFFFFFFFFF

    def isEqual_(self, other: Any) -> bool:
        return isinstance(other, MCPeerID) and other._uid == self._uid

    def __eq__(self, other: object) -> bool:
        return self.isEqual_(other)

    def __hash__(self) -> int:
        return self.hash()

    def copy_(self) -> MCPeerID:
        other = MCPeerID.__new__(MCPeerID)
        other._uid, other._name = self._uid, self._name
        return other

    def __repr__(self) -> str:
        return f"<MCPeerID {self._name!r} #{self._uid}>"


class _Delegating(_SimObject):
    _delegate_ref: Callable[[], Any] | None = None

    def setDelegate_(self, delegate: Any) -> None:
        # The framework's delegate properties are weak.
        self._delegate_ref = weakref.ref(delegate) if delegate is not None else None

    def delegate(self) -> Any:
        return self._delegate_ref() if self._delegate_ref is not None else None


class MCSession(_Delegating):
    """A session; at most 8 peers including the local one."""

    def initWithPeer_(self, peer: MCPeerID) -> MCSession:
        return self.initWithPeer_securityIdentity_encryptionPreference_(peer, None, 1)

    def initWithPeer_securityIdentity_encryptionPreference_(
        self, peer: Any, identity: Any, preference: int
    ) -> MCSession:
        if not isinstance(peer, MCPeerID):
            raise SimCrash("MCSession needs an MCPeerID")
        self._peer = peer
        self._preference = int(preference)
        self._identity = identity
        self._links: dict[int, MCSession] = {}
        self._connecting: set[int] = set()
        self._closed = False
        world().sessions.append(self)
        return self

    def setDelegate_(self, delegate: Any) -> None:
        if delegate is not None:
            for sel in REQUIRED_SESSION_SELECTORS:
                if not delegate.respondsToSelector_(sel):
                    world().crash(f"unrecognized selector {sel} (required by MCSessionDelegate)")
        super().setDelegate_(delegate)

    def myPeerID(self) -> MCPeerID:
        return self._peer

    def encryptionPreference(self) -> int:
        return self._preference

    def connectedPeers(self) -> list[MCPeerID]:
        w = world()
        with w.lock:
            return [w.peers[uid].copy_() for uid in self._links]

    def occupancy(self) -> int:
        return 1 + len(self._links) + len(self._connecting)

    def sendData_toPeers_withMode_error_(
        self, data: Any, peers: Any, mode: int, error: Any
    ) -> tuple[bool, NSError | None]:
        if error is not None:
            raise SimCrash("pyobjc passes None for an NSError** output")
        err = self.send(_as_bytes(data), list(peers), int(mode))
        return err is None, err

    def send(self, data: bytes, peers: list[Any], mode: int) -> NSError | None:
        """Send to connected peers; None or the error the framework would return."""
        w = world()
        with w.lock:
            if mode not in (RELIABLE, UNRELIABLE):
                return NSError(MC_ERROR_DOMAIN, 2, "invalid mode")
            targets = []
            for p in peers:
                if not isinstance(p, MCPeerID):
                    raise SimCrash(f"toPeers contains {type(p).__name__}")
                remote = self._links.get(p._uid)
                if remote is None:
                    return NSError(MC_ERROR_DOMAIN, 1, f"Peers ({p._name}) not connected")
                targets.append(remote)
            w.sent_frames += len(targets)
            for remote in targets:
                if mode == UNRELIABLE and w.rng.random() < w.unreliable_loss:
                    w.dropped_frames += 1
                    continue
                jitter = w.rng.random() * w.latency if mode == UNRELIABLE else 0.0
                w.deliver(
                    remote,
                    "session:didReceiveData:fromPeer:",
                    (remote, NSData(data), self._peer.copy_()),
                    extra_delay=jitter,
                    from_uid=self._peer._uid,
                )
            return None

    def disconnect(self) -> None:
        w = world()
        with w.lock:
            self._closed = True
            for uid, remote in list(self._links.items()):
                del self._links[uid]
                remote._links.pop(self._peer._uid, None)
                w.deliver(remote, "session:peer:didChangeState:", (remote, self._peer.copy_(), NOT_CONNECTED))
                w.deliver(self, "session:peer:didChangeState:", (self, w.peers[uid].copy_(), NOT_CONNECTED))
            for attempt in list(w.attempts):
                if attempt.inviter_session is self or attempt.invitee_session is self:
                    w.fail_attempt(attempt, "disconnected")


class _Attempt:
    """One invitation and the connection it may become."""

    def __init__(self, inviter_session: MCSession, invitee_uid: int, context: bytes) -> None:
        self.inviter_session = inviter_session
        self.inviter_uid = inviter_session._peer._uid
        self.invitee_uid = invitee_uid
        self.context = context
        self.invitee_session: MCSession | None = None
        self.done = False


class InvitationHandler:
    """The invitationHandler block: call it exactly once with (accept, session)."""

    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt
        self.called = False
        self.undeliverable = False
        world().handlers.append(self)

    def __call__(self, accept: Any, session: Any) -> None:
        w = world()
        with w.lock:
            if self.called:
                w.crash("invitation handler called twice")
                return
            self.called = True
            a = self._attempt
            if not isinstance(accept, bool):
                w.crash(f"invitation handler got accept={accept!r}, not a BOOL")
                return
            if accept and not isinstance(session, MCSession):
                w.crash("invitation accepted without an MCSession")
                return
            if accept and session._peer._uid != a.invitee_uid:
                w.crash("invitation accepted into a session of another peer")
                return
            if a.done:
                if accept:
                    w.deliver(
                        session,
                        "session:peer:didChangeState:",
                        (session, w.peers[a.inviter_uid].copy_(), CONNECTING),
                    )
                    w.deliver(
                        session,
                        "session:peer:didChangeState:",
                        (session, w.peers[a.inviter_uid].copy_(), NOT_CONNECTED),
                    )
                return
            if not accept:
                w.fail_attempt(a, "declined")
                return
            a.invitee_session = session
            w.deliver(
                session, "session:peer:didChangeState:", (session, w.peers[a.inviter_uid].copy_(), CONNECTING)
            )
            if session.occupancy() >= MAX_PEERS:
                w.full_refusals += 1
                w.fail_attempt(a, "session full")
                return
            session._connecting.add(a.inviter_uid)
            if w.fail_next_connections > 0:
                w.fail_next_connections -= 1
                w.later(w.latency * 2, w.fail_attempt, a, "injected failure")
                return
            w.later(w.latency * 2, w.complete_attempt, a)


class MCNearbyServiceAdvertiser(_Delegating):
    """Advertises one peer with discovery info and receives invitations."""

    def initWithPeer_discoveryInfo_serviceType_(
        self, peer: Any, info: Any, service_type: Any
    ) -> MCNearbyServiceAdvertiser:
        check_service_type(service_type)
        info = dict(info or {})
        for k, v in info.items():
            if not isinstance(k, str) or not isinstance(v, str) or "=" in k:
                raise SimCrash(f"invalid discovery info entry {k!r}")
            if len(f"{k}={v}".encode()) > 255:
                raise SimCrash(f"discovery info entry {k!r} over 255 bytes")
        self._peer, self._info, self._type = peer, info, service_type
        self.running = False
        world().made.append(self)
        return self

    def myPeerID(self) -> MCPeerID:
        return self._peer

    def discoveryInfo(self) -> dict[str, str]:
        return dict(self._info)

    def startAdvertisingPeer(self) -> None:
        world().start_advertiser(self)

    def stopAdvertisingPeer(self) -> None:
        world().stop_advertiser(self)


class MCNearbyServiceBrowser(_Delegating):
    """Browses for advertisers of one service type and sends invitations."""

    def initWithPeer_serviceType_(self, peer: Any, service_type: Any) -> MCNearbyServiceBrowser:
        check_service_type(service_type)
        self._peer, self._type = peer, service_type
        self.running = False
        self.found: set[int] = set()
        world().made.append(self)
        return self

    def startBrowsingForPeers(self) -> None:
        world().start_browser(self)

    def stopBrowsingForPeers(self) -> None:
        w = world()
        with w.lock:
            self.running = False
            self.found.clear()

    def invitePeer_toSession_withContext_timeout_(
        self, peer: Any, session: Any, context: Any, timeout: float
    ) -> None:
        w = world()
        if not isinstance(peer, MCPeerID) or not isinstance(session, MCSession):
            raise SimCrash("invitePeer:toSession: needs an MCPeerID and an MCSession")
        if session._peer._uid != self._peer._uid:
            raise SimCrash("invited into a session of another peer")
        ctx = b"" if context is None else _as_bytes(context)
        w.invite(self, peer._uid, session, ctx, float(timeout) if timeout > 0 else 30.0)


def check_service_type(service_type: Any) -> None:
    """Apple's rule; the framework throws at init when it is broken."""
    if (
        not isinstance(service_type, str)
        or not 1 <= len(service_type) <= 15
        or not _SERVICE_RE.match(service_type)
        or service_type.endswith("-")
    ):
        raise SimCrash(f"NSInvalidArgumentException: invalid serviceType {service_type!r}")


# ---------------------------------------------------------------- the world


class World:
    """The radio neighbourhood and the framework's queue."""

    current: World | None = None

    def __init__(self, *, latency: float = 0.002, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self._cv = threading.Condition(self.lock)
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.latency = latency
        self.rng = random.Random(seed)
        self.unreliable_loss = 0.0
        self.declared_service_types: set[str] | None = None
        self.fail_next_connections = 0
        self.drop_invitations = False
        self.invitation_delay = 0.0
        self.crashes: list[str] = []
        self.peers: dict[int, MCPeerID] = {}
        self.sessions: list[MCSession] = []
        self.made: list[_Delegating] = []  # every advertiser and browser ever made
        self.advertisers: list[MCNearbyServiceAdvertiser] = []
        self.browsers: list[MCNearbyServiceBrowser] = []
        self.attempts: list[_Attempt] = []
        self.handlers: list[InvitationHandler] = []
        self.backgrounded: set[int] = set()
        self.invitations = 0
        self.collisions = 0
        self.full_refusals = 0
        self.sent_frames = 0
        self.dropped_frames = 0
        self.delegate_calls = 0
        self.framework_thread_ids: set[int] = set()

    # ---- lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sim-mc-framework", daemon=True)
        self._thread.start()
        World.current = self

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        if World.current is self:
            World.current = None

    def crash(self, message: str) -> None:
        self.crashes.append(message)

    def later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        with self._cv:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn, args))
            self._cv.notify()

    def _run(self) -> None:
        self.framework_thread_ids.add(threading.get_ident())
        while True:
            with self._cv:
                while not self._stopping and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else 0.5
                    self._cv.wait(max(0.0, min(wait, 0.5)))
                if self._stopping:
                    return
                _, _, fn, args = heapq.heappop(self._heap)
            try:
                fn(*args)
            except SimCrash as e:
                self.crash(str(e))
            except Exception as e:  # a bug in the code under test or in the sim
                self.crash(f"exception on the framework queue: {e!r}")

    def idle(self, timeout: float = 5.0, quiet: float = 0.1) -> None:
        """Wait (at most ``timeout``) until nothing is due in the next ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self._heap or self._heap[0][0] > time.monotonic() + quiet:
                    return
            time.sleep(0.005)

    # ---- delegate calls
    def deliver(
        self,
        obj: _Delegating,
        selector: str,
        args: tuple[Any, ...],
        *,
        extra_delay: float = 0.0,
        from_uid: int | None = None,
    ) -> None:
        """Call ``obj``'s delegate on the framework queue after the latency."""
        self.later(self.latency + extra_delay, self._call, obj, selector, args, from_uid)

    def _call(self, obj: _Delegating, selector: str, args: tuple[Any, ...], from_uid: int | None) -> None:
        own = obj._peer._uid  # type: ignore[attr-defined]
        if own in self.backgrounded or (from_uid is not None and from_uid in self.backgrounded):
            return
        state_change = selector == "session:peer:didChangeState:"
        if isinstance(obj, MCSession) and obj._closed and not state_change:
            return
        delegate = obj.delegate()
        if delegate is None:
            for arg in args:  # an invitation nobody can see is declined by the framework
                if isinstance(arg, InvitationHandler):
                    arg.undeliverable = True
            return
        required = selector in REQUIRED_SESSION_SELECTORS
        if not delegate.respondsToSelector_(selector):
            if required:
                self.crash(f"unrecognized selector {selector}")
            return
        self.delegate_calls += 1
        sim_call = getattr(delegate, "__sim_call__", None)
        if sim_call is not None:
            sim_call(selector, args)
        else:
            getattr(delegate, pyname(selector))(*args)

    # ---- discovery
    def register_peer(self, peer: MCPeerID) -> None:
        with self.lock:
            self.peers[peer._uid] = peer

    def _declared(self, service_type: str) -> bool:
        return self.declared_service_types is None or service_type in self.declared_service_types

    def _not_declared(self) -> NSError:
        return NSError(
            NETSERVICES_DOMAIN,
            -72008,
            "The operation couldn't be completed. (NSNetServicesErrorDomain error -72008.)",
        )

    def _visible(self, a: int, b: int) -> bool:
        return a != b and a not in self.backgrounded and b not in self.backgrounded

    def start_advertiser(self, adv: MCNearbyServiceAdvertiser) -> None:
        with self.lock:
            if not self._declared(adv._type):
                self.deliver(adv, "advertiser:didNotStartAdvertisingPeer:", (adv, self._not_declared()))
                return
            if adv.running:
                return
            adv.running = True
            self.advertisers.append(adv)
            for b in self.browsers:
                self._maybe_found(b, adv)

    def stop_advertiser(self, adv: MCNearbyServiceAdvertiser, *, silent: bool = False) -> None:
        with self.lock:
            if not adv.running:
                return
            adv.running = False
            self.advertisers.remove(adv)
            if silent:
                return
            uid = adv._peer._uid
            for b in self.browsers:
                if uid in b.found and not any(a._peer._uid == uid for a in self.advertisers):
                    b.found.discard(uid)
                    self.deliver(b, "browser:lostPeer:", (b, self.peers[uid].copy_()))

    def start_browser(self, b: MCNearbyServiceBrowser) -> None:
        with self.lock:
            if not self._declared(b._type):
                self.deliver(b, "browser:didNotStartBrowsingForPeers:", (b, self._not_declared()))
                return
            b.running = True
            if b not in self.browsers:
                self.browsers.append(b)
            for adv in self.advertisers:
                self._maybe_found(b, adv)

    def _maybe_found(self, b: MCNearbyServiceBrowser, adv: MCNearbyServiceAdvertiser) -> None:
        uid = adv._peer._uid
        if (
            b.running
            and adv.running
            and b._type == adv._type
            and self._visible(b._peer._uid, uid)
            and uid not in b.found
        ):
            b.found.add(uid)
            self.deliver(b, "browser:foundPeer:withDiscoveryInfo:", (b, adv._peer.copy_(), dict(adv._info)))

    # ---- invitations and connections
    def invite(
        self,
        browser: MCNearbyServiceBrowser,
        invitee_uid: int,
        session: MCSession,
        context: bytes,
        timeout: float,
    ) -> None:
        with self.lock:
            self.invitations += 1
            a = _Attempt(session, invitee_uid, context)
            self.attempts.append(a)
            if session.occupancy() >= MAX_PEERS:
                self.full_refusals += 1
                self.fail_attempt(a, "session full")
                return
            session._connecting.add(invitee_uid)
            self.deliver(
                session,
                "session:peer:didChangeState:",
                (session, self.peers[invitee_uid].copy_(), CONNECTING),
            )
            crossing = [
                o
                for o in self.attempts
                if not o.done and o.inviter_uid == invitee_uid and o.invitee_uid == a.inviter_uid
            ]
            if crossing:
                # Both sides inviting each other at once: in the field this mostly fails.
                self.collisions += 1
                for o in [*crossing, a]:
                    self.later(self.latency * 3, self.fail_attempt, o, "crossed invitations")
            target = next(
                (
                    adv
                    for adv in self.advertisers
                    if adv._peer._uid == invitee_uid and adv._type == browser._type
                ),
                None,
            )
            if target is not None and self._visible(a.inviter_uid, invitee_uid) and not self.drop_invitations:
                handler = InvitationHandler(a)
                self.deliver(
                    target,
                    "advertiser:didReceiveInvitationFromPeer:withContext:invitationHandler:",
                    (target, self.peers[a.inviter_uid].copy_(), NSData(context), handler),
                    extra_delay=self.invitation_delay,
                )
            self.later(timeout, self.fail_attempt, a, "timed out")

    def fail_attempt(self, a: _Attempt, why: str) -> None:
        with self.lock:
            if a.done:
                return
            a.done = True
            a.why = why  # type: ignore[attr-defined]
            a.inviter_session._connecting.discard(a.invitee_uid)
            self.deliver(
                a.inviter_session,
                "session:peer:didChangeState:",
                (a.inviter_session, self.peers[a.invitee_uid].copy_(), NOT_CONNECTED),
            )
            if a.invitee_session is not None:
                a.invitee_session._connecting.discard(a.inviter_uid)
                self.deliver(
                    a.invitee_session,
                    "session:peer:didChangeState:",
                    (a.invitee_session, self.peers[a.inviter_uid].copy_(), NOT_CONNECTED),
                )

    def complete_attempt(self, a: _Attempt) -> None:
        with self.lock:
            s1, s2 = a.inviter_session, a.invitee_session
            if a.done or s2 is None:
                return
            if s1._closed or s2._closed or not self._visible(a.inviter_uid, a.invitee_uid):
                self.fail_attempt(a, "gone")
                return
            a.done = True
            s1._connecting.discard(a.invitee_uid)
            s2._connecting.discard(a.inviter_uid)
            s1._links[a.invitee_uid] = s2
            s2._links[a.inviter_uid] = s1
            self.deliver(
                s2, "session:peer:didChangeState:", (s2, self.peers[a.inviter_uid].copy_(), CONNECTED)
            )
            self.deliver(
                s1, "session:peer:didChangeState:", (s1, self.peers[a.invitee_uid].copy_(), CONNECTED)
            )

    # ---- fault injection
    def uid_of(self, display_name: str) -> int:
        """The uid of the most recent local peer with this display name."""
        with self.lock:
            uids = [u for u, p in self.peers.items() if p._name == display_name]
        if not uids:
            raise KeyError(display_name)
        return max(uids)

    def background(self, display_name: str) -> None:
        """The app goes to the background: its framework stops; nobody is told."""
        uid = self.uid_of(display_name)
        with self.lock:
            self.backgrounded.add(uid)
            for adv in [a for a in self.advertisers if a._peer._uid == uid]:
                self.stop_advertiser(adv, silent=True)
            for b in self.browsers:
                if b._peer._uid == uid:
                    b.running = False
                    b.found.clear()

    def foreground(self, display_name: str) -> None:
        """The app returns: its sessions have died (it is told), the others still are not."""
        uid = self.uid_of(display_name)
        with self.lock:
            self.backgrounded.discard(uid)
            for s in self.sessions:
                if s._peer._uid == uid:
                    s._closed = True  # the other side keeps a ghost link to it
                    for ruid in list(s._links):
                        del s._links[ruid]
                        self.deliver(
                            s, "session:peer:didChangeState:", (s, self.peers[ruid].copy_(), NOT_CONNECTED)
                        )

    def unanswered(self) -> list[InvitationHandler]:
        """Invitation handlers nobody called."""
        with self.lock:
            return [h for h in self.handlers if not h.called and not h.undeliverable]
