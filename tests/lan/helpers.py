"""Helpers for LAN transport tests: a recording listener and bounded waits."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from mpstore.transports.base import LinkId, LocalNode
from mpstore.transports.lan import LanTransport


class Recorder:
    """A LinkListener that records every callback."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, Any]] = []
        self.frames: dict[LinkId, list[bytes]] = {}
        self.up: dict[LinkId, str | None] = {}
        self.down: dict[LinkId, str] = {}
        self.closed = False

    def _check(self) -> None:
        assert not self.closed, "callback after aclose() returned"

    def link_up(self, link: LinkId, address: str | None) -> None:
        self._check()
        self.events.append(("up", link, address))
        self.up[link] = address
        self.frames[link] = []

    def link_frame(self, link: LinkId, frame: bytes) -> None:
        self._check()
        assert link in self.up and link not in self.down
        self.frames[link].append(frame)

    def link_down(self, link: LinkId, reason: str) -> None:
        self._check()
        assert link in self.up and link not in self.down
        self.events.append(("down", link, reason))
        self.down[link] = reason

    def link_writable(self, link: LinkId, writable: bool) -> None:
        self._check()
        self.events.append(("writable", link, writable))

    def live(self) -> list[LinkId]:
        """Links up and not down."""
        return [link for link in self.up if link not in self.down]


def free_ports(n: int) -> list[int]:
    """n TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make(
    peer_id: str,
    service: str = "test",
    *,
    name: str = "node",
    recorder: Recorder | None = None,
    **kwargs: Any,
) -> tuple[LanTransport, Recorder]:
    """Open a loopback-only static LanTransport on the running loop."""
    kwargs.setdefault("host", "127.0.0.1")
    kwargs.setdefault("discovery", False)
    kwargs.setdefault("ip_version", "v4")
    kwargs.setdefault("connect_timeout", 2.0)
    t = LanTransport(**kwargs)
    r = recorder if recorder is not None else Recorder()
    t.open(asyncio.get_running_loop(), r, LocalNode(peer_id, name, service))
    return t, r


async def wait_until(cond: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Poll ``cond`` every 10 ms until true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.01)


async def close_all(*pairs: tuple[LanTransport, Recorder]) -> None:
    """aclose every transport, then forbid further callbacks."""
    for t, r in pairs:
        await t.aclose()
        r.closed = True


def run(coro: Coroutine[Any, Any, Any] | Awaitable[Any], timeout: float = 30.0) -> Any:
    """Run a test coroutine on a fresh loop, bounded in time; fail if tasks are left."""

    async def main() -> Any:
        result = await asyncio.wait_for(coro, timeout)
        await asyncio.sleep(0)
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not left, f"tasks left behind: {left}"
        return result

    return asyncio.run(main())
