"""Fixtures: a simulated world, fake pyobjc / objc_util modules, a core-like loop thread."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from . import sim
from .helpers import LoopThread, Node

ADAPTERS = ["pyobjc", "objc_util"]
_ADAPTER_MODULES = ("mpstore.transports.mc._pyobjc", "mpstore.transports.mc._objc_util")


@pytest.fixture
def world() -> Iterator[sim.World]:
    w = sim.World()
    w.start()
    try:
        yield w
    finally:
        w.stop()
    assert w.crashes == [], w.crashes


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


def _install(monkeypatch: pytest.MonkeyPatch, adapter: str) -> Any:
    for name in _ADAPTER_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    if adapter == "pyobjc":
        from .fake_pyobjc import FakeObjC

        fake: Any = FakeObjC()
    else:
        from .fake_objc_util import FakeObjCUtil

        fake = FakeObjCUtil()
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return fake


@pytest.fixture(params=ADAPTERS)
def adapter(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, world: sim.World
) -> Iterator[Any]:
    """Fake modules for one adapter installed in sys.modules; yields the fake's state."""
    fake = _install(monkeypatch, request.param)
    fake.kind = request.param
    yield fake
    gc.collect()
    assert fake.callback_errors == [], fake.callback_errors


@pytest.fixture
def make_bridge(adapter: Any) -> Callable[[], Any]:
    def make() -> Any:
        if adapter.kind == "pyobjc":
            from mpstore.transports.mc._pyobjc import PyObjCBridge

            return PyObjCBridge()
        from mpstore.transports.mc._objc_util import ObjCUtilBridge

        return ObjCUtilBridge()

    return make


@pytest.fixture
def nodes(
    loop: LoopThread, make_bridge: Callable[[], Any], world: sim.World
) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(name: str, **kw: Any) -> Node:
        n = Node(loop, make_bridge(), name, **kw)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()
    for n in made:
        assert n.rec.wrong_thread == [], n.rec.wrong_thread
    world.idle(1.0)
    assert world.unanswered() == []


@pytest.fixture
def objc_util_fake(monkeypatch: pytest.MonkeyPatch, world: sim.World) -> Iterator[Any]:
    """Only the fake objc_util (Pythonista), for tests about that adapter."""
    fake = _install(monkeypatch, "objc_util")
    yield fake
    gc.collect()
    assert fake.callback_errors == []


@pytest.fixture
def pyobjc_fake(monkeypatch: pytest.MonkeyPatch, world: sim.World) -> Iterator[Any]:
    """Only the fake pyobjc (macOS), for tests about that adapter."""
    fake = _install(monkeypatch, "pyobjc")
    yield fake
    assert fake.callback_errors == []
