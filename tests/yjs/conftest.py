"""The Yjs oracle fixture: one Node process per test session, ended by its PID at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .oracle import YjsOracle, unavailable_reason


@pytest.fixture(scope="session")
def yjs() -> Iterator[YjsOracle]:
    """The running oracle (skipped where node or js/node_modules is missing, except in CI)."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Yjs oracle must run in CI: {reason}")
        pytest.skip(reason)
    with YjsOracle.start() as oracle:
        yield oracle
