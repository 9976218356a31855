"""A fake Pythonista ``objc_util`` over the simulation: pointers, encodings, ctypes and blocks.

It keeps what our adapter depends on from the real module: objects are raw pointers wrapped by
``ObjCInstance`` (cached per pointer, retained while wrapped, released when the wrapper dies);
method calls are resolved by selector against the class's type encoding, with the argument
count checked and object arguments passed through ``ns()``; ``create_objc_class`` takes each
method's ``encoding``/``restype``/``argtypes`` (or falls back to all-object arguments, as the real
one does when it cannot find a protocol), checks the argument count, and builds a ctypes
``CFUNCTYPE`` implementation that the framework calls with register values, so an NSInteger
declared as an object arrives as ``None`` for 0; blocks are real ctypes block literals in memory
whose stack copies die when the delegate method returns, so only ``_Block_copy``'d ones may be
called later. Objects made with ``alloc`` are freed when their count reaches 0, so a delegate
nobody keeps alive stops receiving calls (the framework's delegate references are weak).
"""

from __future__ import annotations

import ctypes
import inspect
import itertools
import threading
import types
import weakref
from collections.abc import Callable
from ctypes import CFUNCTYPE, Structure, c_bool, c_double, c_int, c_longlong, c_ulonglong, c_void_p
from typing import Any

from . import sim

_INVOKE = CFUNCTYPE(None, c_void_p, c_bool, c_void_p)


class _BlockLiteral(Structure):
    _fields_ = [
        ("isa", c_void_p),
        ("flags", c_int),
        ("reserved", c_int),
        ("invoke", _INVOKE),
        ("descriptor", c_void_p),
    ]


class FString:
    """An NSString."""

    def __init__(self, s: str) -> None:
        self.s = s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FString) and other.s == self.s

    def __hash__(self) -> int:
        return hash(self.s)

    def UTF8String(self) -> bytes:
        return self.s.encode()

    def description(self) -> FString:
        return self


class FArray:
    """An NSMutableArray of backing objects."""

    def __init__(self, items: list[Any] | None = None) -> None:
        self.items = list(items or [])

    def count(self) -> int:
        return len(self.items)

    def objectAtIndex_(self, i: int) -> Any:
        return self.items[i]

    def addObject_(self, obj: Any) -> None:
        self.items.append(obj)


class FDict:
    """An NSMutableDictionary of backing objects."""

    def __init__(self, d: dict[Any, Any] | None = None) -> None:
        self.d = dict(d or {})

    def count(self) -> int:
        return len(self.d)

    def allKeys(self) -> FArray:
        return FArray(list(self.d))

    def objectForKey_(self, key: Any) -> Any:
        return self.d.get(key)

    def setObject_forKey_(self, value: Any, key: Any) -> None:
        self.d[key] = value


def from_sim(value: Any) -> Any:
    """A simulation value as the ObjC object the framework would hand over."""
    if isinstance(value, str):
        return FString(value)
    if isinstance(value, (bytes, bytearray)):
        return sim.NSData(bytes(value))
    if isinstance(value, list):
        return FArray([from_sim(v) for v in value])
    if isinstance(value, dict):
        return FDict({from_sim(k): from_sim(v) for k, v in value.items()})
    return value


def to_sim(value: Any) -> Any:
    """An ObjC object as the simulation's plain value."""
    if isinstance(value, FString):
        return value.s
    if isinstance(value, FArray):
        return [to_sim(v) for v in value.items]
    if isinstance(value, FDict):
        return {to_sim(k): to_sim(v) for k, v in value.d.items()}
    return value


_OBJ = "@16@0:8"
_SET_DELEGATE = "v24@0:8@16"
_VOID = "v16@0:8"
TABLE: dict[type, dict[str, str]] = {
    sim.MCPeerID: {
        "initWithDisplayName:": "@24@0:8@16",
        "displayName": _OBJ,
        "hash": "Q16@0:8",
        "isEqual:": "B24@0:8@16",
    },
    sim.MCSession: {
        "initWithPeer:": "@24@0:8@16",
        "initWithPeer:securityIdentity:encryptionPreference:": "@40@0:8@16@24q32",
        "setDelegate:": _SET_DELEGATE,
        "delegate": _OBJ,
        "sendData:toPeers:withMode:error:": "B48@0:8@16@24q32^@40",
        "disconnect": _VOID,
        "connectedPeers": _OBJ,
        "myPeerID": _OBJ,
        "encryptionPreference": "q16@0:8",
    },
    sim.MCNearbyServiceAdvertiser: {
        "initWithPeer:discoveryInfo:serviceType:": "@40@0:8@16@24@32",
        "setDelegate:": _SET_DELEGATE,
        "delegate": _OBJ,
        "discoveryInfo": _OBJ,
        "myPeerID": _OBJ,
        "startAdvertisingPeer": _VOID,
        "stopAdvertisingPeer": _VOID,
    },
    sim.MCNearbyServiceBrowser: {
        "initWithPeer:serviceType:": "@32@0:8@16@24",
        "setDelegate:": _SET_DELEGATE,
        "delegate": _OBJ,
        "startBrowsingForPeers": _VOID,
        "stopBrowsingForPeers": _VOID,
        "invitePeer:toSession:withContext:timeout:": "v48@0:8@16@24@32d40",
    },
    sim.NSData: {"length": "Q16@0:8"},
    sim.NSError: {"domain": _OBJ, "code": "q16@0:8", "localizedDescription": _OBJ},
    FString: {"UTF8String": "r*16@0:8", "description": _OBJ},
    FArray: {"count": "Q16@0:8", "objectAtIndex:": "@24@0:8Q16", "addObject:": "v24@0:8@16"},
    FDict: {
        "count": "Q16@0:8",
        "allKeys": _OBJ,
        "objectForKey:": "@24@0:8@16",
        "setObject:forKey:": "v32@0:8@16@24",
    },
}
NSOBJECT = {"init": _OBJ, "retain": _OBJ, "release": "Vv16@0:8", "autorelease": _OBJ}
CLASSES: dict[str, type] = {
    "MCPeerID": sim.MCPeerID,
    "MCSession": sim.MCSession,
    "MCNearbyServiceAdvertiser": sim.MCNearbyServiceAdvertiser,
    "MCNearbyServiceBrowser": sim.MCNearbyServiceBrowser,
    "NSData": sim.NSData,
    "NSString": FString,
    "NSMutableArray": FArray,
    "NSMutableDictionary": FDict,
}


def split_encoding(encoding: str) -> list[str]:
    """Type codes of an encoding, without offsets and qualifiers."""
    codes: list[str] = []
    i = 0
    while i < len(encoding):
        ch = encoding[i]
        if ch.isdigit() or ch in "rnNoORV":
            i += 1
            continue
        if ch == "^":
            codes.append(encoding[i : i + 2])
            i += 2
            continue
        if ch == "@" and encoding[i + 1 : i + 2] == "?":
            codes.append("@?")
            i += 2
            continue
        codes.append(ch)
        i += 1
    return codes


_CTYPES: dict[str, Any] = {
    "@": c_void_p,
    ":": c_void_p,
    "#": c_void_p,
    "q": c_longlong,
    "Q": c_ulonglong,
    "i": c_int,
    "B": c_bool,
    "d": c_double,
    "v": None,
}


class FakeClass:
    """A class made by create_objc_class."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.methods: dict[str, tuple[str, Any, Callable[..., Any]]] = {}


class FakeInstance:
    """An instance of a created class (our delegates)."""

    def __init__(self, cls: FakeClass, fake: FakeObjCUtil) -> None:
        self.cls = cls
        self._fake = weakref.ref(fake)

    def respondsToSelector_(self, selector: str) -> bool:
        return selector in self.cls.methods

    def __sim_call__(self, selector: str, args: tuple[Any, ...]) -> None:
        fake = self._fake()
        assert fake is not None
        _encoding, imp, _ = self.cls.methods[selector]
        raw: list[Any] = [fake.ptr_of(self), 0xC0DE]
        blocks: list[int] = []
        for value in args:
            if isinstance(value, sim.InvitationHandler):
                addr = fake.make_block(value)
                blocks.append(addr)
                raw.append(addr)
            elif isinstance(value, bool) or not isinstance(value, int):
                raw.append(None if value is None else fake.ptr_of(from_sim(value)))
            else:
                raw.append(value)  # an NSInteger in a register
        try:
            imp(*raw)
        finally:
            for addr in blocks:  # a stack block dies with the call
                fake.kill_block(addr)


class FakeObjCUtil:
    """One fake objc_util installation and its object memory."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.objects: dict[int, Any] = {}
        self.ptrs: dict[int, int] = {}
        self.counts: dict[int, int] = {}  # only for objects made with alloc
        self.freed: list[Any] = []
        self._addresses = itertools.count(0x10000, 0x10)
        self.classes: dict[str, FakeClass] = {}
        self.blocks: dict[int, tuple[_BlockLiteral, Any, sim.InvitationHandler]] = {}
        self.block_copies = 0
        self.block_releases = 0
        self.callback_errors: list[str] = []
        self.wrappers: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        self.modules = {"objc_util": self._module()}

    # ---- memory
    def ptr_of(self, obj: Any, counted: bool = False) -> int:
        with self.lock:
            ptr = self.ptrs.get(id(obj))
            if ptr is None:
                ptr = next(self._addresses)
                self.ptrs[id(obj)] = ptr
                self.objects[ptr] = obj
                if counted:
                    self.counts[ptr] = 1
            return ptr

    def at(self, ptr: int | None) -> Any:
        if ptr is None:
            return None
        with self.lock:
            if ptr not in self.objects:
                raise sim.SimCrash(f"EXC_BAD_ACCESS: no object at {ptr:#x}")
            return self.objects[ptr]

    def retain(self, ptr: int) -> None:
        with self.lock:
            if ptr in self.counts:
                self.counts[ptr] += 1

    def release(self, ptr: int) -> None:
        with self.lock:
            if ptr not in self.counts:
                return
            self.counts[ptr] -= 1
            if self.counts[ptr] == 0:
                del self.counts[ptr]
                obj = self.objects.pop(ptr)
                del self.ptrs[id(obj)]
                self.freed.append(type(obj).__name__)

    def live_delegates(self) -> list[FakeInstance]:
        with self.lock:
            return [o for o in self.objects.values() if isinstance(o, FakeInstance)]

    # ---- blocks
    def make_block(self, handler: sim.InvitationHandler) -> int:
        def invoke(block: int | None, accept: bool, session: int | None) -> None:
            with self.lock:
                live = block in self.blocks
            if not live:
                sim.world().crash("called a block that is no longer alive (copy it first)")
                return
            handler(bool(accept), to_sim(self.at(session)) if session else None)

        return self._store_block(invoke, handler)

    def _store_block(self, invoke: Callable[..., None], handler: sim.InvitationHandler) -> int:
        cfunc = _INVOKE(invoke)
        lit = _BlockLiteral(isa=0x1, flags=1 << 25, reserved=0, invoke=cfunc, descriptor=None)
        addr = ctypes.addressof(lit)
        with self.lock:
            self.blocks[addr] = (lit, cfunc, handler)
        return addr

    def kill_block(self, addr: int) -> None:
        with self.lock:
            self.blocks.pop(addr, None)

    def block_copy(self, addr: int | None) -> int:
        with self.lock:
            entry = self.blocks.get(addr) if addr else None
        if entry is None:
            sim.world().crash("_Block_copy of something that is not a live block")
            return 0
        handler = entry[2]
        with self.lock:
            self.block_copies += 1
        copy_addr = self.make_block(handler)
        return copy_addr

    def block_release(self, addr: int | None) -> None:
        with self.lock:
            if addr not in self.blocks:
                sim.world().crash("_Block_release of something that is not a live block")
                return
            self.block_releases += 1
            del self.blocks[addr]

    # ---- calls into "ObjC"
    def send_message(self, ptr: int, selector: str, args: tuple[Any, ...]) -> Any:
        obj = self.at(ptr)
        encoding = self.encoding_of(obj, selector)
        codes = split_encoding(encoding)
        ret, params = codes[0], codes[3:]
        if len(args) != len(params):
            raise TypeError(f"expected {len(params)} arguments, got {len(args)}")
        raw = []
        for code, arg in zip(params, args, strict=True):
            if code == "@":
                arg = self.ns(arg)
                arg = arg.ptr if arg is not None else None
            elif code in ("q", "Q") and not isinstance(arg, int):
                raise ctypes.ArgumentError(f"{selector}: expected an integer, got {arg!r}")
            elif code == "d" and not isinstance(arg, (int, float)):
                raise ctypes.ArgumentError(f"{selector}: expected a double, got {arg!r}")
            raw.append(arg)
        result = self._perform(obj, selector, params, raw)
        if ret == "@":
            if result is None:
                return None
            if isinstance(result, FakeInstance) or selector.startswith("init"):
                return self.wrap(self.ptr_of(result))
            return self.wrap(self.ptr_of(from_sim(result)))
        if ret == "B":
            return bool(result)
        return result

    def encoding_of(self, obj: Any, selector: str) -> str:
        if isinstance(obj, FakeInstance):
            if selector in obj.cls.methods:
                return obj.cls.methods[selector][0]
        else:
            for klass in type(obj).__mro__:
                if selector in TABLE.get(klass, {}):
                    return TABLE[klass][selector]
        if selector in NSOBJECT:
            return NSOBJECT[selector]
        raise AttributeError(f'No method found for selector "{selector}"')

    def _perform(self, obj: Any, selector: str, params: list[str], raw: list[Any]) -> Any:
        ptr = self.ptr_of(obj)
        if selector == "retain":
            self.retain(ptr)
            return obj
        if selector == "release":
            self.release(ptr)
            return None
        if selector in ("init", "autorelease"):
            return obj
        foundation = isinstance(obj, (FString, FArray, FDict))  # these hold ObjC objects
        args = [
            (self.at(a) if foundation else to_sim(self.at(a))) if code == "@" else a
            for code, a in zip(params, raw, strict=True)
        ]
        if selector == "sendData:toPeers:withMode:error:":
            out = raw[3]
            err = obj.send(sim._as_bytes(args[0]), list(args[1]), int(args[2]))
            if err is not None and out is not None:
                out._obj.value = self.ptr_of(err)
            return err is None
        return getattr(obj, sim.pyname(selector))(*args)

    def wrap(self, ptr: int | None) -> Any:
        return self.ObjCInstance(ptr) if ptr else None

    def ns(self, value: Any) -> Any:
        if value is None or isinstance(value, self.ObjCInstance):
            return value
        if isinstance(value, c_void_p):
            return self.wrap(value.value)
        if isinstance(value, str):
            return self.wrap(self.ptr_of(FString(value)))
        if isinstance(value, (bytes, bytearray)):
            return self.wrap(self.ptr_of(sim.NSData(bytes(value))))
        if isinstance(value, list):
            return self.wrap(self.ptr_of(FArray([self.at(self.ns(v).ptr) for v in value])))
        if isinstance(value, dict):
            return self.wrap(
                self.ptr_of(
                    FDict({self.at(self.ns(k).ptr): self.at(self.ns(v).ptr) for k, v in value.items()})
                )
            )
        raise TypeError(f"ns() cannot convert {type(value).__name__}")

    # ---- create_objc_class
    def create_objc_class(
        self,
        name: str,
        superclass: Any = None,
        methods: Any = (),
        classmethods: Any = (),
        protocols: Any = (),
        debug: bool = True,
    ) -> Any:
        basename = name
        if debug:
            suffix = 1
            while name in self.classes:
                suffix += 1
                name = f"{basename}_{suffix}"
        elif name in self.classes:
            return self.ObjCClass(name)
        cls = FakeClass(name)
        for method in methods:
            if hasattr(method, "selector"):
                selector = method.selector
            else:
                mname = method.__name__
                if mname.startswith(basename + "_"):
                    mname = mname[len(basename) + 1 :]
                selector = mname.replace("_", ":")
            encoding = getattr(method, "encoding", None)
            if encoding is None:  # the protocol is not found: everything is an object
                encoding = "v@:" + "@" * selector.count(":")
            if hasattr(method, "restype") and hasattr(method, "argtypes"):
                restype, argtypes = method.restype, [c_void_p, c_void_p, *method.argtypes]
            else:
                codes = split_encoding(encoding)
                if "@?" in codes:
                    raise NotImplementedError("Unsupported type encoding (@?) without argtypes")
                restype, argtypes = _CTYPES[codes[0]], [_CTYPES[c] for c in codes[1:]]
            # objc_util counts arguments with inspect.getargspec, which refuses annotations.
            spec = inspect.getfullargspec(method)
            if spec.kwonlyargs or spec.annotations:
                raise ValueError(
                    "Function has keyword-only parameters or annotations, use "
                    "inspect.signature() API which can support them"
                )
            n = len(spec.args)
            if n != len(argtypes):
                raise ValueError(f"{method} has {n} arguments (expected {len(argtypes)})")
            cls.methods[selector] = (
                encoding,
                CFUNCTYPE(restype, *argtypes)(self._guard(selector, method)),
                method,
            )
        self.classes[name] = cls
        return self.ObjCClass(name)

    def _guard(self, selector: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def imp(*args: Any) -> Any:
            try:
                return method(*args)
            except BaseException as e:  # ctypes would print it and return garbage
                self.callback_errors.append(f"{selector}: {e!r}")
                return None

        return imp

    # ---- the module
    def _module(self) -> types.ModuleType:
        fake = self
        m = types.ModuleType("objc_util")

        class ObjCInstance:
            """A wrapped pointer; retains while it lives."""

            def __new__(cls, ptr: Any) -> Any:
                if isinstance(ptr, ObjCInstance):
                    return ptr
                if isinstance(ptr, c_void_p):
                    ptr = ptr.value
                if not isinstance(ptr, int):
                    raise TypeError(f"ObjCInstance needs a pointer, got {type(ptr).__name__}")
                cached = fake.wrappers.get(ptr)
                if cached is not None:
                    return cached
                fake.at(ptr)
                self = object.__new__(cls)
                object.__setattr__(self, "ptr", ptr)
                object.__setattr__(self, "_as_parameter_", ptr)
                fake.wrappers[ptr] = self
                fake.retain(ptr)
                return self

            def __getattr__(self, name: str) -> Any:
                if name.startswith("__"):
                    raise AttributeError(name)
                selector = name.replace("_", ":")
                fake.encoding_of(fake.at(self.ptr), selector)  # AttributeError if unknown

                def call(*args: Any, **kw: Any) -> Any:
                    return fake.send_message(self.ptr, selector, args)

                return call

            def __str__(self) -> str:
                obj = fake.at(self.ptr)
                return obj.s if isinstance(obj, FString) else repr(obj)

            def __eq__(self, other: object) -> bool:
                return isinstance(other, ObjCInstance) and other.ptr == self.ptr

            def __hash__(self) -> int:
                return hash(self.ptr)

            def __iter__(self) -> Any:
                obj = fake.at(self.ptr)
                items = obj.items if isinstance(obj, FArray) else list(obj.d)
                return iter([ObjCInstance(fake.ptr_of(i)) for i in items])

            def __del__(self) -> None:
                fake.release(self.ptr)

        class ObjCClass:
            """A class by name."""

            _cache: dict[str, Any] = {}

            def __new__(cls, name: str) -> Any:
                if name in cls._cache:
                    return cls._cache[name]
                if name not in CLASSES and name not in fake.classes and name != "NSObject":
                    raise ValueError(f"no Objective-C class named '{name}' found")
                self = object.__new__(cls)
                self.name = name
                cls._cache[name] = self
                return self

            def alloc(self) -> Any:
                if self.name in fake.classes:
                    obj: Any = FakeInstance(fake.classes[self.name], fake)
                else:
                    obj = CLASSES[self.name].alloc()
                return ObjCInstance(fake.ptr_of(obj, counted=True))

            def new(self) -> Any:
                return self.alloc()

        def nsdata_to_bytes(data: Any) -> bytes:
            if not isinstance(data, ObjCInstance) or not isinstance(fake.at(data.ptr), sim.NSData):
                raise TypeError("expected an NSData object")
            return bytes(fake.at(data.ptr))

        def on_main_thread(func: Callable[..., Any]) -> Callable[..., Any]:
            def run(*a: Any, **k: Any) -> Any:
                if threading.get_ident() in sim.world().framework_thread_ids:
                    sim.world().crash("on_main_thread waited from a framework queue")
                return func(*a, **k)

            return run

        def block_copy(ptr: Any) -> int:
            return fake.block_copy(ptr)

        def block_release(ptr: Any) -> None:
            fake.block_release(ptr)

        self.ObjCInstance = ObjCInstance  # type: ignore[attr-defined]
        self.ObjCClass = ObjCClass  # type: ignore[attr-defined]
        m.ObjCInstance = ObjCInstance  # type: ignore[attr-defined]
        m.ObjCClass = ObjCClass  # type: ignore[attr-defined]
        m.NSObject = ObjCClass("NSObject")  # type: ignore[attr-defined]
        m.ns = self.ns  # type: ignore[attr-defined]
        m.nsdata_to_bytes = nsdata_to_bytes  # type: ignore[attr-defined]
        m.create_objc_class = self.create_objc_class  # type: ignore[attr-defined]
        m.on_main_thread = on_main_thread  # type: ignore[attr-defined]
        m.load_framework = lambda name: True  # type: ignore[attr-defined]
        m.c = types.SimpleNamespace(_Block_copy=block_copy, _Block_release=block_release)  # type: ignore[attr-defined]
        for name in (
            "c_void_p",
            "c_bool",
            "c_longlong",
            "c_ulonglong",
            "c_int",
            "c_double",
            "byref",
            "POINTER",
            "Structure",
            "CFUNCTYPE",
            "sizeof",
        ):
            setattr(m, name, getattr(ctypes, name))
        return m
