"""A fake core for store tests: managers on one in-process network, pumped by hand.

"Core thread" work runs inline under a per-node lock; dispatched callbacks run inline too (or
on a real thread with ThreadedHost). Messages are queued per directed link, FIFO, and delivered
only by ``FakeNet.pump`` so tests decide the interleaving.
"""

from __future__ import annotations

import queue
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from mpstore._errors import Closed
from mpstore._store import SharedDict, StoreChange, StoreManager

T = TypeVar("T")


class FakePeer:
    """Stands in for mpstore.PeerID."""

    def __init__(self, pid: str, display_name: str) -> None:
        self.id = pid
        self.display_name = display_name
        self.discovery_info: dict[str, str] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakePeer) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<FakePeer {self.display_name}>"


class FakeHost:
    """The host side of one node, with inline core and dispatcher."""

    def __init__(self, net: FakeNet, peer: FakePeer) -> None:
        self.net = net
        self.peer = peer
        self.core_lock = threading.RLock()
        self.closed = False
        self.store_changes: list[tuple[str, StoreChange]] = []
        self.dispatched: list[Callable[[], None]] = []
        self.inline_dispatch = True

    @property
    def local_id(self) -> str:
        return self.peer.id

    def call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        if self.closed:
            raise Closed("closed")
        with self.core_lock:
            return fn()

    def post(self, fn: Callable[[], None]) -> None:
        with self.core_lock:
            fn()

    def dispatch(self, fn: Callable[[], None]) -> None:
        if self.inline_dispatch:
            fn()
        else:
            self.dispatched.append(fn)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self.net.timers.append((self, fn))

    def run_dispatched(self) -> None:
        while self.dispatched:
            self.dispatched.pop(0)()

    def send_sync(self, peer: Any, payload: bytes) -> None:
        self.net.enqueue(self.peer.id, peer.id, bytes(payload))

    def peer_rate(self, peer_id: str) -> float | None:
        return self.net.rate

    def connected_peers(self) -> list[Any]:
        return [self.net.nodes[p].peer for p in self.net.neighbours(self.peer.id)]

    def peer_by_id(self, peer_id: str) -> Any | None:
        node = self.net.nodes.get(peer_id)
        return None if node is None else node.peer

    def store_changed(self, store: SharedDict, change: StoreChange) -> None:
        self.store_changes.append((store.name, change))


class Node:
    """One simulated device."""

    def __init__(self, net: FakeNet, name: str, engine: str | None = None) -> None:
        self.peer = FakePeer(f"{net.rng.getrandbits(64):016x}", name)
        self.host = FakeHost(net, self.peer)
        self.manager = StoreManager(self.host, engine)

    def store(self, name: str = "s") -> SharedDict:
        return self.manager.shared_dict(name)

    def core(self, fn: Callable[[], T]) -> T:
        return self.host.call(fn)


class FakeNet:
    """Links between nodes with per-direction FIFO queues."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.nodes: dict[str, Node] = {}
        self.queues: dict[tuple[str, str], deque[bytes]] = {}
        self.lock = threading.Lock()
        self.frames = 0
        self.rate: float | None = None  # the message rate every peer advertises
        self.timers: list[tuple[FakeHost, Callable[[], None]]] = []

    def add(self, name: str, engine: str | None = None) -> Node:
        node = Node(self, name, engine)
        self.nodes[node.peer.id] = node
        return node

    def neighbours(self, pid: str) -> list[str]:
        return [b for (a, b) in self.queues if a == pid]

    def linked(self, a: Node, b: Node) -> bool:
        return (a.peer.id, b.peer.id) in self.queues

    def connect(self, a: Node, b: Node) -> None:
        if self.linked(a, b) or a is b:
            return
        self.queues[(a.peer.id, b.peer.id)] = deque()
        self.queues[(b.peer.id, a.peer.id)] = deque()
        a.core(lambda: a.manager.peer_added(b.peer))
        b.core(lambda: b.manager.peer_added(a.peer))

    def disconnect(self, a: Node, b: Node) -> None:
        """Cut a link: what was in flight on it is lost."""
        if not self.linked(a, b):
            return
        del self.queues[(a.peer.id, b.peer.id)]
        del self.queues[(b.peer.id, a.peer.id)]
        a.core(lambda: a.manager.peer_removed(b.peer))
        b.core(lambda: b.manager.peer_removed(a.peer))

    def kill(self, a: Node) -> None:
        for pid in list(self.neighbours(a.peer.id)):
            self.disconnect(a, self.nodes[pid])
        a.core(a.manager.close)
        a.host.closed = True
        del self.nodes[a.peer.id]

    def enqueue(self, src: str, dst: str, payload: bytes) -> None:
        with self.lock:
            q = self.queues.get((src, dst))
            if q is not None:
                q.append(payload)
                self.frames += 1

    def pending(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def step(self, pick: Callable[[list[tuple[str, str]]], tuple[str, str]] | None = None) -> bool:
        """Deliver one message (from a random non-empty link, or the one ``pick`` chooses)."""
        with self.lock:
            ready = [k for k, q in self.queues.items() if q]
            if not ready:
                if not self.timers:
                    return False
                host, fn = self.timers.pop(0)
        if not ready:
            if not host.closed:
                host.call(fn)
            return True
        with self.lock:
            key = pick(ready) if pick else self.rng.choice(ready)
            payload = self.queues[key].popleft()
        src, dst = key
        node = self.nodes[dst]
        peer = self.nodes[src].peer
        node.core(lambda: node.manager.message(peer, payload))
        return True

    def pump(self, max_steps: int = 1_000_000) -> int:
        """Deliver until quiet; return the number of messages delivered."""
        n = 0
        while n < max_steps and self.step():
            n += 1
        assert self.pending() == 0, "network did not go quiet"
        return n

    def full_mesh(self, nodes: list[Node]) -> None:
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                self.connect(a, b)


class ThreadedHost(FakeHost):
    """A FakeHost with a real core thread and a real dispatcher thread."""

    def __init__(self, net: FakeNet, peer: FakePeer) -> None:
        super().__init__(net, peer)
        self._core_q: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._disp_q: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.core_thread = threading.Thread(target=self._run, args=(self._core_q,), daemon=True)
        self.disp_thread = threading.Thread(target=self._run, args=(self._disp_q,), daemon=True)
        self.core_thread.start()
        self.disp_thread.start()

    @staticmethod
    def _run(q: queue.Queue[Callable[[], None] | None]) -> None:
        while True:
            fn = q.get()
            if fn is None:
                return
            fn()

    def call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        if self.closed:
            raise Closed("closed")
        if threading.current_thread() is self.core_thread:
            return fn()
        box: list[Any] = []
        done = threading.Event()

        def run() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:
                box.append((False, exc))
            done.set()

        self._core_q.put(run)
        if not done.wait(10 if timeout is None else timeout):
            raise TimeoutError("core call timed out")
        ok, value = box[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def post(self, fn: Callable[[], None]) -> None:
        self._core_q.put(fn)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self._core_q.put(fn)

    def dispatch(self, fn: Callable[[], None]) -> None:
        self._disp_q.put(fn)

    def drain(self) -> None:
        """Wait until both threads have done everything queued so far."""
        for q in (self._core_q, self._disp_q):
            done = threading.Event()
            q.put(done.set)
            assert done.wait(10)

    def stop(self) -> None:
        self.closed = True
        self._core_q.put(None)
        self._disp_q.put(None)
        self.core_thread.join(10)
        self.disp_thread.join(10)
