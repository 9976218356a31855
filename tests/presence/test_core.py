"""PresenceCore, sans-IO: N cores on a hand-pumped fake network and a fake clock."""

from __future__ import annotations

import json

from mpstore._presence import (
    K_UPDATE,
    VERSION,
    PresenceConfig,
    PresenceCore,
    client_id_for,
    decode_awareness_update,
    encode_awareness_update,
)


def pid(n: int) -> str:
    return f"{n:032x}"


class Net:
    """Cores by name, links between them, a clock, and what each participant received."""

    def __init__(self, names: list[str], config: PresenceConfig | None = None) -> None:
        self.now = 1000.0
        self.cores = {n: PresenceCore(pid(i + 1), n, self.now, config) for i, n in enumerate(names)}
        self.ids = {core.local_id: n for n, core in self.cores.items()}
        self.links: set[frozenset[str]] = set()
        self.drop_unreliable = False
        self.participants: dict[str, list[bytes]] = {}
        self.sent = 0

    def id(self, name: str) -> str:
        return self.cores[name].local_id

    def link(self, a: str, b: str) -> None:
        self.links.add(frozenset((a, b)))
        self.cores[a].peer_added(self.id(b), self.now)
        self.cores[b].peer_added(self.id(a), self.now)
        self.pump()

    def cut(self, a: str, b: str) -> None:
        self.links.discard(frozenset((a, b)))
        self.cores[a].peer_removed(self.id(b), self.now)
        self.cores[b].peer_removed(self.id(a), self.now)
        self.pump()

    def pump(self) -> None:
        for _ in range(1000):
            moved = False
            for name, core in self.cores.items():
                out, core.outbox = core.outbox, []
                for target, payload, reliable in out:
                    moved = True
                    self.sent += 1
                    if target.startswith("@"):
                        self.participants.setdefault(target[1:], []).append(payload)
                        continue
                    other = self.ids[target]
                    if frozenset((name, other)) not in self.links:
                        continue
                    if not reliable and self.drop_unreliable:
                        continue
                    self.cores[other].receive(core.local_id, payload, self.now, reliable)
            if not moved:
                return
        raise AssertionError("the network did not go quiet")

    def advance(self, seconds: float, step: float = 0.01) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for core in self.cores.values():
                deadline = core.next_deadline()
                if deadline is not None and deadline <= self.now:
                    core.handle_timer(self.now)
            self.pump()

    def view(self, name: str) -> dict[str, object]:
        """Who ``name`` sees, by display name of the owning node (participants: node/pid/client)."""
        seen: dict[str, object] = {}
        for client, (owner, _, text) in self.cores[name].entries().items():
            key = owner.name if not owner.participant else f"{owner.name}/{owner.participant}/{client}"
            seen[key] = json.loads(text)
        return seen


def test_set_reaches_every_peer_in_a_full_mesh_without_relay() -> None:
    net = Net(["a", "b", "c", "d"])
    for x, y in [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")]:
        net.link(x, y)
    net.cores["a"].set_local('{"typing":true}', net.now)
    net.pump()
    for n in "bcd":
        assert net.view(n) == {"a": {"typing": True}}
        assert [e.text for e in net.cores[n].events] == ['{"typing":true}']
    assert all(core.stats["forwarded"] == 0 for core in net.cores.values())


def test_throttle_keeps_the_latest_at_most_rate_per_second() -> None:
    net = Net(["a", "b"])
    net.link("a", "b")
    b = net.cores["b"]
    for i in range(100):  # 100 updates in one second
        net.cores["a"].set_local(json.dumps({"x": i}), net.now)
        net.advance(0.01, step=0.01)
    net.advance(0.2)
    changes = [json.loads(e.text) for e in b.events if e.text]
    assert changes[-1] == {"x": 99}  # the latest is never lost
    assert 15 <= len(changes) <= 22  # about 20 per second, not 100


def test_unreliable_loss_is_repaired_by_the_settle() -> None:
    net = Net(["a", "b"])
    net.link("a", "b")
    net.drop_unreliable = True
    net.cores["a"].set_local('{"x":1}', net.now)
    net.pump()
    assert net.view("b") == {}
    net.advance(1.1)
    assert net.view("b") == {"a": {"x": 1}}


def test_renew_and_expiry() -> None:
    net = Net(["a", "b"])
    net.link("a", "b")
    net.cores["a"].set_local('{"x":1}', net.now)
    net.pump()
    clock = net.cores["a"].local_clock
    net.advance(16, step=0.5)
    assert net.cores["a"].local_clock == clock + 1  # renewed at 15 s
    assert net.view("b") == {"a": {"x": 1}}
    net.advance(40, step=0.5)
    assert net.view("b") == {"a": {"x": 1}}  # kept alive by the renewals
    # b stops hearing from a (a link that stays up but delivers nothing): expires after 30 s.
    # The last renewal was at most 15 s ago, so the entry lives 15 to 30 s more.
    net.links.clear()
    net.advance(14.5, step=0.5)
    assert net.view("b") == {"a": {"x": 1}}
    net.advance(16, step=0.5)
    assert net.view("b") == {}
    assert net.cores["b"].events[-1].text is None


def test_clear_and_peer_removal() -> None:
    net = Net(["a", "b", "c"])
    for x, y in [("a", "b"), ("a", "c"), ("b", "c")]:
        net.link(x, y)
    net.cores["a"].set_local('{"x":1}', net.now)
    net.cores["b"].set_local('{"y":2}', net.now)
    net.pump()
    net.cores["a"].set_local(None, net.now)
    net.pump()
    assert net.view("c")["a"] == {"x": 1}  # throttled: 50 ms after the last send
    net.advance(0.06)
    assert net.view("c") == {"b": {"y": 2}}
    net.cut("b", "c")
    assert net.view("c") == {"b": {"y": 2}}  # c still reaches b through a
    assert net.view("a") == {"b": {"y": 2}}  # a still hears b directly: c's loss is not a's
    net.cut("a", "b")
    assert net.view("c") == {} and net.view("a") == {}


def test_partial_mesh_relays_and_repairs() -> None:
    net = Net(["a", "b", "c"])
    net.link("a", "b")
    net.link("b", "c")  # a - b - c
    net.cores["a"].set_local('{"who":"a"}', net.now)
    net.cores["c"].set_local('{"who":"c"}', net.now)
    net.pump()
    assert net.view("c") == {"a": {"who": "a"}}
    assert net.view("a")["c"] == {"who": "c"}
    net.advance(0.1)
    net.cores["a"].set_local('{"who":"a2"}', net.now)
    net.pump()
    assert net.view("c")["a"] == {"who": "a2"}
    # b goes: a and c lose each other (no other path) at once, not after 30 s.
    net.cut("a", "b")
    net.cut("b", "c")
    assert net.view("a") == {} and net.view("c") == {}


def test_a_second_path_takes_over_when_the_relay_goes() -> None:
    net = Net(["a", "b", "c", "d"])
    # a - b - c and a - d - c: two paths from a to c.
    for x, y in [("a", "b"), ("b", "c"), ("a", "d"), ("d", "c")]:
        net.link(x, y)
    net.cores["c"].set_local('{"who":"c"}', net.now)
    net.pump()
    assert net.view("a")["c"] == {"who": "c"}
    net.cut("a", "b")
    net.cut("b", "c")
    assert net.view("a")["c"] == {"who": "c"}


def test_late_joiner_gets_every_state() -> None:
    net = Net(["a", "b", "c"])
    net.link("a", "b")
    net.cores["a"].set_local('{"n":1}', net.now)
    net.cores["b"].set_local('{"n":2}', net.now)
    net.pump()
    net.link("c", "b")  # c joins through b only
    assert net.view("c") == {"a": {"n": 1}, "b": {"n": 2}}


def test_reconnect_after_removal_shows_the_state_again() -> None:
    net = Net(["a", "b"])
    net.link("a", "b")
    net.cores["a"].set_local('{"n":1}', net.now)
    net.pump()
    net.cut("a", "b")
    assert net.view("b") == {}
    net.link("a", "b")
    assert net.view("b") == {"a": {"n": 1}}


def forged(owner_node: str, owner_name: str, client: int, clock: int, text: str | None) -> bytes:
    out = bytearray((VERSION, K_UPDATE, 1))
    for s in (owner_node, owner_name, ""):
        raw = s.encode()
        out += bytes([len(raw)]) + raw
    return bytes(out) + encode_awareness_update([(client, clock, text)])


def test_a_neighbour_cannot_set_or_clear_another_neighbours_state() -> None:
    net = Net(["a", "b", "c"])
    for x, y in [("a", "b"), ("a", "c"), ("b", "c")]:
        net.link(x, y)
    net.cores["a"].set_local('{"real":true}', net.now)
    net.pump()
    c = net.cores["c"]
    a_id, a_client = net.id("a"), client_id_for(net.id("a"))
    # b claims to speak for a (a neighbour of c): refused, both setting and clearing.
    c.receive(net.id("b"), forged(a_id, "a", a_client, 99, '{"real":false}'), net.now)
    c.receive(net.id("b"), forged(a_id, "a", a_client, 99, None), net.now)
    assert net.view("c") == {"a": {"real": True}}
    # b claims a made-up node whose client id does not match its peer id: refused.
    c.receive(net.id("b"), forged(pid(77), "x", 12345, 1, "{}"), net.now)
    assert net.view("c") == {"a": {"real": True}}
    # b clears c's own entry: c answers with a renewal, as y-protocols does.
    before = c.local_clock
    c.set_local('{"me":1}', net.now)
    c.receive(net.id("b"), forged(c.local_id, "c", c.client_id, c.local_clock, None), net.now)
    assert c.local_clock > before + 1
    assert c.stats["refused"] >= 3


def test_participant_sees_all_and_may_only_touch_its_own_clients() -> None:
    net = Net(["a", "b"])
    net.link("a", "b")
    a = net.cores["a"]
    net.cores["b"].set_local('{"who":"b"}', net.now)
    net.pump()
    a.add_participant("tab", net.now)
    net.pump()
    first = decode_awareness_update(net.participants["tab"][0])
    assert [(c, t) for c, _, t in first] == [(client_id_for(net.id("b")), '{"who":"b"}')]
    a.receive_participant("tab", encode_awareness_update([(42, 1, '{"cursor":3}')]), net.now)
    net.pump()
    assert net.view("b") == {"a/tab/42": {"cursor": 3}}
    # The tab may not set b's entry nor a's, and a second tab may not touch the first tab's.
    a.receive_participant("tab", encode_awareness_update([(client_id_for(net.id("b")), 50, "{}")]), net.now)
    a.receive_participant("tab", encode_awareness_update([(a.client_id, 50, None)]), net.now)
    a.add_participant("other", net.now)
    a.receive_participant("other", encode_awareness_update([(42, 9, None)]), net.now)
    net.pump()
    assert net.view("b") == {"a/tab/42": {"cursor": 3}}
    assert net.view("a") == {"b": {"who": "b"}, "a/tab/42": {"cursor": 3}}
    # The tab clears itself (null at the same clock: y-protocols' removeAwarenessStates).
    a.receive_participant("tab", encode_awareness_update([(42, 1, None)]), net.now)
    net.pump()
    assert net.view("b") == {}
    a.receive_participant("tab", encode_awareness_update([(42, 2, '{"cursor":4}')]), net.now)
    net.pump()
    assert net.view("b") == {"a/tab/42": {"cursor": 4}}
    a.remove_participant("tab", net.now)
    net.pump()
    assert net.view("b") == {}
    last = decode_awareness_update(net.participants["other"][-1])
    assert last == [(42, 2, None)]


def test_a_participant_that_reconnects_gets_its_client_back() -> None:
    """A Yjs provider keeps its client id and clock across reconnections, and comes back as a
    new participant (a page's socket dropped, a Yjs-server connection after the server
    restarted). Its removal used to leave a tombstone owned by the old participant, so the id
    was refused from then on (35 s and more after a y-websocket server restart)."""
    net = Net(["a", "b"])
    net.link("a", "b")
    a = net.cores["a"]
    a.add_participant("tab", net.now)
    a.receive_participant("tab", encode_awareness_update([(42, 3, '{"cursor":1}')]), net.now)
    net.pump()
    assert net.view("b") == {"a/tab/42": {"cursor": 1}}
    a.remove_participant("tab", net.now)  # the socket dropped: the path is lost, not the state
    net.pump()
    assert net.view("b") == {}
    a.add_participant("tab-again", net.now)
    a.receive_participant("tab-again", encode_awareness_update([(42, 3, '{"cursor":1}')]), net.now)
    net.pump()
    assert net.view("a") == net.view("b") == {"a/tab-again/42": {"cursor": 1}}
    # A state the client cleared itself stays cleared when an old copy comes by again.
    a.receive_participant("tab-again", encode_awareness_update([(42, 4, None)]), net.now)
    a.receive_participant("tab-again", encode_awareness_update([(42, 3, '{"cursor":1}')]), net.now)
    net.pump()
    assert net.view("b") == {}


def test_malformed_input_is_dropped_and_nothing_changes() -> None:
    net = Net(["a", "b"])
    net.link("a", "b")
    b = net.cores["b"]
    for junk in [
        b"",
        b"\x01",
        b"\x02\x00",
        b"\x01\x00\x05",
        b"\x01\x00\x01\x00",
        bytes([1, 0, 1, 1, 65, 0, 0]) + b"\xff",
    ]:
        b.receive(net.id("a"), junk, net.now)
    b.receive(net.id("a"), forged(net.id("a"), "a", client_id_for(net.id("a")), 1, "{bad json"), net.now)
    b.receive(
        net.id("a"),
        forged(net.id("a"), "a", client_id_for(net.id("a")), 1, "[" + "1," * 5000 + "1]"),
        net.now,
    )
    b.add_participant("p", net.now)
    b.receive_participant("p", b"\xff\xff", net.now)
    assert b.entries() == {}
    net.cores["a"].set_local('{"ok":1}', net.now)
    net.pump()
    assert net.view("b") == {"a": {"ok": 1}}


def test_flood_cannot_grow_memory() -> None:
    config = PresenceConfig(max_clients=64, max_clients_per_source=16, max_tombstones=32)
    net = Net(["a", "b"], config)
    net.link("a", "b")
    a = net.cores["a"]
    a.add_participant("p", net.now)
    for i in range(5000):
        clock = i // 100 + 1
        text = None if i % 7 == 0 else json.dumps({"i": i})
        a.receive_participant("p", encode_awareness_update([(1000 + i % 3000, clock, text)]), net.now)
        if i % 50 == 0:
            net.advance(0.01)
        live, tombs, _ = a.memory()
        assert live <= 16 + 1 and tombs <= 32
    for i in range(2000):  # the peer floods its own entry: one pending entry, latest kept
        net.cores["b"].set_local(json.dumps({"i": i}), net.now)
        assert len(net.cores["b"].outbox) <= 4
        net.pump()
    net.advance(0.2)
    assert net.view("a")["b"] == {"i": 1999}


def test_one_oversized_state_is_refused_alone() -> None:
    net = Net(["a"])
    a = net.cores["a"]
    a.add_participant("server", net.now)
    big = json.dumps({"pad": "x" * 9000})
    a.receive_participant("server", encode_awareness_update([(5, 1, big), (6, 1, '{"ok":1}')]), net.now)
    assert {c: json.loads(t) for c, (_, _, t) in a.entries().items()} == {6: {"ok": 1}}


def test_the_next_deadline_is_always_in_the_future_after_handle_timer() -> None:
    net = Net(["a", "b", "c"])
    net.link("a", "b")
    net.link("b", "c")
    for i in range(300):
        net.cores["a"].set_local(json.dumps({"i": i}), net.now)
        net.cores["c"].set_local(json.dumps({"i": -i}), net.now)
        net.pump()
        net.now += 0.013
        for core in net.cores.values():
            core.handle_timer(net.now)
            deadline = core.next_deadline()
            assert deadline is None or deadline > net.now
        net.pump()


def test_a_node_takes_its_client_id_back_from_a_participant() -> None:
    # A Yjs server echoes b's entry to a's server participant before b's own copy arrives.
    net = Net(["a", "b"])
    a = net.cores["a"]
    a.add_participant("server", net.now)
    b_client = client_id_for(net.id("b"))
    a.receive_participant("server", encode_awareness_update([(b_client, 7, '{"via":"server"}')]), net.now)
    assert [e.owner.participant for e in a.events] == ["server"]
    net.link("a", "b")
    net.cores["b"].set_local('{"via":"b"}', net.now)
    net.pump()
    owners = [(e.owner.participant, e.text) for e in a.events]
    assert owners[-2:] == [("server", None), ("", '{"via":"b"}')]
    assert net.view("a") == {"b": {"via": "b"}}
    # The participant can no longer touch it.
    a.receive_participant("server", encode_awareness_update([(b_client, 99, None)]), net.now)
    assert net.view("a") == {"b": {"via": "b"}}
