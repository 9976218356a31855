"""A real Yjs client in Node (y-websocket's provider, the shipped value module) on the endpoint."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import mpstore

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js"
VALUES_JS = ROOT / "mpstore" / "web" / "static" / "mpstore-values.js"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (JS / "node_modules" / "y-websocket").exists(),
    reason="node or js/node_modules (npm ci in js/) is missing",
)

#: Values whose exact type and value must survive Python -> Yjs (JS decode, encode) -> Python.
VALUES: dict[str, Any] = {
    "i0": 0, "neg": -1, "safe": 2**53 - 1, "unsafe": 2**53, "negunsafe": -(2**53), "big": 2**64 + 1,
    "nbig": -(2**70), "f1": 1.0, "nz": -0.0, "f01": 0.1, "fbig": 1e300, "ftiny": 5e-324,
    "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "f2_53": float(2**53),
    "f1e21": 1e21, "bytes": b"\x00\xff", "nobytes": b"", "allbytes": bytes(range(256)) * 4,
    "text": "h\u00e9llo \U0001f600 \u0000", "empty": "", "yes": True, "no": False, "none": None,
    "tagkeys": {"$b": "AA==", "$i": "ff", "$f": "x"}, "dollars": {"$$": 1, "$": 2, "$$b": 3},
    "nested": {"a": [1, 2.0, [b"x", {"$i": -0.0}]], "10": "ten", "2": "two", "z": {}},
    "deep": [[[[[[1]]]]]], "emptylist": [], "strtag": "$b", "oddkeys": {"": 1, "\u00e9": 2},
    "$top": 1, "$b": 2, "echo": 3,
}


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (NaN equals NaN, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


class Quiet(mpstore.MultipeerConnectivity):
    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        pass


def echo_through_node(dialect: str, url: str, document: str, store: Any, peer_store: Any) -> None:
    """Python writes VALUES; the Node client decodes and re-encodes each as echo/<key> and deletes
    two keys; both replicas must hold exactly what was written."""
    deleted = ["i0", "echo"]
    job = json.dumps({"expect": len(VALUES), "delete": deleted})
    proc = subprocess.Popen(
        ["node", str(JS / "echo-client.mjs"), VALUES_JS.as_uri(), dialect, url, document, job],
        cwd=JS, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        store.update(VALUES)
        for replica in (store, peer_store):
            replica.wait_for(
                lambda d: all("echo/" + k in d for k in VALUES) and not any(k in d for k in deleted),
                timeout=60,
            )
        store["done"] = True
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for replica in (store, peer_store):
        wrong = [k for k in VALUES if not same(VALUES[k], replica["echo/" + k])]
        assert wrong == []


@pytest.mark.parametrize("engine", ["pycrdt", "python"])
def test_every_value_round_trips_through_a_node_yjs_page(engine: str) -> None:
    if engine == "pycrdt":
        pytest.importorskip("pycrdt")
    from mpstore.web import serve

    net = mpstore.MemoryNetwork()
    a = Quiet("a", "echo", transport=net, engine=engine)
    b = Quiet("b", "echo", transport=net, engine=engine)
    try:
        store, peer_store = a.shared_dict("vals"), b.shared_dict("vals")
        endpoint = serve(a)
        echo_through_node("y-websocket", endpoint.ws_url, "vals", store, peer_store)
    finally:
        a.end_all()
        b.end_all()


@pytest.mark.parametrize("engine", ["pycrdt", "python"])
def test_writes_before_end_all_reach_a_connected_page(engine: str) -> None:
    """end_all right after a burst larger than the page's send window: the page gets all of it
    (the endpoint was closed with the writes still queued for the page, and the store's flush
    did not wait for a participant holding back)."""
    if engine == "pycrdt":
        pytest.importorskip("pycrdt")
    from mpstore.web import serve

    n = 20000
    mc = Quiet("a", "burst", transport=mpstore.MemoryNetwork(), engine=engine)
    proc = None
    try:
        store = mc.shared_dict("b")
        endpoint = serve(mc)
        proc = subprocess.Popen(
            ["node", str(JS / "count-client.mjs"), "y-websocket", endpoint.ws_url, "b", str(n), "30"],
            cwd=JS, stdout=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 20
        while endpoint._server.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # its first sync done
        for i in range(n):
            store[f"k{i}"] = "v" * 100
        mc.end_all()
        out, _ = proc.communicate(timeout=60)
        assert out.strip() == f"size {n}"
    finally:
        mc.end_all()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
