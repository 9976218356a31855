"""Sans-IO per-peer outbox of store messages: in order, bundled, paced, and released as the
link drains (no threads, no clocks: ``now`` is passed in, deadlines come out).

:class:`~mpstore._docsync.DocSync` says *what* to send; the outbox decides *when*. For each
peer it keeps a FIFO of whole store messages and hands out wire messages:

* consecutive small messages leave as one BUNDLE (at most ``bundle_size`` bytes), so a burst
  costs one session message per flush, not one per edit;
* a message larger than ``part_size`` (a big snapshot) leaves as PART slices cut lazily, one at
  a time, so only the message itself is held, never a second copy in slices;
* each peer has a token bucket at ``rate`` messages per second (a share of the rate the peer
  advertised; ``None`` for no limit); :meth:`next_deadline` says when a peer held back by it
  may send again;
* while the transport reports the link not writable, nothing is released to it; the caller
  also releases at most ``max_bytes`` per call (:meth:`take`), then lets the transport report
  its buffer before taking more.

Nothing queued is dropped except by :meth:`remove_peer` (the peer is gone: it resyncs by state
vector when it returns).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from ._docsync import K_BUNDLE, K_PART, PART_SIZE, VERSION, write_varbytes, write_varuint

__all__ = ["Outbox"]

log = logging.getLogger("mpstore.store")

#: Fraction of a peer's advertised message rate the store uses (the app's sends use 0.75).
STORE_RATE_SHARE: Final = 0.2


@dataclass
class _Peer:
    rate: float | None
    tokens: float
    at: float
    writable: bool = True
    # Whole messages, or iterators of messages made when their turn comes (a streamed snapshot).
    queue: deque[bytes | Iterator[bytes]] = field(default_factory=deque)
    queued_bytes: int = 0
    # The message being sliced into PART messages: (payload, message id, next index, count).
    slicing: tuple[bytes, int, int, int] | None = None


class Outbox:
    """Store messages waiting for each peer (see the module docstring)."""

    def __init__(self, *, bundle_size: int = PART_SIZE, part_size: int = PART_SIZE) -> None:
        self.bundle_size = bundle_size
        self.part_size = part_size
        self._peers: dict[str, _Peer] = {}
        self._part_id = 0

    # -- membership and signals

    def add_peer(self, pid: str, rate: float | None, now: float) -> None:
        """Start an empty queue for ``pid``; ``rate`` is the peer's advertised message rate."""
        store_rate = None if not rate or rate <= 0 else rate * STORE_RATE_SHARE
        self._peers[pid] = _Peer(store_rate, self._capacity(store_rate), now)

    def remove_peer(self, pid: str) -> int:
        """Forget ``pid`` and what waited for it; return how many messages were dropped."""
        peer = self._peers.pop(pid, None)
        if peer is None:
            return 0
        return len(peer.queue) + (peer.slicing is not None)

    def set_writable(self, pid: str, writable: bool) -> None:
        """The transport says whether ``pid``'s link takes more now."""
        peer = self._peers.get(pid)
        if peer is not None:
            peer.writable = writable

    def push(self, pid: str, payload: bytes | Iterator[bytes]) -> None:
        """Queue one whole store message for ``pid``, or an iterator of messages to be made
        one at a time when their turn comes (ignored for an unknown peer)."""
        peer = self._peers.get(pid)
        if peer is not None:
            peer.queue.append(payload)
            if isinstance(payload, bytes):
                peer.queued_bytes += len(payload)

    # -- state

    def __contains__(self, pid: object) -> bool:
        return pid in self._peers

    def waiting(self, pid: str | None = None) -> int:
        """Bytes still queued for ``pid`` (or for everyone)."""
        peers = self._peers.values() if pid is None else [self._peers[pid]] if pid in self._peers else []
        total = 0
        for peer in peers:
            total += peer.queued_bytes
            if peer.slicing is not None:
                payload, _, index, _ = peer.slicing
                total += max(0, len(payload) - index * self.part_size)
        return total

    def has_work(self, pid: str) -> bool:
        """True if ``pid`` has something queued (released or not)."""
        peer = self._peers.get(pid)
        return peer is not None and (bool(peer.queue) or peer.slicing is not None)

    def next_deadline(self, now: float) -> float | None:
        """When a peer with work whose link is writable may send again (None: no such)."""
        best: float | None = None
        for peer in self._peers.values():
            if not peer.writable or not (peer.queue or peer.slicing is not None):
                continue
            if peer.rate is None:
                return now
            self._refill(peer, now)
            at = now if peer.tokens >= 1 else now + (1 - peer.tokens) / peer.rate
            best = at if best is None else min(best, at)
        return best

    # -- releasing

    def take(self, pid: str, now: float, max_bytes: int) -> list[bytes]:
        """Wire messages for ``pid`` to send now, about ``max_bytes`` at most (at least one
        message when anything may go at all)."""
        peer = self._peers.get(pid)
        out: list[bytes] = []
        if peer is None:
            return out
        sent = 0
        while peer.writable and sent < max_bytes and (peer.queue or peer.slicing is not None):
            if peer.rate is not None:
                self._refill(peer, now)
                if peer.tokens < 1:
                    break
                peer.tokens -= 1
            message = self._next_message(peer)
            if message is None:  # a stream ended with nothing more
                if peer.rate is not None:
                    peer.tokens += 1
                break
            out.append(message)
            sent += len(message)
        return out

    def _next_message(self, peer: _Peer) -> bytes | None:
        while peer.slicing is None and peer.queue and not isinstance(peer.queue[0], bytes):
            stream = peer.queue[0]
            try:
                made = next(stream)
            except StopIteration:
                peer.queue.popleft()
                continue
            except Exception:
                log.exception("a streamed store message failed; the rest of it is dropped")
                peer.queue.popleft()
                continue
            if len(made) > self.part_size:
                self._start_slicing(peer, made)
            else:
                return made
        if peer.slicing is None:
            if not peer.queue:
                return None
            head = peer.queue[0]
            assert isinstance(head, bytes)
            if len(head) > self.part_size:
                peer.queue.popleft()
                peer.queued_bytes -= len(head)
                self._start_slicing(peer, head)
        if peer.slicing is not None:
            payload, msg_id, index, count = peer.slicing
            out = bytearray((VERSION, K_PART))
            write_varuint(out, msg_id)
            write_varuint(out, index)
            write_varuint(out, count)
            write_varbytes(out, payload[index * self.part_size : (index + 1) * self.part_size])
            peer.slicing = None if index + 1 == count else (payload, msg_id, index + 1, count)
            return bytes(out)
        first = peer.queue.popleft()
        assert isinstance(first, bytes)
        peer.queued_bytes -= len(first)
        group = [first]
        size = len(first)
        while peer.queue:
            nxt = peer.queue[0]
            if not isinstance(nxt, bytes) or len(nxt) > self.part_size or size + len(nxt) > self.bundle_size:
                break
            peer.queue.popleft()
            group.append(nxt)
            peer.queued_bytes -= len(nxt)
            size += len(nxt)
        if len(group) == 1:
            return first
        return _bundle(group)

    def _start_slicing(self, peer: _Peer, payload: bytes) -> None:
        self._part_id += 1
        peer.slicing = (payload, self._part_id, 0, -(-len(payload) // self.part_size))

    def _refill(self, peer: _Peer, now: float) -> None:
        assert peer.rate is not None
        peer.tokens = min(self._capacity(peer.rate), peer.tokens + (now - peer.at) * peer.rate)
        peer.at = now

    @staticmethod
    def _capacity(rate: float | None) -> float:
        # One second of the store's share: with the app's bucket (one second of its share at
        # most the full rate) the sum stays under the burst a session allows (two seconds).
        return 1.0 if rate is None else max(1.0, rate)


def _bundle(payloads: list[bytes]) -> bytes:
    out = bytearray((VERSION, K_BUNDLE))
    write_varuint(out, len(payloads))
    for payload in payloads:
        write_varbytes(out, payload)
    return bytes(out)
