"""serve(mc) against raw WebSocket clients: hostile input, limits, what a Yjs client receives."""

from __future__ import annotations

import asyncio
from typing import Any

import pycrdt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import mpstore
from mpstore._syncproto import encode_update
from mpstore._values import decode_value, encode_value
from mpstore.web import Limits, serve


@pytest.fixture
def host() -> Any:
    mc = mpstore.MultipeerConnectivity("host", "board", transport=mpstore.MemoryNetwork())
    try:
        yield mc
    finally:
        mc.end_all()


async def _client_sync(url: str, doc: pycrdt.Doc, ws: Any, until: Any, timeout: float = 10) -> None:
    """Play a y-websocket client: answer sync messages until ``until()``."""
    await ws.send(pycrdt.create_sync_message(doc))
    async with asyncio.timeout(timeout):
        while not until():
            msg = await ws.recv()
            if msg[0] == 0:
                reply = pycrdt.handle_sync_message(msg[1:], doc)
                if reply is not None:
                    await ws.send(reply)


def test_hostile_messages_close_only_that_page(host: Any) -> None:
    store = host.shared_dict("s")
    store["before"] = 1
    endpoint = serve(host, whiteboard=False)
    url = f"ws://127.0.0.1:{endpoint.port}/s"

    async def run() -> None:
        async with connect(url) as ws:
            await ws.send(encode_update(b"\xff\xff\xff\xffgarbage"))  # framed, but not an update
            await ws.send(b"\x00\x09")  # not a sync message at all
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
        async with connect(url) as ws:
            await ws.send("text")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
        doc = pycrdt.Doc()
        entries = doc.get("mpstore", type=pycrdt.Map)
        async with connect(url) as ws:
            await _client_sync(url, doc, ws, lambda: "before" in entries)
            out: list[bytes] = []
            sub = doc.observe(lambda e: out.append(pycrdt.create_update_message(e.update)))
            entries["from-page"] = encode_value(b"\x00bytes")
            doc.unobserve(sub)
            for message in out:
                await ws.send(message)
            await asyncio.sleep(0.5)

    try:
        asyncio.run(run())
        store.wait_for(lambda d: "from-page" in d, timeout=10)
        assert store["from-page"] == b"\x00bytes" and store["before"] == 1
    finally:
        endpoint.close()


def test_connection_limit_and_room_names(host: Any) -> None:
    endpoint = serve(host, whiteboard=False, limits=Limits(max_connections=2))

    async def run() -> None:
        base = f"ws://127.0.0.1:{endpoint.port}"
        async with connect(base + "/a"), connect(base + "/b"):
            await asyncio.sleep(0.2)
            with pytest.raises(InvalidStatus) as refused:
                async with connect(base + "/c"):
                    pass
            assert refused.value.response.status_code == 503
        with pytest.raises(InvalidStatus) as bad:
            async with connect(base + "/" + "x" * 2000):
                pass
        assert bad.value.response.status_code == 400
        with pytest.raises(InvalidStatus) as foreign:
            async with connect(base + "/a", origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert foreign.value.response.status_code == 403

    try:
        asyncio.run(run())
        assert endpoint.connections == 0
    finally:
        endpoint.close()


def test_a_yjs_client_reads_exact_values(host: Any) -> None:
    store = host.shared_dict("values")
    sample = {"big": 2**80, "f": 3.0, "b": b"\x01", "nan": [float("inf")], "$k": None}
    store["v"] = sample
    endpoint = serve(host, whiteboard=False)
    doc = pycrdt.Doc()
    entries = doc.get("mpstore", type=pycrdt.Map)

    async def run() -> None:
        async with connect(f"ws://127.0.0.1:{endpoint.port}/values") as ws:
            await _client_sync("", doc, ws, lambda: "v" in entries)

    try:
        asyncio.run(run())
        assert decode_value(entries["v"]) == sample
    finally:
        endpoint.close()


def test_end_all_stops_the_endpoint_and_frees_its_port() -> None:
    import socket

    mc = mpstore.MultipeerConnectivity("host", "board", transport=mpstore.MemoryNetwork())
    endpoint = serve(mc, whiteboard=False)
    port = endpoint.port

    async def connected_then_dropped() -> int | None:
        async with connect(f"ws://127.0.0.1:{port}/s") as ws:
            await ws.recv()  # our step 1
            await asyncio.to_thread(mc.end_all)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(connected_then_dropped()) == 1001
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # free again
    endpoint.close()  # idempotent after end_all
