"""The y-websocket dialect against a third server: pycrdt-websocket (Python), on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.yserver.test_loopback import groups

pytest.importorskip("pycrdt.websocket")


class _Channel:
    """pycrdt-websocket's channel over a `websockets` server connection."""

    def __init__(self, ws: Any, path: str) -> None:
        self._ws, self.path = ws, path

    def __aiter__(self) -> _Channel:
        return self

    async def __anext__(self) -> bytes:
        try:
            data = await self._ws.recv()
        except Exception:
            raise StopAsyncIteration from None
        return bytes(data) if not isinstance(data, str) else data.encode()

    async def send(self, message: bytes) -> None:
        await self._ws.send(message)

    async def recv(self) -> bytes:
        return await self.__anext__()


@pytest.fixture
def pycrdt_server() -> Iterator[str]:
    from pycrdt.websocket import WebsocketServer
    from websockets.asyncio.server import serve

    ports: list[int] = []
    stop = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        async with WebsocketServer() as rooms:

            async def handler(ws: Any) -> None:
                await rooms.serve(_Channel(ws, ws.request.path))

            async with serve(handler, "127.0.0.1", 0) as server:
                ports.append(next(iter(server.sockets)).getsockname()[1])
                while not stop.is_set():
                    await asyncio.sleep(0.05)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="pycrdt-websocket-server")
    thread.start()
    deadline = time.monotonic() + 15
    while not ports and not failure and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert ports, f"pycrdt-websocket did not start: {failure}"
        yield f"ws://127.0.0.1:{ports[0]}"
    finally:
        stop.set()
        thread.join(timeout=15)


def test_two_groups_converge_through_pycrdt_websocket(pycrdt_server: str) -> None:
    with groups() as make:
        a1, a2, b = make("a1", "a"), make("a2", "a"), make("b", "b")
        a1.wait_for_peers(1, timeout=10)
        a1.connect_server(pycrdt_server, "board").wait_synced(15)
        b.connect_server(pycrdt_server, "board").wait_synced(15)
        stores = [n.shared_dict("board") for n in (a1, a2, b)]
        for i, s in enumerate(stores):
            s[f"k{i}"] = [i, b"\x01", 2**60]
        expected = {f"k{i}": [i, b"\x01", 2**60] for i in range(3)}
        for s in stores:
            s.wait_for(lambda d: d.to_dict() == expected, timeout=20)
