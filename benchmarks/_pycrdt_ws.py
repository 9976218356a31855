"""pycrdt-websocket on loopback: a WebsocketServer and two pycrdt Providers over TLS websockets.

Needs ``pip install pycrdt-websocket websockets``. Measures the same two figures as the mpstore
store benchmark: median one-way latency of one edit (client 1 -> server -> client 2) and
replicated edits per second for a burst of edits to one key.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from pycrdt import Doc, Map, Provider
from pycrdt.websocket import WebsocketServer
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from mpstore.transports._lan._tls import TlsIdentity


class _Channel:
    """pycrdt's Channel protocol over a `websockets` connection."""

    def __init__(self, ws: Any, path: str) -> None:
        self._ws = ws
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> _Channel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except Exception:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        await self._ws.send(message)

    async def recv(self) -> bytes:
        data = await self._ws.recv()
        return bytes(data) if not isinstance(data, str) else data.encode()


async def _run(latency_edits: int, burst: int) -> tuple[float, float]:
    server_id, client_id = TlsIdentity(), TlsIdentity()
    async with WebsocketServer() as ws_server:

        async def handler(ws: Any) -> None:
            await ws_server.serve(_Channel(ws, ws.request.path))

        async with serve(handler, "127.0.0.1", 0, ssl=server_id.server_context) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            url = f"wss://127.0.0.1:{port}/bench"
            docs = [Doc(), Doc()]
            maps = [doc.get("m", type=Map) for doc in docs]
            async with (
                connect(url, ssl=client_id.client_context, server_hostname="mpstore") as ws1,
                connect(url, ssl=client_id.client_context, server_hostname="mpstore") as ws2,
                Provider(docs[0], _Channel(ws1, "/bench")),
                Provider(docs[1], _Channel(ws2, "/bench")),
            ):
                await asyncio.sleep(0.2)
                samples = []
                for i in range(latency_edits):
                    key = f"k{i}"
                    t0 = time.perf_counter()
                    maps[0][key] = "v"
                    deadline = t0 + 5
                    while key not in maps[1] and time.perf_counter() < deadline:
                        await asyncio.sleep(0)
                    samples.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                for i in range(burst):
                    maps[0]["n"] = str(i)
                    if i % 64 == 63:
                        await asyncio.sleep(0)  # let the provider send, as a live app would
                last = str(burst - 1)
                deadline = t0 + 120
                while maps[1].get("n") != last and time.perf_counter() < deadline:
                    await asyncio.sleep(0.001)
                rate = burst / (time.perf_counter() - t0)
    return statistics.median(samples), rate


def pycrdt_websocket_figures(latency_edits: int = 200, burst: int = 5000) -> tuple[float, float]:
    """(median one-way edit latency in s, replicated edits per second)."""
    return asyncio.run(_run(latency_edits, burst))


if __name__ == "__main__":
    lat, rate = pycrdt_websocket_figures()
    print(f"pycrdt-websocket: edit latency median {lat * 1e3:.2f} ms, {rate:,.0f} edits/s")
