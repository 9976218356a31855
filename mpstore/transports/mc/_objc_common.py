"""What the objc_util and pyobjc adapters share: the bookkeeping of one Multipeer Connectivity
bridge, written once over a handful of per-library hooks.

The two libraries differ only in how an ObjC object is made and handed over: objc_util gives
callbacks raw pointers and calls blocks through the block ABI; pyobjc gives objects and callable
blocks. Everything else (handles, sessions, invitations, retired advertisers and browsers, the
order of teardown, the events) lives here.
"""

from __future__ import annotations

import abc
import itertools
import logging
import threading
from collections.abc import Mapping
from typing import Any

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

__all__ = ["ObjCBridgeBase"]

log = logging.getLogger("mpstore.mc")


class ObjCBridgeBase(Bridge):
    """A :class:`Bridge` over Multipeer Connectivity; subclasses supply the library hooks."""

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
        self._session_keys: dict[Any, int] = {}  # _session_key(session) -> handle
        self._next_session = itertools.count(1)
        self._invitations: dict[int, Any] = {}  # handle -> the kept invitation handler
        self._invited_as: dict[int, Any] = {}  # handle -> the MCPeerID it was addressed to
        self._next_invitation = itertools.count(1)
        self._delegates: dict[str, Any] = {}
        self._advertiser: Any = None
        self._browser: Any = None
        self._retired: list[Any] = []  # stopped advertisers and browsers
        self._closed = False

    # ---------------------------------------------------------------- library hooks
    @abc.abstractmethod
    def _delegate_classes(self) -> Mapping[str, Any]:
        """The session, browser and advertiser delegate classes."""

    @abc.abstractmethod
    def _bind_delegate(self, delegate: Any) -> None:
        """Route the delegate's callbacks to this bridge (held weakly)."""

    @abc.abstractmethod
    def _unbind_delegate(self, delegate: Any) -> None:
        """Stop routing the delegate's callbacks here."""

    @abc.abstractmethod
    def _make(self, class_name: str, init: str, *args: Any) -> Any:
        """``[[class_name alloc] init...]``, owned by the returned object alone."""

    @abc.abstractmethod
    def _ns(self, value: Any) -> Any:
        """A Python bytes/list/dict as the Foundation object the framework takes."""

    @abc.abstractmethod
    def _send_data(self, session: Any, peer: Any, data: bytes, mode: int) -> str | None:
        """``sendData:toPeers:withMode:error:``; None, or the error as text."""

    @abc.abstractmethod
    def _session_key(self, session: Any) -> Any:
        """What identifies a session object, the same for the object and a callback's argument."""

    def _session_arg_key(self, session: Any) -> Any:
        """The key of a session passed to a callback (by default: of the object it names)."""
        return self._session_key(self._obj(session))

    @abc.abstractmethod
    def _obj(self, ref: Any) -> Any:
        """A callback's object argument as an object (objc_util passes pointers)."""

    @abc.abstractmethod
    def _bytes(self, data: Any) -> bytes:
        """An NSData callback argument as bytes."""

    @abc.abstractmethod
    def _info(self, info: Any) -> dict[str, str]:
        """A discovery-info NSDictionary (or nil) as a plain dict."""

    @abc.abstractmethod
    def _keep_handler(self, handler: Any) -> Any:
        """Keep an invitation handler block beyond the callback; None if it cannot be called."""

    @abc.abstractmethod
    def _call_handler(self, handler: Any, accept: bool, session: Any | None) -> None:
        """Answer a kept invitation handler once, then let it go."""

    # ---------------------------------------------------------------- operations
    def open(self, display_name: str, service_type: str, emit: Emit) -> None:
        classes = self._delegate_classes()
        self._emit, self._name, self._type = emit, display_name, service_type
        self._me = self._new_peer_id()
        for key, cls in classes.items():
            d = cls.alloc().init()
            self._adopt_delegate(d)
            self._bind_delegate(d)
            self._delegates[key] = d

    def _adopt_delegate(self, delegate: Any) -> None:
        """Take ownership of a freshly made delegate (objc_util balances the alloc here)."""

    def _new_peer_id(self) -> Any:
        return self._make("MCPeerID", "initWithDisplayName_", self._name)

    def renew_identity(self) -> None:
        self._me = self._new_peer_id()

    def new_session(self, invitation: int | None = None) -> int:
        with self._lock:
            me = self._invited_as.get(invitation, self._me) if invitation else self._me
        s = self._make(
            "MCSession", "initWithPeer_securityIdentity_encryptionPreference_", me, None, ENCRYPTION_REQUIRED
        )
        s.setDelegate_(self._delegates["session"])
        with self._lock:
            h = next(self._next_session)
            self._sessions[h] = s
            self._session_keys[self._session_key(s)] = h
        return h

    def advertise(self, info: Mapping[str, str]) -> None:
        self.stop_advertising()
        adv = self._make(
            "MCNearbyServiceAdvertiser",
            "initWithPeer_discoveryInfo_serviceType_",
            self._me,
            self._ns(dict(info)),
            self._type,
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
        b = self._make("MCNearbyServiceBrowser", "initWithPeer_serviceType_", self._me, self._type)
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
        b.invitePeer_toSession_withContext_timeout_(p, s, self._ns(bytes(context)), float(timeout))

    def answer(self, invitation: int, accept: bool, session: int | None) -> None:
        with self._lock:
            handler = self._invitations.pop(invitation, None)
            self._invited_as.pop(invitation, None)
            s = self._sessions.get(session) if session is not None else None
        if handler is not None:
            self._call_handler(handler, accept and s is not None, s if accept else None)

    def send(self, session: int, peer: int, data: bytes, reliable: bool) -> str | None:
        s, p = self._sessions.get(session), self._peers.get(peer)
        if s is None or p is None:
            return "unknown session or peer"
        return self._send_data(s, p, data, SEND_RELIABLE if reliable else SEND_UNRELIABLE)

    def disconnect(self, session: int) -> None:
        with self._lock:
            s = self._sessions.pop(session, None)
            if s is not None:
                self._session_keys.pop(self._session_key(s), None)
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
            self._call_handler(handler, False, None)
        for h in sessions:
            self.disconnect(h)
        for obj in self._retired:
            obj.setDelegate_(None)
        self._retired.clear()
        for d in self._delegates.values():
            self._unbind_delegate(d)
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
            return self._session_keys.get(self._session_arg_key(session))

    def _on_state(self, session: Any, peer: Any, state: int) -> None:
        try:
            h = self._session_handle(session)
            if h is not None:
                self._send_event(StateChanged(h, self._peers.handle(self._obj(peer)), int(state)))
        except Exception:
            log.exception("mc: session state callback failed")

    def _on_data(self, session: Any, data: Any, peer: Any) -> None:
        try:
            h = self._session_handle(session)
            if h is not None:
                self._send_event(DataReceived(h, self._peers.handle(self._obj(peer)), self._bytes(data)))
        except Exception:
            log.exception("mc: data callback failed")

    def _on_found(self, peer: Any, info: Any) -> None:
        try:
            p = self._obj(peer)
            self._send_event(Found(self._peers.handle(p), str(p.displayName()), self._info(info)))
        except Exception:
            log.exception("mc: found callback failed")

    def _on_lost(self, peer: Any) -> None:
        try:
            self._send_event(Lost(self._peers.handle(self._obj(peer))))
        except Exception:
            log.exception("mc: lost callback failed")

    def _on_not_started(self, role: str, error: Any) -> None:
        try:
            e = self._obj(error)
            self._send_event(DidNotStart(role, str(e.domain()), int(e.code()), str(e.localizedDescription())))
        except Exception:
            log.exception("mc: did-not-start callback failed")

    def _on_invitation(self, advertiser: Any, peer: Any, context: Any, handler: Any) -> None:
        try:
            kept = self._keep_handler(handler)  # the handler outlives this call
            if kept is None:
                log.error("mc: the invitation handler block cannot be called")
                return
            with self._lock:
                closed = self._closed
                if not closed:
                    inv = next(self._next_invitation)
                    self._invitations[inv] = kept
                    self._invited_as[inv] = self._obj(advertiser).myPeerID()
            if closed:
                self._call_handler(kept, False, None)
                return
            ctx = self._bytes(context) if context else b""
            p = self._obj(peer)
            self._send_event(Invited(inv, self._peers.handle(p), str(p.displayName()), ctx))
        except Exception:
            log.exception("mc: invitation callback failed")
