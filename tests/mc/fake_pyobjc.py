"""Fake pyobjc modules (``objc``, ``Foundation``, ``MultipeerConnectivity``) over the simulation.

They behave as pyobjc does where our adapter depends on it: Python subclasses of ``NSObject``
register an ObjC class by name (a second class of the same name is an error), ``protocols=``
names formal protocols, ``objc.typedSelector`` sets a method's signature, blocks arrive as Python
callables only when the block's signature is known (metadata registered), ``bytes`` bridges to
NSData, and ``NSError**`` outputs come back as the last element of a tuple.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from . import sim

_PROTOCOLS = {
    "MCSessionDelegate",
    "MCNearbyServiceAdvertiserDelegate",
    "MCNearbyServiceBrowserDelegate",
}


class ObjCError(Exception):
    """objc.error."""


class NoSuchClassError(ObjCError):
    """objc.nosuchclass_error."""


class _Protocol:
    def __init__(self, name: str) -> None:
        self.name = name


class _OpaqueBlock:
    """What pyobjc hands over for a block whose signature it does not know: not callable."""


class FakeObjC:
    """State of one fake pyobjc installation."""

    def __init__(self) -> None:
        self.classes: dict[str, type] = {}
        self.block_metadata: dict[tuple[bytes, bytes], dict[str, Any]] = {}
        self.callback_errors: list[str] = []
        self.modules = self._build()

    def _build(self) -> dict[str, types.ModuleType]:
        fake = self
        objc = types.ModuleType("objc")
        objc.error = ObjCError  # type: ignore[attr-defined]
        objc.nosuchclass_error = NoSuchClassError  # type: ignore[attr-defined]

        def typed_selector(signature: bytes) -> Callable[[Any], Any]:
            def deco(func: Any) -> Any:
                func.__objc_signature__ = bytes(signature)
                return func

            return deco

        def protocol_named(name: str) -> _Protocol:
            if name not in _PROTOCOLS:
                raise ObjCError(f"protocol {name} not found")
            return _Protocol(name)

        def lookup(name: str) -> type:
            try:
                return fake.classes[name]
            except KeyError:
                raise NoSuchClassError(name) from None

        def register_metadata(cls: bytes, selector: bytes, meta: dict[str, Any]) -> None:
            fake.block_metadata[(bytes(cls), bytes(selector))] = meta

        objc.typedSelector = typed_selector  # type: ignore[attr-defined]
        objc.protocolNamed = protocol_named  # type: ignore[attr-defined]
        objc.lookUpClass = lookup  # type: ignore[attr-defined]
        objc.registerMetaDataForSelector = register_metadata  # type: ignore[attr-defined]

        class NSObject(sim._SimObject):
            """Base of Python-defined ObjC classes."""

            __objc_protocols__: tuple[str, ...] = ()

            def __init_subclass__(cls, protocols: Any = (), **kw: Any) -> None:
                super().__init_subclass__(**kw)
                if cls.__name__ in fake.classes:
                    raise ObjCError(f"{cls.__name__} is overriding existing Objective-C class")
                fake.classes[cls.__name__] = cls
                cls.__objc_protocols__ = tuple(p.name for p in protocols)

            def init(self) -> Any:
                return self

            def __sim_call__(self, selector: str, args: tuple[Any, ...]) -> None:
                method = getattr(self, sim.pyname(selector))
                signature = getattr(method, "__objc_signature__", None)
                conv = list(args)
                if signature is not None and b"@?" in signature:
                    meta = fake.block_metadata.get((b"NSObject", selector.encode()))
                    if meta is None or "callable" not in meta.get("arguments", {}).get(5, {}):
                        conv[-1] = _OpaqueBlock()
                if (
                    signature is not None
                    and selector == "session:peer:didChangeState:"
                    and not signature.endswith(b"q")
                ):
                    conv[2] = None if args[2] == 0 else args[2]
                try:
                    method(*conv)
                except Exception as e:  # pyobjc would print it and carry on
                    fake.callback_errors.append(f"{selector}: {e!r}")

        foundation = types.ModuleType("Foundation")
        foundation.NSObject = NSObject  # type: ignore[attr-defined]
        foundation.NSData = sim.NSData  # type: ignore[attr-defined]
        fake.NSObject = NSObject  # type: ignore[attr-defined]

        mc = types.ModuleType("MultipeerConnectivity")
        for name in ("MCPeerID", "MCSession", "MCNearbyServiceAdvertiser", "MCNearbyServiceBrowser"):
            setattr(mc, name, getattr(sim, name))
        mc.MCSessionSendDataReliable = sim.RELIABLE  # type: ignore[attr-defined]
        mc.MCSessionSendDataUnreliable = sim.UNRELIABLE  # type: ignore[attr-defined]
        mc.MCEncryptionOptional = 0  # type: ignore[attr-defined]
        mc.MCEncryptionRequired = 1  # type: ignore[attr-defined]
        mc.MCEncryptionNone = 2  # type: ignore[attr-defined]
        mc.MCSessionStateNotConnected = 0  # type: ignore[attr-defined]
        mc.MCSessionStateConnecting = 1  # type: ignore[attr-defined]
        mc.MCSessionStateConnected = 2  # type: ignore[attr-defined]
        return {"objc": objc, "Foundation": foundation, "MultipeerConnectivity": mc}
