"""The bridge on Pythonista's ``objc_util`` (iOS).

Delegate classes are made with ``create_objc_class`` under fresh names (objc_util appends a
suffix when a name is taken, so re-running a script in the same Pythonista process works); every
method states its type encoding, ``restype`` and ``argtypes`` (an NSInteger state is ``q``, not an
object). Arguments arrive as raw pointers. The invitation handler is a block pointer valid only
during the delegate call: it is ``_Block_copy``'d, later called through the block ABI (its
``invoke`` field, the block itself first) and then ``_Block_release``'d. Objects we ``alloc`` are
released once so that our ``ObjCInstance`` wrapper owns them; dropping the wrapper frees them.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from ctypes import CFUNCTYPE, POINTER, Structure, byref, c_bool, c_int, c_longlong, c_void_p
from typing import Any

import objc_util  # type: ignore[import-not-found]

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

__all__ = ["ObjCUtilBridge"]

log = logging.getLogger("mpstore.transports.mc")

_HANDLER_INVOKE = CFUNCTYPE(None, c_void_p, c_bool, c_void_p)


class _BlockLiteral(Structure):
    """The start of every block: isa, flags, reserved, invoke, descriptor."""

    _fields_ = [
        ("isa", c_void_p),
        ("flags", c_int),
        ("reserved", c_int),
        ("invoke", _HANDLER_INVOKE),
        ("descriptor", c_void_p),
    ]


_block_copy = objc_util.c._Block_copy
_block_copy.restype = c_void_p
_block_copy.argtypes = [c_void_p]
_block_release = objc_util.c._Block_release
_block_release.restype = None
_block_release.argtypes = [c_void_p]

# Delegate pointer -> the bridge it serves. Read on framework queues; written on the core thread.
_routes: dict[int, weakref.ReferenceType[ObjCUtilBridge]] = {}
_classes: dict[str, Any] = {}
_classes_lock = threading.Lock()


def _route(delegate: int | None) -> ObjCUtilBridge | None:
    ref = _routes.get(delegate or 0)
    return ref() if ref is not None else None


def _method(encoding: str, argtypes: list[Any]) -> Callable[[Callable[..., None]], Any]:
    """State a method's type encoding and ctypes types explicitly."""

    def deco(func: Callable[..., None]) -> Any:
        f: Any = func
        f.encoding = encoding
        f.restype = None
        f.argtypes = argtypes
        # objc_util counts the arguments with inspect.getargspec, which refuses annotations.
        f.__annotations__ = {}
        return f

    return deco


_P = c_void_p


def _define_classes() -> dict[str, Any]:
    @_method("v@:@@q", [_P, _P, c_longlong])
    def session_peer_didChangeState_(_self: int, _cmd: int, session: int, peer: int, state: int) -> None:
        b = _route(_self)
        if b is not None:
            b._on_state(session, peer, state)

    @_method("v@:@@@", [_P, _P, _P])
    def session_didReceiveData_fromPeer_(_self: int, _cmd: int, session: int, data: int, peer: int) -> None:
        b = _route(_self)
        if b is not None:
            b._on_data(session, data, peer)

    @_method("v@:@@@@", [_P, _P, _P, _P])
    def session_didReceiveStream_withName_fromPeer_(
        _self: int, _cmd: int, session: int, stream: int, name: int, peer: int
    ) -> None:
        pass  # we never open streams

    @_method("v@:@@@@", [_P, _P, _P, _P])
    def session_didStartReceivingResourceWithName_fromPeer_withProgress_(
        _self: int, _cmd: int, session: int, name: int, peer: int, progress: int
    ) -> None:
        pass  # required by the protocol; we never send resources

    @_method("v@:@@@@@", [_P, _P, _P, _P, _P])
    def session_didFinishReceivingResourceWithName_fromPeer_atURL_withError_(
        _self: int, _cmd: int, session: int, name: int, peer: int, url: int, error: int
    ) -> None:
        pass

    @_method("v@:@@@", [_P, _P, _P])
    def browser_foundPeer_withDiscoveryInfo_(
        _self: int, _cmd: int, browser: int, peer: int, info: int
    ) -> None:
        b = _route(_self)
        if b is not None:
            b._on_found(peer, info)

    @_method("v@:@@", [_P, _P])
    def browser_lostPeer_(_self: int, _cmd: int, browser: int, peer: int) -> None:
        b = _route(_self)
        if b is not None:
            b._on_lost(peer)

    @_method("v@:@@", [_P, _P])
    def browser_didNotStartBrowsingForPeers_(_self: int, _cmd: int, browser: int, error: int) -> None:
        b = _route(_self)
        if b is not None:
            b._on_not_started("browser", error)

    @_method("v@:@@@@?", [_P, _P, _P, _P])
    def advertiser_didReceiveInvitationFromPeer_withContext_invitationHandler_(
        _self: int, _cmd: int, advertiser: int, peer: int, context: int, handler: int
    ) -> None:
        b = _route(_self)
        if b is not None:
            b._on_invitation(advertiser, peer, context, handler)
        elif handler:
            _call_handler(handler, False, None)

    @_method("v@:@@", [_P, _P])
    def advertiser_didNotStartAdvertisingPeer_(_self: int, _cmd: int, advertiser: int, error: int) -> None:
        b = _route(_self)
        if b is not None:
            b._on_not_started("advertiser", error)

    make = objc_util.create_objc_class
    return {
        "session": make(
            "MpstoreMCSessionDelegate",
            methods=[
                session_peer_didChangeState_,
                session_didReceiveData_fromPeer_,
                session_didReceiveStream_withName_fromPeer_,
                session_didStartReceivingResourceWithName_fromPeer_withProgress_,
                session_didFinishReceivingResourceWithName_fromPeer_atURL_withError_,
            ],
            protocols=["MCSessionDelegate"],
        ),
        "browser": make(
            "MpstoreMCBrowserDelegate",
            methods=[
                browser_foundPeer_withDiscoveryInfo_,
                browser_lostPeer_,
                browser_didNotStartBrowsingForPeers_,
            ],
            protocols=["MCNearbyServiceBrowserDelegate"],
        ),
        "advertiser": make(
            "MpstoreMCAdvertiserDelegate",
            methods=[
                advertiser_didReceiveInvitationFromPeer_withContext_invitationHandler_,
                advertiser_didNotStartAdvertisingPeer_,
            ],
            protocols=["MCNearbyServiceAdvertiserDelegate"],
        ),
    }


def delegate_classes() -> dict[str, Any]:
    """The three delegate classes, made once per import of this module."""
    with _classes_lock:
        if not _classes:
            try:
                objc_util.ObjCClass("MCSession")
            except ValueError:
                objc_util.load_framework("MultipeerConnectivity")
            _classes.update(_define_classes())
        return _classes


def _call_handler(block: int, accept: bool, session: int | None) -> None:
    """Call an ``invitationHandler(BOOL, MCSession *)`` block through the block ABI."""
    literal = ctypes.cast(block, POINTER(_BlockLiteral)).contents
    literal.invoke(block, accept, session)


def _make(class_name: str, init: str, *args: Any) -> Any:
    """``[[Class alloc] init...]`` owned by the returned ObjCInstance alone.

    The wrapper retains what it wraps and releases it when collected; releasing the ``alloc``
    reference once leaves the wrapper as the only owner, so dropping it frees the object.
    """
    allocated = objc_util.ObjCClass(class_name).alloc()
    obj = getattr(allocated, init)(*args)
    if obj is allocated:  # init kept the object (true of these classes)
        obj.release()
    return obj


def _text(obj: Any) -> str:
    return "" if obj is None else str(obj)


class ObjCUtilBridge(Bridge):
    """Multipeer Connectivity through Pythonista's objc_util."""

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
        self._session_ptrs: dict[int, int] = {}
        self._next_session = itertools.count(1)
        self._invitations: dict[int, int] = {}  # handle -> copied block pointer
        self._invited_as: dict[int, Any] = {}  # handle -> the MCPeerID it was addressed to
        self._next_invitation = itertools.count(1)
        self._delegates: dict[str, Any] = {}
        self._advertiser: Any = None
        self._browser: Any = None
        self._retired: list[Any] = []  # stopped advertisers and browsers
        self._closed = False

    # ---------------------------------------------------------------- operations
    def open(self, display_name: str, service_type: str, emit: Emit) -> None:
        classes = delegate_classes()
        self._emit, self._name, self._type = emit, display_name, service_type
        self._me = self._new_peer_id()
        for key, cls in classes.items():
            d = cls.alloc().init()
            d.release()
            self._delegates[key] = d
            _routes[d.ptr] = weakref.ref(self)

    def _new_peer_id(self) -> Any:
        return _make("MCPeerID", "initWithDisplayName_", self._name)

    def renew_identity(self) -> None:
        self._me = self._new_peer_id()

    def new_session(self, invitation: int | None = None) -> int:
        with self._lock:
            me = self._invited_as.get(invitation, self._me) if invitation else self._me
        s = _make(
            "MCSession",
            "initWithPeer_securityIdentity_encryptionPreference_",
            me,
            None,
            ENCRYPTION_REQUIRED,
        )
        s.setDelegate_(self._delegates["session"])
        with self._lock:
            h = next(self._next_session)
            self._sessions[h] = s
            self._session_ptrs[s.ptr] = h
        return h

    def advertise(self, info: Mapping[str, str]) -> None:
        self.stop_advertising()
        adv = _make(
            "MCNearbyServiceAdvertiser",
            "initWithPeer_discoveryInfo_serviceType_",
            self._me,
            objc_util.ns(dict(info)),
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
        b = _make("MCNearbyServiceBrowser", "initWithPeer_serviceType_", self._me, self._type)
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
        b.invitePeer_toSession_withContext_timeout_(p, s, objc_util.ns(bytes(context)), float(timeout))

    def answer(self, invitation: int, accept: bool, session: int | None) -> None:
        with self._lock:
            block = self._invitations.pop(invitation, None)
            self._invited_as.pop(invitation, None)
            s = self._sessions.get(session) if session is not None else None
        if block is None:
            return
        try:
            joined = s if accept and s is not None else None
            _call_handler(block, joined is not None, joined.ptr if joined is not None else None)
        finally:
            _block_release(block)

    def send(self, session: int, peer: int, data: bytes, reliable: bool) -> str | None:
        s, p = self._sessions.get(session), self._peers.get(peer)
        if s is None or p is None:
            return "unknown session or peer"
        error = c_void_p()
        mode = SEND_RELIABLE if reliable else SEND_UNRELIABLE
        ok = s.sendData_toPeers_withMode_error_(objc_util.ns(data), objc_util.ns([p]), mode, byref(error))
        if ok:
            return None
        if not error.value:
            return "unknown error"
        err = objc_util.ObjCInstance(error.value)
        return f"{err.domain()} {int(err.code())}: {err.localizedDescription()}"

    def disconnect(self, session: int) -> None:
        with self._lock:
            s = self._sessions.pop(session, None)
            if s is not None:
                self._session_ptrs.pop(s.ptr, None)
        if s is not None:
            s.disconnect()
            s.setDelegate_(None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            blocks = list(self._invitations.values())
            self._invitations.clear()
            self._invited_as.clear()
            sessions = list(self._sessions)
        self.stop_advertising()
        self.stop_browsing()
        for block in blocks:
            try:
                _call_handler(block, False, None)
            finally:
                _block_release(block)
        for h in sessions:
            self.disconnect(h)
        for obj in self._retired:
            obj.setDelegate_(None)
        self._retired.clear()
        for d in self._delegates.values():
            _routes.pop(d.ptr, None)
        self._delegates.clear()
        self._peers.clear()
        self._me = None

    # ---------------------------------------------------------------- callbacks (framework queue)
    def _send_event(self, event: Event) -> None:
        emit = self._emit
        if emit is not None and not self._closed:
            emit(event)

    def _session_handle(self, session: int) -> int | None:
        with self._lock:
            return self._session_ptrs.get(session)

    def _peer(self, ptr: int) -> int:
        return self._peers.handle(objc_util.ObjCInstance(ptr))

    def _on_state(self, session: int, peer: int, state: int) -> None:
        try:
            h = self._session_handle(session)
            if h is not None:
                self._send_event(StateChanged(h, self._peer(peer), int(state)))
        except Exception:
            log.exception("mc: session state callback failed")

    def _on_data(self, session: int, data: int, peer: int) -> None:
        try:
            h = self._session_handle(session)
            if h is not None:
                payload = objc_util.nsdata_to_bytes(objc_util.ObjCInstance(data))
                self._send_event(DataReceived(h, self._peer(peer), payload))
        except Exception:
            log.exception("mc: data callback failed")

    def _on_found(self, peer: int, info: int) -> None:
        try:
            plain: dict[str, str] = {}
            if info:
                d = objc_util.ObjCInstance(info)
                for key in d.allKeys():
                    plain[str(key)] = _text(d.objectForKey_(key))
            p = objc_util.ObjCInstance(peer)
            self._send_event(Found(self._peers.handle(p), str(p.displayName()), plain))
        except Exception:
            log.exception("mc: found callback failed")

    def _on_lost(self, peer: int) -> None:
        try:
            self._send_event(Lost(self._peer(peer)))
        except Exception:
            log.exception("mc: lost callback failed")

    def _on_not_started(self, role: str, error: int) -> None:
        try:
            e = objc_util.ObjCInstance(error)
            self._send_event(DidNotStart(role, str(e.domain()), int(e.code()), str(e.localizedDescription())))
        except Exception:
            log.exception("mc: did-not-start callback failed")

    def _on_invitation(self, advertiser: int, peer: int, context: int, handler: int) -> None:
        block: int | None = None
        try:
            block = _block_copy(handler)  # the handler outlives this call
            with self._lock:
                closed = self._closed
                if not closed:
                    inv = next(self._next_invitation)
                    self._invitations[inv] = block
                    self._invited_as[inv] = objc_util.ObjCInstance(advertiser).myPeerID()
            if closed:
                _call_handler(block, False, None)
                _block_release(block)
                return
            ctx = objc_util.nsdata_to_bytes(objc_util.ObjCInstance(context)) if context else b""
            p = objc_util.ObjCInstance(peer)
            self._send_event(Invited(inv, self._peers.handle(p), str(p.displayName()), ctx))
        except Exception:
            log.exception("mc: invitation callback failed")
