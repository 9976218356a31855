"""The bridge on pyobjc (``pyobjc-framework-MultipeerConnectivity``, macOS).

Delegates are ``NSObject`` subclasses declaring the framework's protocols, each method with an
explicit signature; the invitation handler arrives as a Python callable (its block signature is
registered as metadata). Callbacks copy what they need into plain values and emit at once.
"""

from __future__ import annotations

import itertools
import logging
import threading
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import MultipeerConnectivity as MC  # type: ignore[import-not-found]
import objc  # type: ignore[import-not-found]
from Foundation import NSObject  # type: ignore[import-not-found]

from .bridge import (
    ENCRYPTION_REQUIRED,
    SEND_RELIABLE,
    SEND_UNRELIABLE,
    Bridge,
    DataReceived,
    DidNotStart,
    Emit,
    Event,
    Found,
    Handles,
    Invited,
    Lost,
    StateChanged,
)

__all__ = ["PyObjCBridge"]

log = logging.getLogger("mpstore.transports.mc")

_INVITATION_SEL = b"advertiser:didReceiveInvitationFromPeer:withContext:invitationHandler:"
_classes: dict[str, Any] = {}
_classes_lock = threading.Lock()


def _fresh_name(base: str) -> str:
    # A class name may be taken by an earlier import of this module in the same process.
    for n in itertools.count(1):
        name = base if n == 1 else f"{base}{n}"
        try:
            objc.lookUpClass(name)
        except objc.nosuchclass_error:
            return name
    raise AssertionError("unreachable")


F = TypeVar("F", bound=Callable[..., None])


def _signature(signature: bytes) -> Callable[[F], F]:
    """``objc.typedSelector``, typed: the method's ObjC type encoding, stated explicitly."""
    return cast("Callable[[F], F]", objc.typedSelector(signature))


def _owner(delegate: Any) -> PyObjCBridge | None:
    ref = getattr(delegate, "_mpstore_owner", None)
    return ref() if ref is not None else None


def _define_classes() -> dict[str, Any]:
    # pyobjc calls a block only if it knows its signature. The framework wrapper ships this
    # metadata; stating it again keeps the handler callable (BOOL accept, MCSession *session)
    # whatever the wrapper's version. Index 5: self and _cmd are 0 and 1.
    objc.registerMetaDataForSelector(
        b"NSObject",
        _INVITATION_SEL,
        {
            "arguments": {
                5: {
                    "type": b"@?",
                    "callable": {
                        "retval": {"type": b"v"},
                        "arguments": {0: {"type": b"^v"}, 1: {"type": b"Z"}, 2: {"type": b"@"}},
                    },
                }
            }
        },
    )

    def session_body(ns: dict[str, Any]) -> None:
        @_signature(b"v@:@@q")
        def session_peer_didChangeState_(self: Any, session: Any, peer: Any, state: int) -> None:
            o = _owner(self)
            if o is not None:
                o._on_state(session, peer, state)

        @_signature(b"v@:@@@")
        def session_didReceiveData_fromPeer_(self: Any, session: Any, data: Any, peer: Any) -> None:
            o = _owner(self)
            if o is not None:
                o._on_data(session, data, peer)

        @_signature(b"v@:@@@@")
        def session_didReceiveStream_withName_fromPeer_(
            self: Any, session: Any, stream: Any, name: Any, peer: Any
        ) -> None:
            pass  # we never open streams; a peer that does gets nothing

        @_signature(b"v@:@@@@")
        def session_didStartReceivingResourceWithName_fromPeer_withProgress_(
            self: Any, session: Any, name: Any, peer: Any, progress: Any
        ) -> None:
            pass  # required by the protocol; we never send resources

        @_signature(b"v@:@@@@@")
        def session_didFinishReceivingResourceWithName_fromPeer_atURL_withError_(
            self: Any, session: Any, name: Any, peer: Any, url: Any, error: Any
        ) -> None:
            pass

        ns.update({k: v for k, v in locals().items() if k.startswith("session_")})

    def browser_body(ns: dict[str, Any]) -> None:
        @_signature(b"v@:@@@")
        def browser_foundPeer_withDiscoveryInfo_(self: Any, browser: Any, peer: Any, info: Any) -> None:
            o = _owner(self)
            if o is not None:
                o._on_found(peer, info)

        @_signature(b"v@:@@")
        def browser_lostPeer_(self: Any, browser: Any, peer: Any) -> None:
            o = _owner(self)
            if o is not None:
                o._on_lost(peer)

        @_signature(b"v@:@@")
        def browser_didNotStartBrowsingForPeers_(self: Any, browser: Any, error: Any) -> None:
            o = _owner(self)
            if o is not None:
                o._on_not_started("browser", error)

        ns.update({k: v for k, v in locals().items() if k.startswith("browser_")})

    def advertiser_body(ns: dict[str, Any]) -> None:
        @_signature(b"v@:@@@@?")
        def advertiser_didReceiveInvitationFromPeer_withContext_invitationHandler_(
            self: Any, advertiser: Any, peer: Any, context: Any, handler: Any
        ) -> None:
            o = _owner(self)
            if o is not None:
                o._on_invitation(advertiser, peer, context, handler)
            elif callable(handler):
                handler(False, None)

        @_signature(b"v@:@@")
        def advertiser_didNotStartAdvertisingPeer_(self: Any, advertiser: Any, error: Any) -> None:
            o = _owner(self)
            if o is not None:
                o._on_not_started("advertiser", error)

        ns.update({k: v for k, v in locals().items() if k.startswith("advertiser_")})

    made = {}
    for key, base, proto, body in (
        ("session", "MpstoreMCSessionDelegate", "MCSessionDelegate", session_body),
        ("browser", "MpstoreMCBrowserDelegate", "MCNearbyServiceBrowserDelegate", browser_body),
        ("advertiser", "MpstoreMCAdvertiserDelegate", "MCNearbyServiceAdvertiserDelegate", advertiser_body),
    ):
        made[key] = types.new_class(
            _fresh_name(base),
            (NSObject,),
            {"protocols": [objc.protocolNamed(proto)]},
            body,
        )
    return made


def delegate_classes() -> dict[str, Any]:
    """The three delegate classes, defined once per import of this module."""
    with _classes_lock:
        if not _classes:
            _classes.update(_define_classes())
        return _classes


def _error_text(error: Any) -> str:
    if error is None:
        return "unknown error"
    return f"{error.domain()} {int(error.code())}: {error.localizedDescription()}"


class PyObjCBridge(Bridge):
    """Multipeer Connectivity through pyobjc."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._emit: Emit | None = None
        self._me: Any = None
        self._name = ""
        self._type = ""
        self._peers: Handles[Any] = Handles(
            key=lambda p: int(p.hash()), same=lambda a, b: bool(a.isEqual_(b))
        )
        self._sessions: dict[int, Any] = {}
        self._session_ids: dict[int, int] = {}
        self._next_session = itertools.count(1)
        self._invitations: dict[int, Any] = {}
        self._invited_as: dict[int, Any] = {}  # invitation -> the MCPeerID it was addressed to
        self._next_invitation = itertools.count(1)
        self._delegates: dict[str, Any] = {}
        self._advertiser: Any = None
        self._browser: Any = None
        self._retired: list[Any] = []  # stopped advertisers and browsers
        self._closed = False

    # ---------------------------------------------------------------- operations
    def open(self, display_name: str, service_type: str, emit: Emit) -> None:
        classes = delegate_classes()
        self._emit = emit
        self._type = service_type
        self._name = display_name
        self._me = MC.MCPeerID.alloc().initWithDisplayName_(display_name)
        for key, cls in classes.items():
            d = cls.alloc().init()
            d._mpstore_owner = weakref.ref(self)
            self._delegates[key] = d

    def renew_identity(self) -> None:
        self._me = MC.MCPeerID.alloc().initWithDisplayName_(self._name)

    def new_session(self, invitation: int | None = None) -> int:
        with self._lock:
            me = self._invited_as.get(invitation, self._me) if invitation else self._me
        s = MC.MCSession.alloc().initWithPeer_securityIdentity_encryptionPreference_(
            me, None, ENCRYPTION_REQUIRED
        )
        s.setDelegate_(self._delegates["session"])
        with self._lock:
            h = next(self._next_session)
            self._sessions[h] = s
            self._session_ids[id(s)] = h
        return h

    def advertise(self, info: Mapping[str, str]) -> None:
        self.stop_advertising()
        adv = MC.MCNearbyServiceAdvertiser.alloc().initWithPeer_discoveryInfo_serviceType_(
            self._me, dict(info), self._type
        )
        adv.setDelegate_(self._delegates["advertiser"])
        self._advertiser = adv
        adv.startAdvertisingPeer()

    def stop_advertising(self) -> None:
        adv, self._advertiser = self._advertiser, None
        if adv is not None:
            # Kept with its delegate until close: an invitation already on its way must still
            # be answered, and the framework must never see a freed delegate.
            adv.stopAdvertisingPeer()
            self._retired.append(adv)

    def browse(self) -> None:
        self.stop_browsing()
        b = MC.MCNearbyServiceBrowser.alloc().initWithPeer_serviceType_(self._me, self._type)
        b.setDelegate_(self._delegates["browser"])
        self._browser = b
        b.startBrowsingForPeers()

    def stop_browsing(self) -> None:
        b, self._browser = self._browser, None
        if b is not None:
            b.stopBrowsingForPeers()
            self._retired.append(b)

    def invite(self, peer: int, session: int, context: bytes, timeout: float) -> None:
        p, s, b = self._peers.get(peer), self._sessions.get(session), self._browser
        if p is None or s is None or b is None:
            raise LookupError("invite: unknown peer or session, or not browsing")
        b.invitePeer_toSession_withContext_timeout_(p, s, bytes(context), float(timeout))

    def answer(self, invitation: int, accept: bool, session: int | None) -> None:
        with self._lock:
            handler = self._invitations.pop(invitation, None)
            self._invited_as.pop(invitation, None)
            s = self._sessions.get(session) if session is not None else None
        if handler is None:
            return
        handler(bool(accept and s is not None), s if accept else None)

    def send(self, session: int, peer: int, data: bytes, reliable: bool) -> str | None:
        s, p = self._sessions.get(session), self._peers.get(peer)
        if s is None or p is None:
            return "unknown session or peer"
        mode = SEND_RELIABLE if reliable else SEND_UNRELIABLE
        ok, error = s.sendData_toPeers_withMode_error_(data, [p], mode, None)
        return None if ok else _error_text(error)

    def disconnect(self, session: int) -> None:
        with self._lock:
            s = self._sessions.pop(session, None)
            if s is not None:
                self._session_ids.pop(id(s), None)
        if s is not None:
            s.disconnect()
            s.setDelegate_(None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            handlers = list(self._invitations.values())
            self._invitations.clear()
            self._invited_as.clear()
            sessions = list(self._sessions)
        self.stop_advertising()
        self.stop_browsing()
        for handler in handlers:
            handler(False, None)
        for h in sessions:
            self.disconnect(h)
        for obj in self._retired:
            obj.setDelegate_(None)
        self._retired.clear()
        for d in self._delegates.values():
            d._mpstore_owner = None
        self._delegates.clear()
        self._peers.clear()
        self._me = None

    # ---------------------------------------------------------------- callbacks (framework queue)
    def _send_event(self, event: Event) -> None:
        emit = self._emit
        if emit is not None and not self._closed:
            emit(event)

    def _session_handle(self, session: Any) -> int | None:
        with self._lock:
            return self._session_ids.get(id(session))

    def _on_state(self, session: Any, peer: Any, state: int) -> None:
        try:
            h = self._session_handle(session)
            if h is not None:
                self._send_event(StateChanged(h, self._peers.handle(peer), int(state)))
        except Exception:
            log.exception("mc: session state callback failed")

    def _on_data(self, session: Any, data: Any, peer: Any) -> None:
        try:
            h = self._session_handle(session)
            if h is not None:
                self._send_event(DataReceived(h, self._peers.handle(peer), bytes(data)))
        except Exception:
            log.exception("mc: data callback failed")

    def _on_found(self, peer: Any, info: Any) -> None:
        try:
            plain = {str(k): str(v) for k, v in dict(info or {}).items()}
            self._send_event(Found(self._peers.handle(peer), str(peer.displayName()), plain))
        except Exception:
            log.exception("mc: found callback failed")

    def _on_lost(self, peer: Any) -> None:
        try:
            self._send_event(Lost(self._peers.handle(peer)))
        except Exception:
            log.exception("mc: lost callback failed")

    def _on_not_started(self, role: str, error: Any) -> None:
        try:
            self._send_event(
                DidNotStart(role, str(error.domain()), int(error.code()), str(error.localizedDescription()))
            )
        except Exception:
            log.exception("mc: did-not-start callback failed")

    def _on_invitation(self, advertiser: Any, peer: Any, context: Any, handler: Any) -> None:
        try:
            if not callable(handler):
                log.error("mc: the invitation handler block is not callable (pyobjc metadata?)")
                return
            with self._lock:
                if self._closed:
                    closed = True
                else:
                    closed = False
                    inv = next(self._next_invitation)
                    self._invitations[inv] = handler
                    self._invited_as[inv] = advertiser.myPeerID()
            if closed:
                handler(False, None)
                return
            ctx = bytes(context) if context is not None else b""
            self._send_event(Invited(inv, self._peers.handle(peer), str(peer.displayName()), ctx))
        except Exception:
            log.exception("mc: invitation callback failed")
