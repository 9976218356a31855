"""The limits table of docs/SECURITY.md, checked where the LAN tests do not: defaults, the
store's limits (stores a peer may create, messages in parts), and the default of 8 peers."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

import mpstore
from mpstore._docsync import K_PART, PART_SIZE, VERSION, DocSync, encode_sync, write_varbytes, write_varuint
from mpstore._session import MAX_HELLO_SIZE, SessionConfig
from mpstore.engines import load_engine
from mpstore.transports.memory import MemoryTransport
from tests.helpers import Recorder, wait_until

MiB = 1024 * 1024


def test_the_documented_defaults() -> None:
    params = inspect.signature(mpstore.MultipeerConnectivity.__init__).parameters
    defaults = {name: p.default for name, p in params.items()}
    assert defaults["max_message_size"] == 16 * MiB
    assert defaults["max_peers"] == 8
    assert defaults["handshake_timeout"] == 5.0
    assert defaults["peer_timeout"] == 5.0
    assert defaults["max_message_rate"] == 5000.0
    assert MAX_HELLO_SIZE == 8 * 1024
    assert SessionConfig().max_frame_size == 64 * 1024 == MemoryTransport.max_frame_size
    lan = pytest.importorskip("mpstore.transports.lan")
    assert lan.LanTransport.max_frame_size == 256 * 1024
    assert inspect.signature(lan.LanTransport.__init__).parameters["connect_timeout"].default == 5.0


def test_the_reassembly_limit_is_derived_from_max_message_size() -> None:
    net = mpstore.MemoryNetwork()
    for size, limit in ((1000, 64 * MiB + 1024), (100 * MiB, 100 * MiB + 1024)):
        node = mpstore.MultipeerConnectivity("A", "lim", transport=net, max_message_size=size)
        try:
            assert node._node.options.session.max_receive_size == limit
        finally:
            node.end_all()


@pytest.fixture(params=["pycrdt", "python"])
def sync(request: pytest.FixtureRequest) -> Iterator[DocSync]:
    try:
        engine = load_engine(request.param)
    except mpstore.EngineUnavailable as exc:
        pytest.skip(str(exc))
    node = DocSync("a" * 32, engine.new_doc)
    node.peer_added("b" * 32)
    node.take_outbox()
    yield node


def test_a_peer_may_create_at_most_1024_stores_on_us(sync: DocSync, caplog: pytest.LogCaptureFixture) -> None:
    assert sync.max_stores == 1024
    sync.doc("ours")  # one of our own counts too
    with caplog.at_level(logging.WARNING, logger="mpstore.store"):
        for i in range(1100):
            sync.receive("b" * 32, encode_sync(0, f"s{i}", 0, b"\x00"))
    assert len(sync.docs) == 1024
    assert "already 1024 stores (max_stores)" in caplog.text
    sync.receive("b" * 32, encode_sync(0, "ours", 0, b"\x00"))  # a store we hold still syncs
    assert any(payload[2:7] == b"\x04ours" for _, payload in sync.take_outbox())


def _part(msg_id: int, index: int, count: int, data: bytes) -> bytes:
    out = bytearray((VERSION, K_PART))
    write_varuint(out, msg_id)
    write_varuint(out, index)
    write_varuint(out, count)
    write_varbytes(out, data)
    return bytes(out)


def test_a_store_message_in_parts_is_limited_to_256_mib(
    sync: DocSync, caplog: pytest.LogCaptureFixture
) -> None:
    assert (sync.max_message, PART_SIZE) == (256 * MiB, MiB)
    with caplog.at_level(logging.WARNING, logger="mpstore.store"):
        sync.receive("b" * 32, _part(1, 0, 257, b"x"))  # 257 parts of up to 1 MiB: refused at once
        assert "over the size limit" in caplog.text
        assert sync._parts == {}
        sync.receive("b" * 32, _part(2, 0, 256, b"x"))  # 256 parts: accepted, held
        assert len(sync._parts["b" * 32][1]) == 1
        sync.receive("b" * 32, _part(2, 1, 256, b"x" * (PART_SIZE + 1)))  # a part over 1 MiB
        assert "b" * 32 not in sync._parts


def test_default_max_peers_is_8_counting_ourselves() -> None:
    net = mpstore.MemoryNetwork()
    nodes: list[Any] = []
    try:
        for i in range(9):
            nodes.append(Recorder(f"P{i}", "lim", transport=net, peer_timeout=2.0))
            time.sleep(0.05)
        wait_until(lambda: sum(len(n.get_peers()) == 7 for n in nodes) >= 8, timeout=10)
        time.sleep(0.5)
        counts = sorted(len(n.get_peers()) for n in nodes)
        assert max(counts) == 7 and counts.count(7) >= 8, counts
    finally:
        for n in nodes:
            n.end_all()


def test_the_failed_proof_table_stays_bounded_and_still_shuts_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new source address (IPv6 hands out plenty) used to add an entry for good."""
    import types
    import weakref

    from mpstore import _core
    from mpstore._session import Hello, LinkClosed, LinkSession
    from mpstore.transports.base import LocalNode

    class Transport:
        def close_link(self, link: object, reason: str) -> None:
            pass

        def peer_key(self, link: object) -> None:
            return None

    class Owner:
        pass

    owner = Owner()
    options = _core.NodeOptions(SessionConfig(), 1000, 8)
    node = _core.Node(None, Transport(), LocalNode("a" * 32, "A", "lim"), options, weakref.ref(owner))  # type: ignore[arg-type]
    clock = [1000.0]
    monkeypatch.setattr("mpstore._core.time", types.SimpleNamespace(monotonic=lambda: clock[0]))

    def fail(host: str) -> None:
        session = LinkSession(Hello("a" * 32, "A"), SessionConfig(), clock[0])
        entry = _core._Link(session, f"{host}:4242", node._device_key(None, f"{host}:4242"))
        node._on_closed(object(), entry, LinkClosed("wrong group secret", False, False, auth_failed=True))

    for _ in range(5):
        fail("198.18.0.9")
    assert node._rate_limited(node._device_key(None, "198.18.0.9:1"))
    for i in range(10_000):
        clock[0] += 0.001
        fail(f"[2001:db8::{i:x}]")
        assert len(node._auth_failures) <= 4096
    for _ in range(5):
        fail("198.18.0.10")
    assert node._rate_limited("198.18.0.10:1")
    clock[0] += options.auth_failure_window + 1
    assert not node._rate_limited("198.18.0.10:1")


def test_many_fresh_identities_hit_the_global_cap_but_known_devices_still_get_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stranger can make a new certificate per attempt; after 20 failures in the window from
    all devices together, only devices that were connected before may start a handshake."""
    import types
    import weakref

    from mpstore import _core
    from mpstore._session import Hello, LinkClosed, LinkSession
    from mpstore.transports.base import LocalNode

    class Transport:
        def close_link(self, link: object, reason: str) -> None:
            pass

        def peer_key(self, link: object) -> None:
            return None

    class Owner:
        pass

    owner = Owner()
    options = _core.NodeOptions(SessionConfig(), 1000, 8)
    node = _core.Node(None, Transport(), LocalNode("a" * 32, "A", "lim"), options, weakref.ref(owner))  # type: ignore[arg-type]
    clock = [1000.0]
    monkeypatch.setattr("mpstore._core.time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    node._known_devices["tls:member"] = None

    def fail(key: str) -> None:
        session = LinkSession(Hello("a" * 32, "A"), SessionConfig(), clock[0])
        entry = _core._Link(session, "198.18.0.9:4242", key)
        node._on_closed(object(), entry, LinkClosed("wrong group secret", False, False, auth_failed=True))

    for i in range(19):
        fail(f"tls:fresh-{i}")
    assert not node._rate_limited("tls:newcomer")
    fail("tls:fresh-19")
    assert node._rate_limited("tls:newcomer") and node._rate_limited("tls:fresh-20")
    assert not node._rate_limited("tls:member")
    clock[0] += options.auth_failure_window + 1
    assert not node._rate_limited("tls:newcomer")
