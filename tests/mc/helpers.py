"""Test helpers: a loop thread like the core's, and a listener that records link events."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from mpstore.transports.base import LinkId, LocalNode
from mpstore.transports.mc.bridge import Bridge
from mpstore.transports.mc.transport import MCTransport

T = TypeVar("T")


class LoopThread:
    """An asyncio loop on its own thread, standing in for the core thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-core-loop")
        self.thread.start()

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Recorder:
    """A LinkListener that records every call and checks it came on the loop thread."""

    def __init__(self, loop: LoopThread) -> None:
        self._loop_thread = loop.thread
        self.events: list[tuple[Any, ...]] = []
        self.wrong_thread: list[str] = []
        self._cv = threading.Condition()

    def _add(self, ev: tuple[Any, ...]) -> None:
        if threading.current_thread() is not self._loop_thread:
            self.wrong_thread.append(f"{ev[0]} on {threading.current_thread().name}")
        with self._cv:
            self.events.append(ev)
            self._cv.notify_all()

    def link_up(self, link: LinkId, address: str | None) -> None:
        self._add(("up", link, address))

    def link_frame(self, link: LinkId, frame: bytes) -> None:
        self._add(("frame", link, frame))

    def link_down(self, link: LinkId, reason: str) -> None:
        self._add(("down", link, reason))

    def link_writable(self, link: LinkId, writable: bool) -> None:
        self._add(("writable", link, writable))

    def kinds(self, kind: str) -> list[tuple[Any, ...]]:
        with self._cv:
            return [e for e in self.events if e[0] == kind]

    def live(self) -> list[LinkId]:
        """Links up and not yet down, in order."""
        with self._cv:
            up = [e[1] for e in self.events if e[0] == "up"]
            down = {e[1] for e in self.events if e[0] == "down"}
        return [lk for lk in up if lk not in down]

    def frames(self, link: LinkId | None = None) -> list[bytes]:
        with self._cv:
            return [e[2] for e in self.events if e[0] == "frame" and link in (None, e[1])]

    def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))
        return True


class Node:
    """One device: an MCTransport on a bridge, opened on the loop thread."""

    def __init__(
        self,
        loop: LoopThread,
        bridge: Bridge,
        name: str,
        *,
        service: str = "chat",
        node_id: str | None = None,
        info: dict[str, str] | None = None,
        invite_timeout: float = 2.0,
    ) -> None:
        self.loop = loop
        self.name = name
        self.failures: list[Exception] = []
        self.transport = MCTransport(
            bridge,
            invite_timeout=invite_timeout,
            retry_delay=0.05,
            flush_grace=0.05,
            on_failure=self.failures.append,
        )
        self.rec = Recorder(loop)
        self.local = LocalNode(
            peer_id=node_id or secrets.token_hex(8),
            display_name=name,
            service_type=service,
            discovery_info=info or {},
        )
        loop.call(lambda: self.transport.open(loop.loop, self.rec, self.local))
        self.closed = False

    def start(self) -> None:
        self.loop.call(self.transport.start_discovery)

    def stop(self) -> None:
        self.loop.call(self.transport.stop_discovery)

    def send(self, link: LinkId, frame: bytes, reliable: bool = True) -> bool:
        return self.loop.call(lambda: self.transport.send(link, frame, reliable))

    def close_link(self, link: LinkId, reason: str = "test") -> None:
        self.loop.call(lambda: self.transport.close_link(link, reason))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.run(self.transport.aclose())

    def wait_links(self, n: int, timeout: float = 5.0) -> bool:
        return self.rec.wait(lambda: len(self.rec.live()) == n, timeout)
