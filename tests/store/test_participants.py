"""Seam A: plain y-protocols participants (a browser tab, a Yjs-server room) beside peers.

The participant here is a pycrdt Doc driven by pycrdt's own y-protocols functions, so what it
sends and accepts is plain y-protocols, with no mpstore envelope.
"""

from __future__ import annotations

from typing import Any

import pytest
from store_fakes import FakeNet, Node

from mpstore._store import Participant
from mpstore._syncproto import SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE, decode_message
from mpstore._values import decode_value, encode_value
from mpstore.engines.base import ROOT_MAP

pycrdt = pytest.importorskip("pycrdt")


class YClient:
    """A plain Yjs replica that talks y-protocols sync with one mpstore node."""

    def __init__(self, node: Node, store: str = "s", *, can_send: bool = True) -> None:
        self.doc = pycrdt.Doc()
        self.map = self.doc.get(ROOT_MAP, type=pycrdt.Map)
        self.inbox: list[bytes] = []  # messages from mpstore, not yet handled
        self.received: list[bytes] = []  # every message from mpstore
        self.open = can_send
        self.node = node
        self.sub = self.doc.observe(self._on_txn)
        self.outgoing: list[bytes] = []
        self._applying = False
        self.participant: Participant = node.manager.attach_participant(
            store, self._send, can_send=lambda: self.open
        )

    def _on_txn(self, event: Any) -> None:
        if not self._applying:
            self.outgoing.append(pycrdt.create_update_message(bytes(event.update)))

    def _send(self, message: bytes) -> None:
        self.inbox.append(message)
        self.received.append(message)

    def hello(self) -> None:
        """What a y-websocket client does on connect: send its step 1."""
        self.participant.receive(pycrdt.create_sync_message(self.doc))

    def set(self, key: str, value: Any) -> None:
        self.map[key] = encode_value(value)

    def pump(self) -> int:
        """Exchange messages with the node until both sides are quiet."""
        n = 0
        while self.inbox or self.outgoing:
            for message in self.outgoing:
                self.participant.receive(message)
                n += 1
            self.outgoing.clear()
            inbox, self.inbox = self.inbox, []
            for message in inbox:
                assert message[0] == 0  # a plain y-protocols sync message
                self._applying = True
                try:
                    reply = pycrdt.handle_sync_message(message[1:], self.doc)
                finally:
                    self._applying = False
                if reply is not None:
                    self.participant.receive(reply)
                n += 1
        return n

    def to_dict(self) -> dict[str, Any]:
        return {k: decode_value(v) for k, v in self.map.items()}


def pump_all(net: FakeNet, clients: list[YClient]) -> None:
    for _ in range(100):
        moved = net.pump()
        moved += sum(c.pump() for c in clients)
        if not moved and not net.pending():
            return
    raise AssertionError("did not go quiet")


@pytest.mark.parametrize("engine", ["pycrdt", "python"])
def test_participant_converges_with_peers_both_ways(engine: str) -> None:
    net = FakeNet()
    a, b = net.add("A", engine), net.add("B", engine)
    a.store()["from_a"] = 1
    net.connect(a, b)
    y = YClient(a)
    y.set("from_y", "y")
    y.hello()
    pump_all(net, [y])
    expected = {"from_a": 1, "from_y": "y"}
    assert y.to_dict() == expected
    assert a.store().to_dict() == expected
    assert b.store().to_dict() == expected  # relayed by A to its peer
    # Later edits flow both ways: B -> A -> Y and Y -> A -> B.
    b.store()["from_b"] = [1, 2]
    y.set("from_y2", {"x": 1})
    pump_all(net, [y])
    expected.update(from_b=[1, 2], from_y2={"x": 1})
    for replica in (y.to_dict(), a.store().to_dict(), b.store().to_dict()):
        assert replica == expected


def test_participant_change_names_the_participant() -> None:
    net = FakeNet()
    a = net.add("A")
    seen: list[Any] = []
    a.store().observe(seen.append)
    y = YClient(a)
    y.hello()
    pump_all(net, [y])
    y.set("k", 5)
    pump_all(net, [y])
    assert [c.changes for c in seen][-1]["k"][1] == 5
    assert seen[-1].from_peer is y.participant


def test_participants_relay_to_each_other_and_across_peers() -> None:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    y1, y2, y3 = YClient(a), YClient(a), YClient(b)
    for y in (y1, y2, y3):
        y.hello()
    pump_all(net, [y1, y2, y3])
    y1.set("one", 1)
    y3.set("three", 3)
    pump_all(net, [y1, y2, y3])
    for replica in (y1, y2, y3):
        assert replica.to_dict() == {"one": 1, "three": 3}
    assert a.store().to_dict() == b.store().to_dict() == {"one": 1, "three": 3}


def test_updates_wait_for_the_participants_step1() -> None:
    net = FakeNet()
    a = net.add("A")
    y = YClient(a)
    assert [decode_message(m).kind for m in y.received] == [SYNC_STEP1]
    a.store()["early"] = 1  # before the participant asked: held
    assert len(y.received) == 1
    y.hello()
    kinds = [decode_message(m).kind for m in y.received]
    assert kinds == [SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE]
    pump_all(net, [y])
    assert y.to_dict() == {"early": 1}


def test_reattach_gets_a_diff_not_a_snapshot() -> None:
    net = FakeNet()
    a = net.add("A")
    a.store().update({f"k{i}": "x" * 50 for i in range(2000)})
    y = YClient(a)
    y.hello()
    pump_all(net, [y])
    assert len(y.to_dict()) == 2000
    y.participant.detach()
    a.store()["new"] = 1
    # Same replica, reattached: only what it lacks crosses.
    y.received.clear()
    y.participant = a.manager.attach_participant("s", y._send, can_send=lambda: y.open)
    y.hello()
    pump_all(net, [y])
    assert y.to_dict()["new"] == 1
    step2 = [decode_message(m) for m in y.received if decode_message(m).kind == SYNC_STEP2]
    assert step2 and max(len(m.payload) for m in step2) < 200


def test_participant_back_pressure_holds_until_writable() -> None:
    net = FakeNet()
    a = net.add("A")
    y = YClient(a)
    y.hello()
    pump_all(net, [y])
    y.open = False
    y.received.clear()
    for i in range(5):
        a.store()[f"k{i}"] = i
    assert y.received == []
    y.open = True
    y.participant.writable()
    assert len(y.received) == 5
    pump_all(net, [y])
    assert y.to_dict() == {f"k{i}": i for i in range(5)}


def test_detached_participant_gets_nothing_and_bad_input_is_dropped() -> None:
    net = FakeNet()
    a = net.add("A")
    a.store()["x"] = 1
    y = YClient(a)
    y.hello()
    pump_all(net, [y])
    for bad in (b"", b"\x00", b"\x00\x02\x05ab", b"\x01\x00", b"\x00\x02\x03\xff\xff\xff", b"\x07"):
        y.participant.receive(bad)
    assert a.store().to_dict() == {"x": 1}
    y.participant.detach()
    y.received.clear()
    a.store()["y"] = 2
    assert y.received == []
    y.participant.detach()  # idempotent


def test_a_failing_participant_is_detached_and_peers_still_get_everything() -> None:
    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    net.pump()

    def broken() -> bool:
        raise RuntimeError("socket gone")

    p = a.manager.attach_participant("s", lambda m: None, can_send=lambda: True)
    p.receive(pycrdt.create_sync_message(pycrdt.Doc()))  # its step 1: updates flow to it now
    p._can_send = broken  # fails from now on
    a.store()["x"] = 1  # the same flush carries the peer's update and the participant's
    net.pump()
    assert b.store().to_dict() == {"x": 1}
    assert not p.attached


@pytest.mark.parametrize("engine", ["pycrdt", "python"])
def test_a_deletion_of_content_outside_the_store_still_reaches_everyone(engine: str) -> None:
    """A page's update that only deletes (characters of a Y.Text beside the store, or a key whose
    foreign value the store hides) changes neither the state vector nor a visible key; it used to
    be taken for a duplicate and relayed to nobody, so the other pages never converged."""
    net = FakeNet()
    a, b = net.add("A", engine), net.add("B", engine)
    net.connect(a, b)
    y1, y2, y3 = YClient(a), YClient(a), YClient(b)
    for y in (y1, y2, y3):
        y.hello()
    pump_all(net, [y1, y2, y3])
    text = y1.doc.get("text", type=pycrdt.Text)
    text += "hello world"
    y1.map["foreign"] = 5.0  # not a stored value: hidden by the store, kept by the document
    pump_all(net, [y1, y2, y3])
    assert [str(y.doc.get("text", type=pycrdt.Text)) for y in (y2, y3)] == ["hello world"] * 2
    del text[0:6]
    del y1.map["foreign"]
    pump_all(net, [y1, y2, y3])
    for y in (y2, y3):
        assert str(y.doc.get("text", type=pycrdt.Text)) == "world"
        assert "foreign" not in y.map
    # Nothing loops: an echo of what everyone has is not passed on.
    y2.participant.receive(pycrdt.create_update_message(y1.doc.get_update()))
    assert y2.pump() == 0 and not net.pending()
