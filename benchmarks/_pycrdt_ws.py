"""pycrdt-websocket on loopback, one process per role: the child roles ``benchmarks/lan.py`` runs.

Needs ``pip install pycrdt-websocket websockets`` (the ``bench`` extra). Roles:

- ``server COMPRESSION``: a ``WebsocketServer`` behind a ``websockets`` TLS server; reports its port.
- ``reader PORT EDITS LAT COMPRESSION``: a pycrdt ``Provider``; stamps when its map observer sees
  each timed edit and acknowledges it with an edit of its own; reports when it has seen all
  EDITS burst keys.
- ``writer PORT EDITS LAT COMPRESSION``: a pycrdt ``Provider``; writes LAT timed edits one at a
  time (each waits for the reader's acknowledgement), then a burst of EDITS distinct keys, one
  transaction each, yielding to the event loop every 64 edits so the provider sends as a live
  app's would.

COMPRESSION is ``on`` (permessage-deflate, the ``websockets`` default) or ``off``, on both ends.
Times are ``time.monotonic()`` (one clock for all processes on Linux).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._procs import now, say


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


def _compression(flag: str) -> str | None:
    return "deflate" if flag == "on" else None


async def _stdin_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def server(compression: str) -> None:
    from pycrdt.websocket import WebsocketServer
    from websockets.asyncio.server import serve

    from mpstore.transports._lan._tls import TlsIdentity

    ident = TlsIdentity()
    async with WebsocketServer() as ws_server:

        async def handler(ws: Any) -> None:
            await ws_server.serve(_Channel(ws, ws.request.path))

        async with serve(
            handler, "127.0.0.1", 0, ssl=ident.server_context, compression=_compression(compression)
        ) as srv:
            say(port=next(iter(srv.sockets)).getsockname()[1])
            await _stdin_line()


async def _client(port: int, compression: str, body: Any) -> None:
    from pycrdt import Doc, Map, Provider
    from websockets.asyncio.client import connect

    from mpstore.transports._lan._tls import TlsIdentity

    ident = TlsIdentity()
    doc: Doc = Doc()
    m = doc.get("m", type=Map)
    url = f"wss://127.0.0.1:{port}/bench"
    async with (
        connect(
            url,
            ssl=ident.client_context,
            server_hostname="mpstore",
            compression=_compression(compression),
            max_size=None,
        ) as ws,
        Provider(doc, _Channel(ws, "/bench")) as provider,
    ):
        await provider.synced.wait()
        await body(m)


async def reader(port: int, edits: int, lat: int, compression: str) -> None:
    loop = asyncio.get_running_loop()
    seen = [0.0] * lat
    count = [0]
    finished = asyncio.Event()

    async def body(m: Any) -> None:
        def on_change(event: Any) -> None:
            t = now()
            for key in event.keys:
                if key[0] == "l":
                    i = int(key[3:])
                    seen[i] = t
                    loop.call_soon(m.__setitem__, "ack", i)  # not inside the observer's transaction
                    if i == lat - 1:
                        loop.call_soon(finished.set)
                elif key[0] == "k":
                    count[0] += 1
                    if count[0] == edits:
                        say(done=t)

        sub = m.observe(on_change)
        say(synced=True)
        await finished.wait()
        await asyncio.sleep(0.05)  # let the last acknowledgement go out
        say(seen=seen)
        await _stdin_line()
        m.unobserve(sub)

    await _client(port, compression, body)


async def writer(port: int, edits: int, lat: int, compression: str) -> None:
    acked = [-1]
    got = asyncio.Event()

    async def body(m: Any) -> None:
        def on_change(event: Any) -> None:
            change = event.keys.get("ack")
            if change is not None and "newValue" in change:
                acked[0] = int(change["newValue"])
                got.set()

        sub = m.observe(on_change)
        await asyncio.sleep(0.3)  # as mpstore's writer: let the sync handshake settle
        say(ready=True)
        await _stdin_line()  # go
        sent = []
        for i in range(lat):
            sent.append(now())
            m[f"lat{i}"] = i
            while acked[0] != i:
                got.clear()
                await asyncio.wait_for(got.wait(), 60)
        t0 = now()
        for i in range(edits):
            m[f"k{i}"] = i
            if i % 64 == 63:
                await asyncio.sleep(0)
        say(sent=sent, start=t0)
        await _stdin_line()
        m.unobserve(sub)

    await _client(port, compression, body)


def main(argv: list[str]) -> None:
    """``--child ROLE ARGS...`` as started by lan.py."""
    if len(argv) < 2 or argv[0] != "--child":
        raise SystemExit("run benchmarks/lan.py; this module holds its pycrdt-websocket child roles")
    role, args = argv[1], argv[2:]
    if role == "server":
        asyncio.run(server(args[0]))
    elif role in ("reader", "writer"):
        fn = reader if role == "reader" else writer
        asyncio.run(fn(int(args[0]), int(args[1]), int(args[2]), args[3]))
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main(sys.argv[1:])
