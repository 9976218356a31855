"""mc.presence over the memory network: 4 peers, kills, a partial mesh, late joiners, floods."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import mpstore
from tests.helpers import wait_until


class Device(mpstore.MultipeerConnectivity):
    """Records peer and presence callbacks, in order, as (kind, peer name, state)."""

    def __init__(self, *args: Any, refuse: set[str] | None = None, **kwargs: Any) -> None:
        self.events: list[tuple[str, str, Any]] = []
        self.refuse = refuse or set()
        self._lock = threading.Lock()
        kwargs.setdefault("peer_timeout", 1.0)
        super().__init__(*args, **kwargs)

    def _record(self, kind: str, peer: mpstore.PeerID, state: Any = None) -> None:
        with self._lock:
            self.events.append((kind, peer.display_name, state))

    def peer_added(self, peer: mpstore.PeerID) -> None:
        self._record("added", peer)

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        self._record("removed", peer)

    def presence_changed(self, peer: mpstore.PeerID, state: Any) -> None:
        self._record("presence", peer, state)

    def accept_peer(self, peer: mpstore.PeerID) -> bool:
        return peer.display_name not in self.refuse

    def seen(self) -> dict[str, Any]:
        return {peer.display_name: state for peer, state in self.presence.states().items()}

    def log(self) -> list[tuple[str, str, Any]]:
        with self._lock:
            return list(self.events)


@contextlib.contextmanager
def devices(**defaults: Any) -> Iterator[Callable[..., Device]]:
    made: list[Device] = []
    net = mpstore.MemoryNetwork(seed=1)

    def make(name: str, **kwargs: Any) -> Device:
        kwargs.setdefault("transport", net)
        for key, value in defaults.items():
            kwargs.setdefault(key, value)
        device = Device(name, "here", **kwargs)
        made.append(device)
        return device

    make.network = net  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for device in made:
            device.end_all()


@pytest.mark.parametrize("engine", ["python", None])
def test_four_peers_see_each_other_and_observers_fire(engine: str | None) -> None:
    with devices(engine=engine) as make:
        devs = [make(name) for name in ("Ann", "Bob", "Cy", "Di")]
        for d in devs:
            d.wait_for_peers(3, timeout=10)
        calls: list[tuple[str, Any]] = []
        sub = devs[3].presence.observe(lambda peer, state: calls.append((peer.display_name, state)))
        for i, d in enumerate(devs):
            d.presence.set({"name": d.my_peer.display_name, "n": i})
        for d in devs:
            wait_until(lambda d=d: len(d.seen()) == 3)
            assert d.presence.mine == {"name": d.my_peer.display_name, "n": devs.index(d)}
        assert devs[0].seen() == {
            "Bob": {"name": "Bob", "n": 1},
            "Cy": {"name": "Cy", "n": 2},
            "Di": {"name": "Di", "n": 3},
        }
        assert devs[0].presence.get(devs[1].my_peer) == {"name": "Bob", "n": 1}
        assert devs[0].presence.get(devs[0].my_peer) == {"name": "Ann", "n": 0}
        wait_until(lambda: len(calls) == 3)
        assert sorted(calls) == [
            ("Ann", {"name": "Ann", "n": 0}),
            ("Bob", {"name": "Bob", "n": 1}),
            ("Cy", {"name": "Cy", "n": 2}),
        ]
        devs[1].presence.update(typing=True)
        wait_until(lambda: devs[0].seen()["Bob"] == {"name": "Bob", "n": 1, "typing": True})
        devs[1].presence.clear()
        wait_until(lambda: "Bob" not in devs[0].seen())
        wait_until(lambda: calls[-1] == ("Bob", None))
        sub.cancel()
        devs[2].presence.set({"after": "cancel"})
        wait_until(lambda: devs[3].seen().get("Cy") == {"after": "cancel"})
        time.sleep(0.2)
        assert ("Cy", {"after": "cancel"}) not in calls
        # A peer's presence_changed comes after its peer_added.
        wait_until(lambda: ("presence", "Bob", {"name": "Bob", "n": 1}) in devs[0].log())
        log = devs[0].log()
        assert log.index(("added", "Bob", None)) < log.index(("presence", "Bob", {"name": "Bob", "n": 1}))


def test_a_killed_peer_disappears_within_peer_timeout() -> None:
    with devices() as make:
        ann, bob, cy = make("Ann"), make("Bob"), make("Cy")
        for d in (ann, bob, cy):
            d.wait_for_peers(2, timeout=10)
        bob.presence.set({"typing": True})
        wait_until(lambda: ann.seen() == {"Bob": {"typing": True}} and cy.seen() == {"Bob": {"typing": True}})
        killed = time.monotonic()
        make.network.kill(bob)  # type: ignore[attr-defined]
        wait_until(lambda: ann.seen() == {} and cy.seen() == {}, timeout=8)
        assert time.monotonic() - killed < 1.0 + 3.0  # peer_timeout 1 s, plus a wide margin (loaded CI)
        wait_until(lambda: ("removed", "Bob", None) in ann.log())  # callbacks run a bit later
        log = ann.log()
        assert log.index(("presence", "Bob", None)) < log.index(("removed", "Bob", None))


def test_partial_mesh_relays_through_the_middle_peer() -> None:
    with devices() as make:
        a = make("A", refuse={"C"})
        b = make("B")
        c = make("C", refuse={"A"})
        b.wait_for_peers(2, timeout=10)
        time.sleep(0.2)
        assert [p.display_name for p in a.get_peers()] == ["B"]
        a.presence.set({"at": "a"})
        c.presence.set({"at": "c"})
        wait_until(lambda: a.seen() == {"C": {"at": "c"}} and c.seen() == {"A": {"at": "a"}})
        a.presence.set({"at": "a2"})
        wait_until(lambda: c.seen() == {"A": {"at": "a2"}})
        peer_a = next(p for p in c.presence.states())
        assert peer_a == a.my_peer and peer_a not in c.get_peers()
        make.network.kill(b)  # type: ignore[attr-defined]
        wait_until(lambda: a.seen() == {} and c.seen() == {}, timeout=5)


def test_late_joiner_sees_current_states() -> None:
    with devices() as make:
        ann, bob = make("Ann"), make("Bob")
        ann.wait_for_peers(1, timeout=10)
        ann.presence.set({"score": 1})
        bob.presence.set({"score": 2})
        wait_until(lambda: ann.seen() == {"Bob": {"score": 2}})
        late = make("Late")
        late.wait_for_peers(2, timeout=10)
        wait_until(lambda: late.seen() == {"Ann": {"score": 1}, "Bob": {"score": 2}})
        wait_until(lambda: "Late" not in ann.seen())  # Late set nothing


def test_flood_is_throttled_latest_kept_and_bounded() -> None:
    with devices() as make:
        ann, bob = make("Ann"), make("Bob")
        ann.wait_for_peers(1, timeout=10)
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < 1.0:
            ann.presence.set({"n": n, "pad": "x" * 100})
            n += 1
        ann.presence.set({"n": "last"})
        wait_until(lambda: bob.seen().get("Ann") == {"n": "last"})
        elapsed = time.monotonic() - start
        changes = [e for e in bob.log() if e[0] == "presence"]
        assert n > 200  # the flood was real
        # At most 20 a second (+1 for the first), with a margin for the clock's edges.
        assert len(changes) <= 20 * elapsed + 3, (len(changes), elapsed)
        core = bob._node.presence.core  # type: ignore[union-attr]
        assert core.memory()[0] == 1 and core.memory()[2] == 0


def test_bad_states_raise_and_change_nothing() -> None:
    with devices() as make:
        ann = make("Ann")
        ann.presence.set({"ok": 1})
        with pytest.raises(TypeError):
            ann.presence.set({"f": {1, 2}})
        with pytest.raises(mpstore.InvalidArgument):
            ann.presence.set({"nan": float("nan")})
        with pytest.raises(mpstore.InvalidArgument):
            ann.presence.set({1: "int key"})
        with pytest.raises(mpstore.MessageTooLarge):
            ann.presence.set({"big": "x" * 10_000})
        with pytest.raises(TypeError):
            ann.presence.get("Bob")  # type: ignore[arg-type]
        assert ann.presence.mine == {"ok": 1}
        ann.end_all()
        with pytest.raises(mpstore.Closed):
            ann.presence.set({"x": 1})


def test_participants_see_peers_and_are_seen_as_peers() -> None:
    from mpstore._presence import decode_awareness_update, encode_awareness_update

    with devices() as make:
        ann, bob = make("Ann"), make("Bob")
        ann.wait_for_peers(1, timeout=10)
        bob.presence.set({"user": {"name": "Bob"}})
        wait_until(lambda: ann.seen() == {"Bob": {"user": {"name": "Bob"}}})
        got: list[bytes] = []
        node = ann._node.presence  # type: ignore[union-attr]
        part = ann._runtime.call(node.attach_participant, "tab-1", got.append)
        wait_until(lambda: bool(got))
        assert [t for _, _, t in decode_awareness_update(got[0])] == ['{"user":{"name":"Bob"}}']
        update = encode_awareness_update([(777, 1, '{"user":{"name":"Tab"},"cursor":5}')])
        ann._runtime.call(part.receive, update)
        wait_until(lambda: bob.seen().get("Tab") == {"user": {"name": "Tab"}, "cursor": 5})
        ann._runtime.call(part.detach)
        wait_until(lambda: "Tab" not in bob.seen())
