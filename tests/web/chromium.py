"""Headless Chromium (Debian's package) driven by Playwright for Python: the launch and page helpers."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest

CHROMIUM = os.environ.get("MPSTORE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip (fail in CI, which installs both) when Chromium or Playwright is missing."""
    missing = []
    if not os.path.exists(CHROMIUM):
        missing.append(f"chromium ({CHROMIUM}; apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright; never `playwright install`)")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail("browser tests need " + " and ".join(missing))
        pytest.skip("browser tests need " + " and ".join(missing))


def launch(playwright: Any) -> Any:
    """A fresh Chromium (Playwright gives every launch a new temporary user-data-dir)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS, timeout=60_000)


def wait_until(page: Any, predicate_js: str, timeout: float = 20.0, arg: Any = None) -> Any:
    """Poll ``predicate_js`` (a function of ``arg``) in the page until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = page.evaluate(predicate_js, arg)
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"page never satisfied {predicate_js!r} (last {last!r})")


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll a Python predicate until truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def draw(page: Any, points: list[tuple[int, int]]) -> None:
    """Draw one stroke with real mouse events on the page's canvas (points relative to it)."""
    box = page.locator("#canvas").bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=2)
    page.mouse.up()
