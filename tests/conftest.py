"""Fixtures for every test: no test may leave a thread of ours running."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest


def _ours(thread: threading.Thread) -> bool:
    return (thread.is_alive() and not thread.daemon) or thread.name.startswith("mpstore-")


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """Fail the test if it leaves threads running (mpstore's, or any non-daemon thread)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive() and _ours(t)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"threads left running: {[t.name for t in left]}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (long soaks)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run only with ``--run-slow`` (or MPSTORE_SLOW=1): they are soaks."""
    import os

    if config.getoption("--run-slow") or os.environ.get("MPSTORE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow soak test: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
