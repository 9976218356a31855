"""The transport interface: find peers, carry frames between links, report links up and down.

A transport knows nothing of JSON, hellos, CRDTs or display-name rules. It is driven by the
runtime from the core thread's asyncio loop and reports back to a :class:`LinkListener` **on
that same loop thread** (a transport whose callbacks arrive on a foreign thread, like Multipeer
Connectivity's, hops them with ``loop.call_soon_threadsafe`` after copying them into plain
values).

A *link* is one bidirectional channel to one remote node. The transport names it with an
opaque hashable ``LinkId`` of its choosing, announces it with ``link_up``, delivers each frame
it receives on it whole with ``link_frame``, and reports its end once with ``link_down``. Frames
sent reliably on a link arrive in order and complete while the link lives; unreliable frames
may be dropped or reordered. Who the remote node is gets settled above, by the session's hello.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .._errors import MpstoreError

__all__ = ["LinkId", "LinkListener", "LocalNode", "Transport"]

LinkId = Hashable


@dataclass(frozen=True)
class LocalNode:
    """What a transport may publish about the local node (already validated)."""

    peer_id: str
    """Random hex id, stable for the life of the node; also the tie-break value."""
    display_name: str
    service_type: str
    discovery_info: Mapping[str, str] = field(default_factory=dict)


class LinkListener(Protocol):
    """Callbacks a transport makes, always on the core loop's thread."""

    def link_up(self, link: LinkId, address: str | None) -> None:
        """A new link is ready for frames; ``address`` is a printable remote address if known."""

    def link_frame(self, link: LinkId, frame: bytes) -> None:
        """One whole frame arrived on ``link``."""

    # Optional: ``link_frames(link, frames)``, several whole frames that arrived together, in
    # order; a transport calls it instead of link_frame for each when the listener has it.

    def link_down(self, link: LinkId, reason: str) -> None:
        """The link ended (closed by either side, or failed); no frame follows."""

    def link_writable(self, link: LinkId, writable: bool) -> None:
        """The link's send buffer crossed its high (False) or low (True) water mark."""


class Transport(abc.ABC):
    """Base class of every transport; all methods are called on the core loop's thread."""

    #: The largest frame (bytes) this transport carries whole; the session fragments above it.
    max_frame_size: int = 64 * 1024

    #: A short name for logs and ``repr``: 'memory', 'lan', 'mc'.
    name: str = "transport"

    #: The most devices, this one included, the transport can connect; None for no limit of
    #: its own (Multipeer Connectivity: 8). The wrapper refuses a larger ``max_peers``.
    max_peers: int | None = None

    #: An error the transport met after starting, on its own (iOS refusing the service type);
    #: the wrapper raises it from blocking calls. None while all is well.
    failure: MpstoreError | None = None

    @abc.abstractmethod
    def open(self, loop: asyncio.AbstractEventLoop, listener: LinkListener, local: LocalNode) -> None:
        """Bind to the core loop; nothing is advertised or browsed until start_discovery()."""

    @abc.abstractmethod
    def start_discovery(self) -> None:
        """Advertise, browse, and accept incoming links."""

    @abc.abstractmethod
    def stop_discovery(self) -> None:
        """Stop advertising and browsing and refuse new incoming links; live links stay."""

    @abc.abstractmethod
    def send(self, link: LinkId, frame: bytes, reliable: bool = True) -> bool:
        """Queue one frame; never blocks. Return False if it was dropped (unknown link, or full)."""

    def send_frames(self, link: LinkId, frames: Sequence[bytes]) -> None:
        """Queue several reliable frames, in order, as ``send(link, frame)`` each; a transport
        may take them in one go."""
        for frame in frames:
            self.send(link, frame, True)

    def flush(self) -> None:
        """Hand what is queued on every link to the network now: a hint from the core at the end
        of a burst, for transports that hold small writes until the loop's next turn."""
        return None

    @abc.abstractmethod
    def close_link(self, link: LinkId, reason: str = "closed") -> None:
        """Close one link after flushing what was queued; ``link_down`` follows for it."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close every link and release everything; no ``link_*`` callback comes after it returns."""

    def pause_reading(self, link: LinkId, paused: bool) -> None:
        """Stop (True) or resume (False) taking frames from ``link``, so that a peer whose
        messages the application has not consumed yet is pushed back (its sends then wait).
        Transports that cannot pause a link ignore it."""
        return None

    def buffered(self, link: LinkId) -> int | None:
        """Bytes sent on ``link`` that its peer has not taken yet as far as this transport can
        tell (its own buffers; they shrink as the peer reads), or None if it cannot tell."""
        return None

    def channel_binding(self, link: LinkId) -> bytes:
        """Bytes that identify this link's secure channel to both ends (e.g. a hash of both TLS
        certificates), for binding authentication to the connection; empty when there is none."""
        return b""

    def peer_key(self, link: LinkId) -> str | None:
        """What identifies the remote device of ``link`` on this transport and that a stranger
        cannot share with it (LAN: its TLS certificate; Multipeer Connectivity: its MCPeerID),
        for counting failed proofs; None to fall back to the host of its address."""
        return None
