"""The thin bridge between :class:`MCTransport` and Apple's Multipeer Connectivity.

An adapter (``_objc_util`` in Pythonista, ``_pyobjc`` on macOS) implements :class:`Bridge`: a
dozen operations on the framework and a stream of plain events. No ObjC object crosses this
line: peers, sessions and invitations are named by small ints the adapter hands out (a peer
handle lives until ``close``, since an event on its way may still name it), and every value in
an event is a ``bytes``, ``str``, ``int`` or ``dict[str, str]``.

Events are emitted on a framework queue (a foreign thread); the transport hops them onto its
loop. Adapters emit from inside framework callbacks and must never block or run user code there.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "CONNECTED",
    "CONNECTING",
    "ENCRYPTION_REQUIRED",
    "ERR_SERVICE_NOT_DECLARED",
    "MAX_PEERS_PER_SESSION",
    "NOT_CONNECTED",
    "SEND_RELIABLE",
    "SEND_UNRELIABLE",
    "Bridge",
    "DataReceived",
    "DidNotStart",
    "Event",
    "Found",
    "Handles",
    "Invited",
    "Lost",
    "StateChanged",
]

# MCSessionState
NOT_CONNECTED = 0
CONNECTING = 1
CONNECTED = 2
# MCSessionSendDataMode
SEND_RELIABLE = 0
SEND_UNRELIABLE = 1
# MCEncryptionPreference
ENCRYPTION_REQUIRED = 1
#: kMCSessionMaximumNumberOfPeers: peers in one session, the local one included.
MAX_PEERS_PER_SESSION = 8
#: NSNetServicesErrorDomain code when the host app's Info.plist lacks the Bonjour service type.
ERR_SERVICE_NOT_DECLARED = -72008


@dataclass(frozen=True)
class Found:
    """The browser found an advertising peer."""

    peer: int
    display_name: str
    info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Lost:
    """The browser lost sight of a peer it had found."""

    peer: int


@dataclass(frozen=True)
class Invited:
    """A remote browser invited us; answer with :meth:`Bridge.answer` (exactly once)."""

    invitation: int
    peer: int
    display_name: str
    context: bytes


@dataclass(frozen=True)
class StateChanged:
    """A peer's state in one of our sessions changed (NOT_CONNECTED, CONNECTING, CONNECTED)."""

    session: int
    peer: int
    state: int


@dataclass(frozen=True)
class DataReceived:
    """A peer sent data to one of our sessions."""

    session: int
    peer: int
    data: bytes


@dataclass(frozen=True)
class DidNotStart:
    """The advertiser or the browser failed to start."""

    role: str
    """'advertiser' or 'browser'."""
    domain: str
    code: int
    message: str


Event = Found | Lost | Invited | StateChanged | DataReceived | DidNotStart
Emit = Callable[[Event], None]


class Bridge(abc.ABC):
    """The operations the transport needs from the framework, over plain values."""

    @abc.abstractmethod
    def open(self, display_name: str, service_type: str, emit: Emit) -> None:
        """Make our MCPeerID; events go to ``emit`` (called on a framework thread)."""

    @abc.abstractmethod
    def renew_identity(self) -> None:
        """Make a fresh MCPeerID for what is made from now on; live sessions keep theirs."""

    @abc.abstractmethod
    def new_session(self, invitation: int | None = None) -> int:
        """Make an MCSession with encryption required and our delegate; return its handle.

        For accepting ``invitation``, the session is made with the MCPeerID the invitation was
        addressed to (an earlier identity, if it came to an advertiser since replaced).
        """

    @abc.abstractmethod
    def advertise(self, info: Mapping[str, str]) -> None:
        """(Re)start advertising with this discovery info."""

    @abc.abstractmethod
    def stop_advertising(self) -> None:
        """Stop advertising; invitations stop coming."""

    @abc.abstractmethod
    def browse(self) -> None:
        """(Re)start browsing; every visible peer is reported as found again."""

    @abc.abstractmethod
    def stop_browsing(self) -> None:
        """Stop browsing."""

    @abc.abstractmethod
    def invite(self, peer: int, session: int, context: bytes, timeout: float) -> None:
        """Invite a found peer into one of our sessions."""

    @abc.abstractmethod
    def answer(self, invitation: int, accept: bool, session: int | None) -> None:
        """Answer an invitation (join ``session`` if accepting); releases the handler."""

    @abc.abstractmethod
    def send(self, session: int, peer: int, data: bytes, reliable: bool) -> str | None:
        """Send data to a connected peer; return None, or why the framework refused it."""

    @abc.abstractmethod
    def disconnect(self, session: int) -> None:
        """Leave a session and forget it."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop everything, answer pending invitations with no, release delegates and blocks."""


T = TypeVar("T")


class Handles(Generic[T]):
    """Small int handles for framework objects, thread-safe, with equality chosen by the adapter.

    The framework may hand us distinct objects for the same peer; ``key`` maps an object to a
    hashable value that equal objects share (for objc_util, ``-hash``), and ``same`` settles it.
    """

    def __init__(self, key: Callable[[T], object], same: Callable[[T, T], bool]) -> None:
        self._key = key
        self._same = same
        self._lock = threading.Lock()
        self._next = 1
        self._by_handle: dict[int, T] = {}
        self._by_key: dict[object, list[int]] = {}

    def handle(self, obj: T) -> int:
        """Return the handle of ``obj``, making one if it is new."""
        key = self._key(obj)
        with self._lock:
            for h in self._by_key.get(key, ()):
                if self._same(self._by_handle[h], obj):
                    return h
            h = self._next
            self._next += 1
            self._by_handle[h] = obj
            self._by_key.setdefault(key, []).append(h)
            return h

    def get(self, handle: int) -> T | None:
        """The object behind ``handle``, or None."""
        with self._lock:
            return self._by_handle.get(handle)

    def pop(self, handle: int) -> T | None:
        """Forget ``handle`` and return its object."""
        with self._lock:
            obj = self._by_handle.pop(handle, None)
            if obj is not None:
                for key, hs in list(self._by_key.items()):
                    if handle in hs:
                        hs.remove(handle)
                        if not hs:
                            del self._by_key[key]
                        break
            return obj

    def clear(self) -> list[T]:
        """Forget everything; return what was held."""
        with self._lock:
            objs = list(self._by_handle.values())
            self._by_handle.clear()
            self._by_key.clear()
            return objs

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_handle)
