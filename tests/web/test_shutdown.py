"""end_all with a page that never reads: bounded, clean, and the port is freed."""

from __future__ import annotations

import base64
import logging
import os
import socket
import time

import pytest

import mpstore

pytest.importorskip("websockets")


def test_end_all_with_a_page_that_never_reads_is_prompt_and_clean(caplog: pytest.LogCaptureFixture) -> None:
    from mpstore.web import serve

    mc = mpstore.MultipeerConnectivity("a", "stall", transport=mpstore.MemoryNetwork())
    store = mc.shared_dict("b")
    endpoint = serve(mc)
    port = int(endpoint.ws_url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET /b HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert sock.recv(12) == b"HTTP/1.1 101"
        for i in range(20000):  # far more than the socket buffers hold; the page reads nothing
            store[f"k{i}"] = "v" * 200
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="mpstore"):
            mc.end_all()
        took = time.monotonic() - started
    # The store's flush (5 s at most) and the endpoint's stop (a stalled page: 0.5 s, then a
    # 2 s closing handshake) fit in end_all's 10 s budget: no "did not finish cleanly".
    assert took < 9.5, took
    assert not [r for r in caplog.records if "did not finish cleanly" in r.getMessage()]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
