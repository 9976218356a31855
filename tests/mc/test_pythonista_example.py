"""examples/pythonista_chat.py: import-safe here, and its UI driven with a fake ``ui``."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until

from . import sim

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pythonista_chat.py"


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_imports_without_pythonista_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ui", None)  # import ui -> ImportError
    module = _load("pythonista_chat_plain")
    assert module.ui is None
    with pytest.raises(SystemExit, match="needs Pythonista's ui module"):
        module.main()


class _Widget:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)
        self.subviews: list[Any] = []
        self.text = ""
        self.action: Any = None

    def add_subview(self, view: Any) -> None:
        self.subviews.append(view)

    def begin_editing(self) -> None:
        pass


def _fake_ui(presented: list[Any]) -> types.ModuleType:
    ui = types.ModuleType("ui")

    class View(_Widget):
        def present(self, style: str) -> None:
            presented.append(self)

    ui.View = View  # type: ignore[attr-defined]
    ui.TextView = _Widget  # type: ignore[attr-defined]
    ui.TextField = _Widget  # type: ignore[attr-defined]
    ui.get_screen_size = lambda: (390, 844)  # type: ignore[attr-defined]
    return ui


def test_two_pythonista_chats_talk(
    objc_util_fake: Any, monkeypatch: pytest.MonkeyPatch, world: sim.World
) -> None:
    presented: list[Any] = []
    names = iter(["Ann", "Bob"])
    console = types.ModuleType("console")
    console.input_alert = lambda *a: next(names)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ui", _fake_ui(presented))
    monkeypatch.setitem(sys.modules, "console", console)
    monkeypatch.setitem(sys.modules, "pythonista", types.ModuleType("pythonista"))
    monkeypatch.delenv("MPSTORE_TRANSPORT", raising=False)
    module = _load("pythonista_chat_ui")
    module.main()
    module.main()
    (ann_log, ann_field), (bob_log, _bob_field) = [v.subviews for v in presented]
    try:
        wait_until(lambda: "* Bob joined" in ann_log.text and "* Ann joined" in bob_log.text, timeout=10)
        ann_field.text = "  hello Bob "
        ann_field.action(ann_field)
        assert ann_field.text == "" and "me: hello Bob" in ann_log.text
        wait_until(lambda: "Ann: hello Bob" in bob_log.text)
    finally:
        for view in presented:
            view.will_close()
