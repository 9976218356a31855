"""The endpoint on the Pythonista profile: websockets without its C speedup, the pure engine.

Runs in the main suite and in tools/pythonista_profile.sh (Python 3.10, compiled packages
unimportable), where a Yjs client is played with mpstore's own pure engine.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import mpstore
from mpstore._syncproto import SYNC_STEP1, SYNC_STEP2, decode_message, encode_sync_step1, encode_sync_step2
from mpstore._syncproto import encode_update as sync_update
from mpstore._values import decode_value, encode_value
from mpstore.engines import load_engine

websockets = pytest.importorskip("websockets")


def test_a_client_and_the_endpoint_sync_on_the_pure_engine() -> None:
    from websockets.asyncio.client import connect

    from mpstore.web import serve

    mc = mpstore.MultipeerConnectivity("host", "board", transport=mpstore.MemoryNetwork(), engine="python")
    store = mc.shared_dict("s")
    store["from-python"] = [1, 2.5, b"\x00"]
    endpoint = serve(mc, whiteboard=False)
    doc = load_engine("python").new_doc()

    async def client() -> None:
        async with connect(f"ws://127.0.0.1:{endpoint.port}/s") as ws:
            await ws.send(encode_sync_step1(doc.state_vector()))
            while doc.get("from-python") is None:
                msg: Any = await asyncio.wait_for(ws.recv(), 10)
                step = decode_message(msg)
                if step.kind == SYNC_STEP1:
                    await ws.send(encode_sync_step2(doc.encode_diff(step.payload)))
                elif step.kind == SYNC_STEP2 or step.kind == 2:
                    doc.apply_update(step.payload)
            update = doc.transact({"from-page": encode_value({"x": 2**70})}, [])
            await ws.send(sync_update(update))
            await asyncio.sleep(0.3)

    try:
        asyncio.run(client())
        assert decode_value(doc.get("from-python") or "") == [1, 2.5, b"\x00"]
        store.wait_for(lambda d: "from-page" in d, timeout=10)
        assert store["from-page"] == {"x": 2**70}
    finally:
        endpoint.close()
        mc.end_all()


def test_websockets_runs_without_its_speedup_here() -> None:
    import sys

    if "PYTHONISTA_PROFILE" not in sys.modules and not any("pythonista_profile" in p for p in sys.path):
        pytest.skip("only meaningful in the Pythonista profile")
    assert "websockets.speedups" not in sys.modules
