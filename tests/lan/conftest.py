"""Fixtures for the namespace tests: a LAN of network namespaces, removed even on failure."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.netns import NetnsLan, cleanup_leftovers, netns_unavailable

_reason: list[str | None] = []


def _unavailable() -> str | None:
    if not _reason:
        _reason.append(netns_unavailable())
    return _reason[0]


@pytest.fixture
def netns_lan(tmp_path: Path) -> Iterator[Callable[[int], NetnsLan]]:
    """A factory: ``netns_lan(n)`` builds n peer namespaces on a bridge; all removed afterwards."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"namespace tests must run in CI, but: {reason}")
        pytest.skip(f"namespace tests skipped: {reason}")
    for name in cleanup_leftovers():
        print(f"removed a leftover namespace {name}")
    built: list[NetnsLan] = []

    def make(n: int) -> NetnsLan:
        lan = NetnsLan(n, tmp_path)
        built.append(lan)
        return lan

    try:
        yield make
    finally:
        for lan in built:
            lan.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On failure of a namespace test, attach the agents' logs."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "netns_lan" in getattr(item, "fixturenames", ()):
        tmp = item.funcargs.get("tmp_path")  # type: ignore[attr-defined]
        if isinstance(tmp, Path):
            for log in sorted(tmp.glob("agent-*.log")):
                report.sections.append((f"log {log.name}", log.read_text(errors="replace")[-4000:]))
