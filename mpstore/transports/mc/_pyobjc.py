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

from ._objc_common import ObjCBridgeBase

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


class PyObjCBridge(ObjCBridgeBase):
    """Multipeer Connectivity through pyobjc."""

    def _delegate_classes(self) -> Mapping[str, Any]:
        return delegate_classes()

    def _bind_delegate(self, delegate: Any) -> None:
        delegate._mpstore_owner = weakref.ref(self)

    def _unbind_delegate(self, delegate: Any) -> None:
        delegate._mpstore_owner = None

    def _make(self, class_name: str, init: str, *args: Any) -> Any:
        return getattr(getattr(MC, class_name).alloc(), init)(*args)

    def _ns(self, value: Any) -> Any:
        return value  # pyobjc converts bytes, lists and dicts itself

    def _send_data(self, session: Any, peer: Any, data: bytes, mode: int) -> str | None:
        ok, error = session.sendData_toPeers_withMode_error_(data, [peer], mode, None)
        return None if ok else _error_text(error)

    def _session_key(self, session: Any) -> Any:
        return id(session)

    def _obj(self, ref: Any) -> Any:
        return ref

    def _bytes(self, data: Any) -> bytes:
        return bytes(data)

    def _info(self, info: Any) -> dict[str, str]:
        return {str(k): str(v) for k, v in dict(info or {}).items()}

    def _keep_handler(self, handler: Any) -> Any:
        return handler if callable(handler) else None

    def _call_handler(self, handler: Any, accept: bool, session: Any | None) -> None:
        handler(bool(accept and session is not None), session if accept else None)
