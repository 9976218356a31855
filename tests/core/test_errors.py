"""The error tree drawn in mpstore/_errors.py is true: what users get wrong raises MpstoreError."""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mpstore
from mpstore import _errors


@pytest.fixture
def mc() -> Iterator[mpstore.MultipeerConnectivity]:
    node = mpstore.MultipeerConnectivity("Ann", "chat", transport=mpstore.MemoryNetwork())
    yield node
    node.end_all()


def _new(**kwargs: Any) -> None:
    mpstore.MultipeerConnectivity("Ann", "chat", **{"transport": mpstore.MemoryNetwork(), **kwargs}).end_all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"transport": "foo"},
        {"engine": "bogus"},
        {"peer_timeout": -1},
        {"max_message_size": 0},
        {"max_peers": 1},
        {"secret": ""},
        {"send_timeout": -1},
        {"handshake_timeout": float("nan")},
        {"peer_timeout": "5"},
        {"data_dir": 5},
        {"file_dir": 3},
    ],
)
def test_bad_settings_raise_configuration_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(mpstore.ConfigurationError) as info:
        _new(**kwargs)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, mpstore.MpstoreError)


def test_bad_store_names_and_network_settings_raise_configuration_error(
    mc: mpstore.MultipeerConnectivity,
) -> None:
    with pytest.raises(mpstore.ConfigurationError):
        mc.shared_dict("")
    with pytest.raises(mpstore.ConfigurationError):
        mc.shared_dict("x" * 300)
    with pytest.raises(mpstore.ConfigurationError):
        mpstore.MemoryNetwork().set_latency(-1)
    with pytest.raises(mpstore.ConfigurationError):
        mpstore.new_secret(0)


@pytest.mark.parametrize(
    "call",
    [
        lambda mc: mc.send(object()),
        lambda mc: mc.send(float("nan")),
        lambda mc: mc.send({"x": [float("inf")]}),
        lambda mc: mc.send({1: "a"}),
        lambda mc: mc.send({"ok": [{2: "b"}]}),
        lambda mc: mc.send("hi", to_peer="Bob"),
        lambda mc: mc.send("hi", to_peer=["Bob"]),
        lambda mc: mc.shared_dict(3),
        lambda mc: mc.shared_dict("s").__setitem__("k", {1, 2}),
        lambda mc: mc.shared_dict("s").__setitem__(5, "v"),
        lambda mc: mc.shared_dict("s").__setitem__("k", {"a": (1, 2)}),
        lambda mc: mc.shared_dict("s").observe("not callable"),
    ],
)
def test_values_mpstore_cannot_carry_raise_invalid_argument(
    mc: mpstore.MultipeerConnectivity, call: Callable[[mpstore.MultipeerConnectivity], Any]
) -> None:
    with pytest.raises(mpstore.InvalidArgument) as info:
        call(mc)
    assert isinstance(info.value, TypeError)


def test_after_end_all_exactly_what_the_docs_say(mc: mpstore.MultipeerConnectivity) -> None:
    store = mc.shared_dict("s")
    store["a"] = 1
    me = mc.my_peer
    mc.end_all()
    # Kept: the identity and the store's last content stay readable.
    assert mc.my_peer == me
    assert store["a"] == 1 and dict(store) == {"a": 1} and len(store) == 1
    # wait_for returns if its condition already holds; everything else raises Closed.
    store.wait_for(lambda s: s.get("a") == 1, timeout=0.1)
    for call in (
        mc.get_peers,
        lambda: mc.send("x"),
        lambda: mc.shared_dict("s"),
        lambda: mc.__enter__(),
        lambda: store.__setitem__("b", 2),
        lambda: store.observe(print),
        lambda: store.wait_for(lambda s: "b" in s, timeout=0.1),
    ):
        with pytest.raises(mpstore.Closed):
            call()
    mc.end_all()  # idempotent


def test_the_drawn_tree_matches_the_classes() -> None:
    doc = _errors.__doc__ or ""
    drawn: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.search(r"([A-Z][A-Za-z]+)(?: \(([A-Za-z, ]+)\))?", line)
        if (
            not match
            or not hasattr(_errors, match.group(1))
            or ("──" not in line and "MpstoreError" not in line)
        ):
            continue
        name, depth = match.group(1), match.start(1)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            drawn[name] = stack[-1][1]
        stack.append((depth, name))
        for base in (match.group(2) or "").split(","):
            if base.strip():
                assert issubclass(getattr(_errors, name), getattr(builtins, base.strip())), (name, base)
    classes = {name for name in _errors.__all__ if name != "MpstoreError"}
    assert set(drawn) == classes, set(drawn) ^ classes
    for name, parent in drawn.items():
        assert getattr(_errors, name).__bases__[0] is getattr(_errors, parent), (name, parent)


#: Modules whose raises reach user code directly (internal decoders raise ValueError on purpose:
#: their callers turn it into CorruptUpdate, ProtocolError or a closed link).
USER_FACING = [
    "__init__.py",
    "_wrapper.py",
    "_store.py",
    "_peer.py",
    "_values.py",
    "engines/__init__.py",
    "transports/_factory.py",
    "transports/memory.py",
]


def test_no_plain_value_or_type_error_is_raised_on_purpose_in_user_facing_modules() -> None:
    root = Path(mpstore.__file__).parent
    offenders = []
    for name in USER_FACING:
        for n, line in enumerate((root / name).read_text().splitlines()):
            if re.search(r"raise (ValueError|TypeError)\(", line):
                offenders.append(f"{name}:{n + 1}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
