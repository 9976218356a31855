"""Group secrets: the proof is mutual, bound to the link, and not replayable."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

import mpstore
from mpstore._auth import derive_key, make_proof, new_secret, transcript_hash, verify_proof
from mpstore._session import Hello, HelloReceived, LinkClosed, LinkSession, PeerOpened, SessionConfig
from mpstore._wire import Kind
from tests.helpers import Recorder, connected, wait_until

A_ID, B_ID, M_ID = "a" * 32, "b" * 32, "c" * 32
KEY = derive_key("correct horse", "chat")
OTHER = derive_key("wrong horse", "chat")


def make(peer_id: str, key: bytes | None, binding: bytes = b"tls", name: str = "x") -> LinkSession:
    return LinkSession(Hello(peer_id, name, {}, LinkSession.new_nonce()), SessionConfig(), 0.0, key, binding)


def pump(a: LinkSession, b: LinkSession) -> tuple[list[Any], list[Any]]:
    ea: list[Any] = []
    eb: list[Any] = []
    for _ in range(20):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for frame, _ in src.frames_to_send():
                dst.receive_frame(frame, 0.0)
                moved = True
        ea += a.events()
        eb += b.events()
        if not moved:
            break
    return ea, eb


def test_same_secret_admits() -> None:
    a, b = make(A_ID, KEY), make(B_ID, KEY)
    ea, eb = pump(a, b)
    assert [type(e) for e in ea] == [HelloReceived] and [type(e) for e in eb] == [HelloReceived]
    a.accept()
    b.accept()
    ea, eb = pump(a, b)
    assert a.is_open and b.is_open


@pytest.mark.parametrize(
    "key_a, key_b, reason",
    [
        (KEY, OTHER, "wrong group secret"),
        (KEY, None, "requires a group secret"),
        (None, KEY, "a group secret is required"),
    ],
)
def test_mismatched_secrets_never_reach_the_owner(key_a: Any, key_b: Any, reason: str) -> None:
    a, b = make(A_ID, key_a), make(B_ID, key_b)
    ea, eb = pump(a, b)
    events = ea + eb
    assert not any(isinstance(e, (HelloReceived, PeerOpened)) for e in events)
    closed = [e for e in events if isinstance(e, LinkClosed)]
    assert closed and all(e.auth_failed for e in closed)
    assert any(reason in e.reason for e in closed)


def test_different_channel_bindings_fail_so_a_relay_gains_nothing() -> None:
    # A relay that terminates TLS on both sides gives each honest peer a different binding.
    a, b = make(A_ID, KEY, binding=b"tls-leg-1"), make(B_ID, KEY, binding=b"tls-leg-2")
    ea, eb = pump(a, b)
    assert not any(isinstance(e, HelloReceived) for e in ea + eb)
    assert any(isinstance(e, LinkClosed) and e.auth_failed for e in ea)


def test_a_replayed_handshake_is_refused() -> None:
    # Record an honest B's hello and proof in one session ...
    a1, b1 = make(A_ID, KEY), make(B_ID, KEY)
    recorded: list[bytes] = []
    for _ in range(5):
        for frame, _ in b1.frames_to_send():
            recorded.append(frame)
            a1.receive_frame(frame, 0.0)
        for frame, _ in a1.frames_to_send():
            b1.receive_frame(frame, 0.0)
    assert any(f[0] == Kind.AUTH for f in recorded)
    # ... then replay it to a fresh session of A: A's new nonce changes the transcript.
    a2 = make(A_ID, KEY)
    for frame in recorded:
        a2.receive_frame(frame, 0.0)
    events = a2.events()
    assert not any(isinstance(e, HelloReceived) for e in events)
    assert any(isinstance(e, LinkClosed) and "wrong group secret" in e.reason for e in events)


def test_a_reflected_proof_does_not_verify() -> None:
    transcript = transcript_hash(b"hello-a", b"hello-m", b"")
    proof_of_a = make_proof(KEY, A_ID, transcript)
    assert verify_proof(KEY, A_ID, transcript, proof_of_a)
    assert not verify_proof(KEY, M_ID, transcript, proof_of_a)


def test_auth_before_hello_is_a_protocol_error() -> None:
    a = make(A_ID, KEY)
    a.receive_frame(bytes((Kind.AUTH, 0)) + b"x" * 32, 0.0)
    assert any(isinstance(e, LinkClosed) and "out of order" in e.reason for e in a.events())


def test_key_derivation_is_salted_by_service_type() -> None:
    assert derive_key("pass", "chat") != derive_key("pass", "game")
    assert derive_key("pass", "chat") == derive_key(b"pass", "chat")
    with pytest.raises(ValueError):
        derive_key("", "chat")
    with pytest.raises(TypeError):
        derive_key(123, "chat")  # type: ignore[arg-type]


def test_new_secret_is_readable_and_random() -> None:
    secret = new_secret()
    words = secret.split("-")
    assert len(words) == 6 and all(len(w) == 4 and w.isalpha() and w.islower() for w in words)
    assert len({new_secret() for _ in range(50)}) == 50
    assert len(new_secret(3).split("-")) == 3


def test_secret_groups_over_the_memory_network(caplog: pytest.LogCaptureFixture) -> None:
    net = mpstore.MemoryNetwork()
    secret = new_secret()
    kw: dict[str, Any] = {"transport": net, "peer_timeout": 1.0}
    with caplog.at_level(logging.INFO, logger="mpstore"):
        ann = Recorder("Ann", "chat", secret=secret, **kw)
        bob = Recorder("Bob", "chat", secret=secret, **kw)
        eve = Recorder("Eve", "chat", secret="guess", **kw)
        nob = Recorder("Nobody", "chat", **kw)
        try:
            wait_until(connected(ann, bob))
            ann.send("for members only")
            wait_until(lambda: bob.messages() == ["for members only"])
            time.sleep(0.5)
            for outsider in (eve, nob):
                assert outsider.get_peers() == [] and outsider.events == [] and outsider.asked == []
            assert [p.display_name for p in ann.get_peers()] == ["Bob"]
            assert ann.asked == [bob.my_peer]  # outsiders never reached accept_peer
        finally:
            for node in (ann, bob, eve, nob):
                node.end_all()
    assert "wrong group secret" in caplog.text


def test_repeated_failures_from_one_address_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    from mpstore._core import _host_of

    assert _host_of("198.18.0.5:4242") == "198.18.0.5"
    assert _host_of("[::1]:4242") == "::1"
    assert _host_of("memory/abc") == "memory/abc"
    net = mpstore.MemoryNetwork()
    with caplog.at_level(logging.WARNING, logger="mpstore"):
        ann = Recorder("Ann", "chat", secret="right", transport=net)
        eve = Recorder("Eve", "chat", secret="wrong", transport=net)
        try:
            wait_until(lambda: "too many failed authentications" in caplog.text, timeout=10)
        finally:
            ann.end_all()
            eve.end_all()


def test_a_flooding_peer_is_cut_off_and_the_others_carry_on(caplog: pytest.LogCaptureFixture) -> None:
    net = mpstore.MemoryNetwork()
    ann = Recorder("Ann", "chat", transport=net, max_message_rate=200.0)
    bob = Recorder("Bob", "chat", transport=net, max_message_rate=200.0)
    flood = Recorder("Flood", "chat", transport=net, max_message_rate=None)
    try:
        wait_until(connected(ann, bob, flood))
        flood.stop_looking_for_peers()
        flood._pace = lambda targets, reliable: targets  # type: ignore[method-assign]  # hostile: ignores the rate
        with caplog.at_level(logging.INFO, logger="mpstore"):
            # Flood both until each has cut it off: when one does, the other's bucket may still
            # hold tokens (it refills while that peer works), so keep flooding the one left.
            for i in range(5000):
                peers = flood.get_peers()
                if not peers:
                    break
                try:
                    flood.send(i, to_peer=peers)
                except mpstore.NotConnected:  # cut off between get_peers() and send()
                    continue
            wait_until(
                lambda: all("Flood" not in [p.display_name for p in n.get_peers()] for n in (ann, bob)),
                timeout=15,
            )
        assert "over 200 messages per second" in caplog.text
        ann.send("still fine")
        wait_until(lambda: "still fine" in bob.messages())
        assert bob.get_peers() == [ann.my_peer]
        assert len(ann.messages()) < 1000  # the burst allowance (2 s at 200/s), then cut off
    finally:
        for node in (ann, bob, flood):
            node.end_all()


def test_an_honest_fast_sender_is_paced_to_the_advertised_rate_not_cut_off() -> None:
    net = mpstore.MemoryNetwork()
    ann = Recorder("Ann", "chat", transport=net, max_message_rate=200.0)
    bob = Recorder("Bob", "chat", transport=net)
    try:
        wait_until(connected(ann, bob))
        start = time.monotonic()
        for i in range(500):
            bob.send(i, to_peer=ann.my_peer)
        elapsed = time.monotonic() - start
        wait_until(lambda: len(ann.messages()) == 500, timeout=10)
        assert ann.messages() == list(range(500))
        assert bob.get_peers() == [ann.my_peer]  # never cut off
        assert elapsed >= 1.5  # 200 at once, then 150/s (three quarters of the advertised 200)
        with pytest.raises(mpstore.SendTimeout):
            slow = Recorder("Slow", "chat", transport=net, send_timeout=0.001)
            try:
                wait_until(lambda: ann.my_peer in slow.get_peers())
                for i in range(400):  # the 201st must wait 6.7 ms: longer than its timeout
                    slow.send(i, to_peer=ann.my_peer)
            finally:
                slow.end_all()
    finally:
        ann.end_all()
        bob.end_all()
