"""The in-memory network: a shipped transport for tests and demos, with fault injection.

Every ``MultipeerConnectivity(..., transport=net)`` on one :class:`MemoryNetwork` (or
``transport='memory'`` for the process-wide default network) can find the others that are
looking for peers with the same service type. Delivery is asynchronous (through each node's own
loop), frames are copied, reliable frames keep their order, and faults are injected with
``partition``, ``heal``, ``set_latency``, ``set_loss`` and ``kill``. A link holds back its
sender as a socket buffer does: past ``FLIGHT_HIGH`` bytes the other side has not taken yet,
the sender is told the link is not writable.

A partition breaks every link that crosses it, as a dead network path breaks a TCP connection:
the link carries nothing more, even after ``heal()``, until both ends give up on it (the
session's ``peer_timeout``); then the nodes find each other again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, ClassVar

from .._errors import ConfigurationError, InvalidArgument
from .base import LinkId, LinkListener, LocalNode, Transport

__all__ = ["MemoryNetwork", "MemoryTransport"]

log = logging.getLogger("mpstore.memory")

_RETRY_FIRST = 0.05
_RETRY_MAX = 2.0
#: Bytes one side may have sent that the other side's loop has not taken yet, as a socket buffer
#: holds: above HIGH the sender is told the link is not writable, below LOW writable again.
#: Without it a fast sender floods the receiver's loop with callbacks faster than it runs them,
#: and the receiver's timers (its heartbeats) wait behind all of them.
FLIGHT_HIGH = 1024 * 1024
FLIGHT_LOW = 256 * 1024


class _Link:
    """One link between two transports, as seen by the network."""

    __slots__ = (
        "a",
        "b",
        "broken",
        "flight",
        "full",
        "ids",
        "inbox",
        "last_at",
        "lock",
        "open_on",
        "opened_at",
        "paused",
        "told",
        "waiting",
    )

    def __init__(self, a: MemoryTransport, b: MemoryTransport, ids: tuple[int, int]) -> None:
        self.a, self.b = a, b
        self.ids = {a: ids[0], b: ids[1]}
        self.open_on = {a, b}
        self.broken = False
        self.last_at = {a: 0.0, b: 0.0}
        self.inbox: dict[MemoryTransport, deque[tuple[float, bytes | None]]] = {
            a: deque(),
            b: deque(),
        }
        self.waiting = {a: False, b: False}
        self.paused = {a: False, b: False}  # this side stopped reading (pause_reading)
        self.opened_at = time.monotonic()
        # Flow control, per sending side (see FLIGHT_HIGH); changed from both nodes' threads.
        self.lock = threading.Lock()
        self.flight = {a: 0, b: 0}  # bytes sent, not yet taken by the other side
        self.full = {a: False, b: False}  # over FLIGHT_HIGH, not yet back under FLIGHT_LOW
        self.told = {a: True, b: True}  # the writability last reported to this side

    def sync_writable(self, sender: MemoryTransport, here: bool = False) -> None:
        """Tell ``sender`` if its writability changed: not while the other side pauses reading
        or while too many of its bytes are in flight. ``here``: we are on the sender's loop (it is
        told at once, as a socket's send tells it); otherwise it is told on its loop."""
        with self.lock:
            writable = not self.paused[self.other(sender)] and not self.full[sender]
            if writable == self.told[sender]:
                return
            self.told[sender] = writable
        if here:
            sender._report_writable(self)
        else:
            sender._post(sender._report_writable, self)

    def other(self, side: MemoryTransport) -> MemoryTransport:
        return self.b if side is self.a else self.a


class MemoryNetwork:
    """An isolated in-process network; ``MemoryNetwork.default()`` is the one 'memory' uses."""

    _default: ClassVar[MemoryNetwork | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *, latency: float = 0.0, loss: float = 0.0, seed: int | None = None) -> None:
        self._lock = threading.RLock()
        self._nodes: list[MemoryTransport] = []
        self._links: dict[frozenset[MemoryTransport], _Link] = {}
        self._group_of: dict[MemoryTransport, int] | None = None
        self._partition_spec: list[list[Any]] | None = None
        self._dead: set[MemoryTransport] = set()
        self._failures: dict[frozenset[MemoryTransport], int] = {}
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)
        self._latency = 0.0
        self._loss = 0.0
        self.set_latency(latency)
        self.set_loss(loss)

    @classmethod
    def default(cls) -> MemoryNetwork:
        """The process-wide network that ``transport='memory'`` uses."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    def __repr__(self) -> str:
        return f"<MemoryNetwork nodes={len(self._nodes)} links={len(self._links)}>"

    # -- fault injection ------------------------------------------------------------------------
    def set_latency(self, seconds: float) -> None:
        """Delay every frame by ``seconds`` (one way); order is kept."""
        if not seconds >= 0:
            raise ConfigurationError("latency must be >= 0")
        self._latency = float(seconds)

    def set_loss(self, rate: float) -> None:
        """Drop this fraction (0..1) of unreliable frames; reliable frames are never dropped."""
        if not 0 <= rate <= 1:
            raise ConfigurationError("loss rate must be between 0 and 1")
        self._loss = float(rate)

    def partition(self, *groups: Iterable[Any]) -> None:
        """Split the network: nodes talk only within their group; unnamed nodes form one more group.

        Each group is an iterable of ``MultipeerConnectivity`` objects (or their transports).
        """
        spec = [list(group) for group in groups]
        with self._lock:
            self._partition_spec = spec
            self._recompute_groups()
            for link in list(self._links.values()):
                if not self._reachable(link.a, link.b):
                    link.broken = True

    def heal(self) -> None:
        """Remove the partition; nodes that are looking find each other again."""
        with self._lock:
            self._partition_spec = None
            self._group_of = None
            nodes = list(self._nodes)
        self._link_all(nodes)

    def kill(self, mc: Any) -> None:
        """Make a node vanish without a goodbye: its links go silent and it cannot be found."""
        node = self._resolve(mc)
        with self._lock:
            self._dead.add(node)
            for link in self._links.values():
                if node in (link.a, link.b):
                    link.broken = True

    # -- internals shared with MemoryTransport ------------------------------------------------------
    def _resolve(self, item: Any) -> MemoryTransport:
        node = item if isinstance(item, MemoryTransport) else getattr(item, "transport", None)
        if not isinstance(node, MemoryTransport) or node.network is not self:
            raise InvalidArgument(f"{item!r} is not a node of this MemoryNetwork")
        return node

    def _recompute_groups(self) -> None:
        if self._partition_spec is None:
            self._group_of = None
            return
        group_of: dict[MemoryTransport, int] = {}
        for index, group in enumerate(self._partition_spec):
            for item in group:
                group_of[self._resolve(item)] = index
        self._group_of = group_of

    def _reachable(self, a: MemoryTransport, b: MemoryTransport) -> bool:
        if a in self._dead or b in self._dead:
            return False
        if self._group_of is None:
            return True
        return self._group_of.get(a, -1) == self._group_of.get(b, -1)

    def _join(self, node: MemoryTransport) -> None:
        with self._lock:
            self._nodes.append(node)

    def _leave(self, node: MemoryTransport) -> None:
        with self._lock:
            if node in self._nodes:
                self._nodes.remove(node)
            links = [link for link in self._links.values() if node in (link.a, link.b)]
        for link in links:
            self._close_side(link, node, "peer ended")

    def _link_all(self, nodes: list[MemoryTransport]) -> None:
        for a, b in itertools.combinations(nodes, 2):
            self._try_link(a, b)

    def _try_link(self, a: MemoryTransport, b: MemoryTransport) -> None:
        with self._lock:
            key = frozenset((a, b))
            if (
                key in self._links
                or a not in self._nodes
                or b not in self._nodes
                or not (a.looking and b.looking)
                or a.local is None
                or b.local is None
                or a.local.service_type != b.local.service_type
                or not self._reachable(a, b)
            ):
                return
            link = _Link(a, b, (next(self._ids), next(self._ids)))
            self._links[key] = link
        a._post(a._link_up, link)
        b._post(b._link_up, link)

    def _close_side(self, link: _Link, side: MemoryTransport, reason: str) -> None:
        """``side`` closed ``link``: tell the other end (unless the path is broken)."""
        with self._lock:
            if side not in link.open_on:
                return
            link.open_on.discard(side)
            other = link.other(side)
            notify = not link.broken and other in link.open_on
            finished = not link.open_on
            if finished:
                self._forget(link)
        side._post(side._link_down, link, reason)
        if notify:
            self._carry(link, side, None)

    def _forget(self, link: _Link) -> None:
        key = frozenset((link.a, link.b))
        if self._links.get(key) is link:
            del self._links[key]
        lived = time.monotonic() - link.opened_at
        failures = 0 if lived > 5.0 else self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = min(_RETRY_MAX, _RETRY_FIRST * (2 ** min(failures, 10)))
        link.a._post(link.a._retry_later, delay, link.b)

    def _carry(self, link: _Link, sender: MemoryTransport, frame: bytes | None) -> None:
        """Move one frame (None: the close marker) from ``sender`` to the other end, in order."""
        receiver = link.other(sender)
        now = time.monotonic()
        at = max(now + self._latency, link.last_at[sender]) if self._latency else now
        link.last_at[sender] = at
        if frame is not None:
            with link.lock:
                link.flight[sender] += len(frame)
                filled = not link.full[sender] and link.flight[sender] > FLIGHT_HIGH
                if filled:
                    link.full[sender] = True
            if filled:
                link.sync_writable(sender, here=True)  # _carry of a frame runs in sender.send()
        receiver._post(receiver._arrive, link, frame, at)


class MemoryTransport(Transport):
    """One node's attachment to a MemoryNetwork."""

    name = "memory"
    max_frame_size = 64 * 1024

    def __init__(self, network: MemoryNetwork | None = None) -> None:
        self.network = network if network is not None else MemoryNetwork.default()
        self.local: LocalNode | None = None
        self.looking = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: LinkListener | None = None
        self._links: dict[int, _Link] = {}
        self._closed = False

    def __repr__(self) -> str:
        name = self.local.display_name if self.local else "?"
        return f"<MemoryTransport {name!r} links={len(self._links)}>"

    # -- Transport --------------------------------------------------------------------------------
    def open(self, loop: asyncio.AbstractEventLoop, listener: LinkListener, local: LocalNode) -> None:
        """Attach to the network (invisible until start_discovery)."""
        self._loop, self._listener, self.local = loop, listener, local
        self.network._join(self)

    def start_discovery(self) -> None:
        """Become visible and link with every other node that is looking."""
        self.looking = True
        with self.network._lock:
            others = [node for node in self.network._nodes if node is not self]
        for other in others:
            self.network._try_link(self, other)

    def stop_discovery(self) -> None:
        """Stop being found and finding others; live links stay."""
        self.looking = False

    def send(self, link: LinkId, frame: bytes, reliable: bool = True) -> bool:
        """Hand one frame to the network (copied; delivered asynchronously)."""
        entry = self._links.get(link)  # type: ignore[call-overload]
        if entry is None:
            return False
        network = self.network
        if entry.broken or entry.other(self) not in entry.open_on:
            return True  # lost on the wire, like bytes sent into a dead path
        if not reliable and network._loss and network._rng.random() < network._loss:
            return True
        network._carry(entry, self, bytes(frame))
        return True

    def buffered(self, link: LinkId) -> int | None:
        """Bytes sent on ``link`` that the other end has not taken yet (in flight)."""
        entry: _Link | None = self._links.get(link)  # type: ignore[call-overload]
        return None if entry is None else entry.flight[self]

    def pause_reading(self, link: LinkId, paused: bool) -> None:
        """Stop or resume delivering frames of ``link``; the sender's side is told the link is
        not writable meanwhile (as a full socket buffer would tell it)."""
        entry = self._links.get(link)  # type: ignore[call-overload]
        if entry is None or entry.paused[self] == paused:
            return
        with entry.lock:
            entry.paused[self] = paused
        entry.sync_writable(entry.other(self))
        if not paused and not entry.waiting[self]:
            self._drain(entry)

    def close_link(self, link: LinkId, reason: str = "closed") -> None:
        """Close one link; the other end learns it after the frames already sent."""
        entry = self._links.get(link)  # type: ignore[call-overload]
        if entry is not None:
            self.network._close_side(entry, self, reason)

    async def aclose(self) -> None:
        """Leave the network, closing every link."""
        self._closed = True
        self.looking = False
        self.network._leave(self)
        self._links.clear()
        self._listener = None

    # -- called on this node's loop -----------------------------------------------------------------
    def _post(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the node's loop has stopped

    def _link_up(self, link: _Link) -> None:
        if self._closed or self not in link.open_on or self._listener is None:
            return
        link_id = link.ids[self]
        self._links[link_id] = link
        self._listener.link_up(link_id, f"memory/{id(link.other(self)):x}")

    def _link_down(self, link: _Link, reason: str) -> None:
        link_id = link.ids[self]
        if self._links.pop(link_id, None) is not None and self._listener is not None:
            self._listener.link_down(link_id, reason)

    def _arrive(self, link: _Link, frame: bytes | None, at: float) -> None:
        link.inbox[self].append((at, frame))
        if not link.waiting[self]:
            self._drain(link)

    def _report_writable(self, link: _Link) -> None:
        # The state now, not when the report was posted: reports posted from the other side
        # may arrive after a newer one made here.
        link_id = link.ids[self]
        if link_id in self._links and self._listener is not None:
            self._listener.link_writable(link_id, link.told[self])

    def _drain(self, link: _Link) -> None:
        # Frames leave the inbox strictly in arrival order, each no earlier than its time.
        assert self._loop is not None
        inbox = link.inbox[self]
        link.waiting[self] = False
        while inbox and not link.paused[self]:
            at, frame = inbox[0]
            delay = at - time.monotonic()
            if delay > 0:
                link.waiting[self] = True
                self._loop.call_later(delay, self._drain, link)
                return
            inbox.popleft()
            self._deliver(link, frame)

    def _deliver(self, link: _Link, frame: bytes | None) -> None:
        if frame is not None:
            sender = link.other(self)
            with link.lock:
                link.flight[sender] -= len(frame)
                drained = link.full[sender] and link.flight[sender] < FLIGHT_LOW
                if drained:
                    link.full[sender] = False
            if drained:
                link.sync_writable(sender)
        link_id = link.ids[self]
        if link_id not in self._links or link.broken or self._listener is None:
            return
        if frame is None:
            self.network._close_side(link, self, "closed by peer")
        else:
            self._listener.link_frame(link_id, frame)

    def _retry_later(self, delay: float, other: MemoryTransport) -> None:
        assert self._loop is not None
        self._loop.call_later(delay, self.network._try_link, self, other)
