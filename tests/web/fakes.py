"""A y-websocket room relay with no mpstore behind it: tests the endpoint's I/O on its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from pycrdt import Doc, create_sync_message, create_update_message, handle_sync_message

from mpstore._syncproto import encode_sync_step1


class _Room:
    def __init__(self) -> None:
        self.doc: Doc = Doc()
        self.pages: list[RelayAttachment] = []
        self.doc.observe(self._on_update)
        self.origin: RelayAttachment | None = None

    def _on_update(self, event: Any) -> None:
        message = create_update_message(event.update)
        for page in self.pages:
            if page is not self.origin:
                page.send_sync(message)


class RelayAttachment:
    """One page in a relay room: sync through a pycrdt Doc, awareness passed to every page."""

    def __init__(
        self, room: _Room, send_sync: Callable[[bytes], None], send_awareness: Callable[[bytes], None]
    ) -> None:
        self.room = room
        self.send_sync = send_sync
        self.send_awareness = send_awareness
        room.pages.append(self)
        send_sync(create_sync_message(room.doc))

    def receive_sync(self, message: bytes) -> None:
        self.room.origin = self
        try:
            reply = handle_sync_message(message[1:], self.room.doc)
        finally:
            self.room.origin = None
        if reply is not None:
            self.send_sync(reply)

    def receive_awareness(self, update: bytes) -> None:
        for page in self.room.pages:
            page.send_awareness(update)

    def query_awareness(self) -> None:
        pass

    def writable(self) -> None:
        pass

    def detach(self) -> None:
        self.room.pages.remove(self)


class RelayBackend:
    """Rooms by name, each a pycrdt Doc."""

    def __init__(self) -> None:
        self.rooms: dict[str, _Room] = {}
        self.attached = 0

    def attach(self, room: str, send_sync: Callable[[bytes], None], send_awareness: Callable[[bytes], None],
               can_send: Callable[[], bool]) -> RelayAttachment:
        self.attached += 1
        return RelayAttachment(self.rooms.setdefault(room, _Room()), send_sync, send_awareness)


class LoopThread:
    """An asyncio loop on a thread of its own, for a WebServer without an mpstore node."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-web-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any], timeout: float = 30) -> Any:
        async def go() -> Any:
            return fn()

        return self.run(go(), timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


__all__ = ["LoopThread", "RelayBackend", "encode_sync_step1"]
