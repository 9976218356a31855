"""The endpoint with a plain relay behind it: page, bundle, token and limits, in real Chromium."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from mpstore.web._server import WebServer, static_files

from .chromium import draw, wait_until
from .fakes import LoopThread, RelayBackend

FILES = ("whiteboard.html", "whiteboard.js", "mpstore-values.js")


@pytest.fixture
def relay() -> Iterator[tuple[LoopThread, RelayBackend, WebServer]]:
    loop = LoopThread()
    backend = RelayBackend()
    files = static_files(*FILES)
    files["/"] = files["/whiteboard.html"]
    server = WebServer(backend, files=files)
    loop.run(server.start())
    try:
        yield loop, backend, server
    finally:
        loop.run(server.stop())
        loop.close()


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_context(viewport={"width": 800, "height": 600}).new_page()
    page.goto(url)
    wait_until(page, "() => window.whiteboard && window.whiteboard.provider.synced")
    return page


def test_stroke_in_one_page_appears_in_the_other(relay: Any, browser: Any) -> None:
    _, _, server = relay
    url = f"http://127.0.0.1:{server.port}/?board=t1"
    a, b = open_page(browser, url), open_page(browser, url)
    draw(a, [(100, 100), (150, 120), (200, 180)])
    strokes = wait_until(b, "() => window.whiteboard.strokes().length === 1 && window.whiteboard.strokes()")
    assert strokes[0]["points"][0] == [100, 100]
    assert strokes[0]["points"][-1] == [200, 180]
    assert strokes[0]["author"] == a.evaluate("window.whiteboard.author")


def test_other_sites_and_other_names_get_nothing(relay: Any) -> None:
    server = relay[2]
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/", headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 403
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10) as ok:
        assert b"whiteboard.js" in ok.read()
