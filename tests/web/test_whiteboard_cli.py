"""`mpstore whiteboard` as a user runs it: a process serving the page, a LAN peer, a browser."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import mpstore

from .chromium import draw, wait_until
from .strokes import strokes_of

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_whiteboard_command_serves_the_page_to_a_browser_and_a_lan_peer(browser: Any) -> None:
    pytest.importorskip("zeroconf")
    from mpstore.transports.lan import LanTransport

    lan_port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpstore", "whiteboard", "--port", "0", "--lan-port", str(lan_port),
         "--no-discovery", "--board", "cli"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True)
    reader.start()
    peer = None
    try:
        url = None
        while url is None:
            line = lines.get(timeout=30)
            m = re.search(r"open (http://\S+)", line)
            url = m.group(1) if m else None
        assert "board=cli" in url
        with urllib.request.urlopen(url, timeout=10) as page_html:
            assert b"/whiteboard.js" in page_html.read()
        peer = mpstore.MultipeerConnectivity(
            "py", "whiteboard",
            transport=LanTransport(host="127.0.0.1", discovery=False, ip_version="v4",
                                   peers=[("127.0.0.1", lan_port)]),
            engine="python",
        )
        peer.wait_for_peers(1, timeout=30)
        page = browser.new_context().new_page()
        page.goto(url + "&name=ann")
        wait_until(page, "() => window.whiteboard && window.whiteboard.provider.synced")
        draw(page, [(30, 40), (80, 90)])
        store = peer.shared_dict("whiteboard/cli")
        store.wait_for(lambda d: len(strokes_of(d)) == 1, timeout=30)

        # examples/whiteboard.py joins too: its star reaches the page, the page's next stroke it prints.
        example = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "whiteboard.py"), "--board", "cli", "--seconds", "60",
             "--peer", f"127.0.0.1:{lan_port}", "--no-discovery"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT)),
        )
        said: queue.Queue[str] = queue.Queue()
        pipe = example.stdout
        threading.Thread(target=lambda: [said.put(line) for line in pipe or ()], daemon=True).start()
        try:
            star = wait_until(
                page, "() => window.whiteboard.strokes().find(s => s.author === 'pythonista')", timeout=60
            )
            assert len(star["points"]) == 6 and star["colour"] == "#e03131"
            draw(page, [(300, 300), (350, 320), (400, 300)])
            out = []
            while not any("ann drew a stroke: 3 points" in line for line in out):
                out.append(said.get(timeout=30))
        finally:
            example.terminate()
            example.wait(timeout=30)
        page.context.close()
    finally:
        if peer is not None:
            peer.end_all()
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_busy_port_is_one_clear_line_and_status_2() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "mpstore", "whiteboard", "--memory", "--port", str(port)],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )
    assert done.returncode == 2
    assert "cannot serve on 127.0.0.1" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_one_clear_line_and_status_2(port: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mpstore", "whiteboard", "--memory", "--port", port],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "port" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_serve_refuses_a_port_out_of_range() -> None:
    from mpstore.web import serve

    mc = mpstore.MultipeerConnectivity("a", "wbport", transport=mpstore.MemoryNetwork())
    try:
        with pytest.raises(mpstore.ConfigurationError):
            serve(mc, port=70000)
    finally:
        mc.end_all()
