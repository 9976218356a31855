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
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from ctypes import CFUNCTYPE, POINTER, Structure, byref, c_bool, c_int, c_longlong, c_void_p
from typing import Any

import objc_util  # type: ignore[import-not-found]

from ._objc_common import ObjCBridgeBase

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


class ObjCUtilBridge(ObjCBridgeBase):
    """Multipeer Connectivity through Pythonista's objc_util."""

    def _delegate_classes(self) -> Mapping[str, Any]:
        return delegate_classes()

    def _adopt_delegate(self, delegate: Any) -> None:
        delegate.release()  # the ObjCInstance retains what it wraps: balance the alloc

    def _bind_delegate(self, delegate: Any) -> None:
        _routes[delegate.ptr] = weakref.ref(self)

    def _unbind_delegate(self, delegate: Any) -> None:
        _routes.pop(delegate.ptr, None)

    def _make(self, class_name: str, init: str, *args: Any) -> Any:
        return _make(class_name, init, *args)

    def _ns(self, value: Any) -> Any:
        return objc_util.ns(value)

    def _send_data(self, session: Any, peer: Any, data: bytes, mode: int) -> str | None:
        error = c_void_p()
        if session.sendData_toPeers_withMode_error_(
            objc_util.ns(data), objc_util.ns([peer]), mode, byref(error)
        ):
            return None
        if not error.value:
            return "unknown error"
        err = objc_util.ObjCInstance(error.value)
        return f"{err.domain()} {int(err.code())}: {err.localizedDescription()}"

    def _session_key(self, session: Any) -> Any:
        return session.ptr

    def _session_arg_key(self, session: Any) -> Any:
        return session  # callbacks get the session's pointer itself

    def _obj(self, ref: Any) -> Any:
        return objc_util.ObjCInstance(ref)

    def _bytes(self, data: Any) -> bytes:
        return bytes(objc_util.nsdata_to_bytes(objc_util.ObjCInstance(data)))

    def _info(self, info: Any) -> dict[str, str]:
        plain: dict[str, str] = {}
        if info:
            d = objc_util.ObjCInstance(info)
            for key in d.allKeys():
                plain[str(key)] = _text(d.objectForKey_(key))
        return plain

    def _keep_handler(self, handler: Any) -> Any:
        return _block_copy(handler)

    def _call_handler(self, handler: Any, accept: bool, session: Any | None) -> None:
        try:
            _call_handler(
                handler, accept and session is not None, session.ptr if session is not None else None
            )
        finally:
            _block_release(handler)
