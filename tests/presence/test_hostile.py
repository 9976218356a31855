"""Hostile input: whatever a neighbour or participant sends, nothing escapes and state stays sane."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mpstore._lib0 import write_var_string
from mpstore._presence import (
    K_NEIGHBOURS,
    K_REQUEST,
    K_UPDATE,
    K_WITHDRAW,
    VERSION,
    PresenceConfig,
    PresenceCore,
    client_id_for,
    encode_awareness_update,
)

A, B = "a" * 32, "b" * 32


def varstring(text: str) -> bytes:
    out = bytearray()
    write_var_string(out, text)
    return bytes(out)


entry = st.tuples(
    st.one_of(st.integers(0, 5), st.just(client_id_for(B)), st.just(client_id_for(A))),
    st.integers(0, 5),
    st.one_of(st.none(), st.sampled_from(['{"x":1}', "[1,2]", '"s"', "NaN", "{", "1e999", '{"a":[[[]]]}'])),
)
owner = st.tuples(
    st.sampled_from([A, B, "c" * 32, "not-hex", ""]),
    st.sampled_from(["", "B", "x" * 300]),
    st.sampled_from(["", "p"]),
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([K_UPDATE, K_NEIGHBOURS, K_REQUEST, K_WITHDRAW, 9]))
    head = bytes([draw(st.sampled_from([VERSION, 0, 2])), kind])
    if draw(st.booleans()):
        return head + draw(st.binary(max_size=40))
    if kind == K_UPDATE:
        owners = draw(st.lists(owner, max_size=3))
        entries = draw(st.lists(entry, min_size=len(owners), max_size=len(owners)))
        body = bytes([len(owners)]) + b"".join(
            varstring(n) + varstring(m) + varstring(p) for n, m, p in owners
        )
        return head + body + encode_awareness_update(entries)
    if kind == K_WITHDRAW:
        clients = draw(st.lists(st.integers(0, 100), max_size=5))
        return head + bytes([len(clients)]) + bytes(clients)
    if kind == K_NEIGHBOURS:
        names = draw(st.lists(st.sampled_from([A, B, "c" * 32]), max_size=3))
        return head + bytes([len(names)]) + b"".join(varstring(n) for n in names)
    return head


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(payloads(), st.binary(max_size=30)), max_size=20),
    st.lists(st.lists(entry, max_size=4), max_size=5),
)
def test_nothing_escapes_and_views_stay_valid(from_peer: list[bytes], from_participant: list[list]) -> None:
    config = PresenceConfig(max_clients=8, max_clients_per_source=4, max_tombstones=8)
    core = PresenceCore(A, "Ann", 0.0, config)
    core.peer_added(B, 0.0)
    core.add_participant("p", 0.0)
    core.set_local('{"me":1}', 0.0)
    now = 0.0
    for i, payload in enumerate(from_peer):
        now += 0.01
        core.receive(B, payload, now, reliable=bool(i % 2))
        if i < len(from_participant):
            core.receive_participant("p", encode_awareness_update(from_participant[i]), now)
        core.handle_timer(now)
        core.outbox.clear()
    live, tombs, _ = core.memory()
    assert live <= 8 and tombs <= 8
    for client, (who, _, text) in core.entries().items():
        json.loads(text)  # only valid JSON is ever kept
        assert client != core.client_id
        assert who.node != A or who.participant == "p"  # nobody else speaks for us
    assert core.local_text == '{"me":1}'  # no one cleared our own state
