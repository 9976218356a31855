"""The Yjs-server client without I/O: dialect frames and the connection's state machine."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpstore import ServerRefused
from mpstore._syncproto import encode_sync_step1, encode_sync_step2, encode_update, encode_var_uint
from mpstore._yserver import (
    AwarenessIn,
    Connect,
    Disconnect,
    Failed,
    Finished,
    Hocuspocus,
    LinkConfig,
    Lost,
    Opened,
    QueryAwareness,
    Send,
    ServerLink,
    State,
    Synced,
    SyncIn,
    YWebsocket,
    backoff_delay,
    make_dialect,
)


def text(s: str) -> bytes:
    raw = s.encode()
    return encode_var_uint(len(raw)) + raw


def hp_frame(doc: str, *body: bytes) -> bytes:
    return text(doc) + b"".join(body)


# -- dialect frames ---------------------------------------------------------------------------------


def test_hocuspocus_auth_frame_is_the_providers() -> None:
    # @hocuspocus/provider AuthenticationMessage: name, Auth(2), Token(0), token, version.
    (frame,) = Hocuspocus("room").hello("s3cret")
    assert frame == text("room") + b"\x02\x00" + text("s3cret") + text("mpstore")


def test_hocuspocus_wraps_sync_and_awareness_with_the_document_name() -> None:
    d = Hocuspocus("dé")
    step1 = encode_sync_step1(b"\x00")
    assert d.wrap_sync(step1) == text("dé") + step1
    assert d.wrap_awareness(b"\x01\x02") == text("dé") + b"\x01\x02\x01\x02"


def test_hocuspocus_parses_server_frames() -> None:
    d = Hocuspocus("room")
    step2 = encode_sync_step2(b"\x00\x00")
    assert d.parse(hp_frame("room", step2)).data == step2
    # SyncReply (4) carries a step 1 that must not trigger another one; to us it is sync.
    reply = hp_frame("room", b"\x04", encode_sync_step1(b"\x00")[1:])
    assert d.parse(reply).data == encode_sync_step1(b"\x00")
    assert d.parse(hp_frame("room", b"\x02\x01", text("nope"))).kind == "denied"
    assert d.parse(hp_frame("room", b"\x02\x01", text("nope"))).text == "nope"
    ok = d.parse(hp_frame("room", b"\x02\x02", text("readonly")))
    assert (ok.kind, ok.text) == ("authenticated", "readonly")
    assert d.parse(hp_frame("room", b"\x01", b"\x01\x07")).data == b"\x07"
    assert d.parse(hp_frame("room", b"\x08\x00")).text == "refused"
    assert d.parse(hp_frame("room", b"\x07", text("bye"))).kind == "close"
    assert d.parse(b"\x09").kind == "ping"
    assert d.parse(hp_frame("other", step2)).kind == "ignore"
    assert d.parse(hp_frame("room\0session", step2)).kind == "sync"


def test_y_websocket_frames() -> None:
    d = YWebsocket()
    upd = encode_update(b"\x00\x00")
    assert d.wrap_sync(upd) == upd
    assert d.parse(upd).data == upd
    assert d.parse(b"\x01\x02\xaa\xbb").data == b"\xaa\xbb"
    assert d.parse(b"\x02\x00" + text("go away")).text == "go away"
    assert d.parse(b"\x03").kind == "query-awareness"
    assert d.keepalive() is None


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00",
        b"\x00\x07\x00",
        b"\x00\x01\x05ab",
        b"\x01\x05a",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ],
)
def test_garbage_is_a_protocol_error_not_a_crash(frame: bytes) -> None:
    from mpstore import ProtocolError

    with pytest.raises(ProtocolError):
        YWebsocket().parse(frame)
    with pytest.raises(ProtocolError):
        Hocuspocus("r").parse(text("r") + frame if frame else b"\x05ab")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_frame_parses_or_raises_protocol_error(frame: bytes) -> None:
    from mpstore import ProtocolError

    for dialect in (YWebsocket(), Hocuspocus("r")):
        try:
            dialect.parse(frame)
        except ProtocolError:
            pass


def test_make_dialect() -> None:
    assert isinstance(make_dialect("hocuspocus", "x"), Hocuspocus)
    with pytest.raises(ValueError, match="unknown server dialect"):
        make_dialect("ywebsocket", "x")


# -- the state machine --------------------------------------------------------------------------------


def kinds(effects: list[object]) -> list[str]:
    return [type(e).__name__ for e in effects]


def open_link(dialect: str = "hocuspocus", token: str | None = "t", **config: float) -> ServerLink:
    link = ServerLink(
        make_dialect(dialect, "room"), token=token, config=LinkConfig(**config), rng=random.Random(1)
    )
    link.start(0.0)
    assert kinds(link.effects()) == ["Connect"]
    link.connection_made(0.1)
    return link


def test_open_sends_the_token_then_attaches() -> None:
    link = open_link()
    effects = link.effects()
    assert isinstance(effects[0], Send) and effects[0].frame.startswith(text("room") + b"\x02\x00")
    assert isinstance(effects[1], Opened)
    assert link.state is State.SYNCING
    assert link.send_sync(encode_sync_step1(b"\x00"), 0.2)
    assert link.effects() == [Send(text("room") + encode_sync_step1(b"\x00"))]


def test_server_step2_means_synced_and_resets_backoff() -> None:
    link = open_link()
    link.effects()
    link.attempts = 3
    link.frame_received(hp_frame("room", encode_sync_step2(b"\x00\x00")), 0.3)
    effects = link.effects()
    assert isinstance(effects[0], SyncIn) and isinstance(effects[1], Synced)
    assert link.state is State.SYNCED and link.attempts == 0


def test_no_send_while_offline() -> None:
    link = ServerLink(YWebsocket())
    assert not link.send_sync(encode_update(b"\x00\x00"), 0.0)
    assert link.effects() == []


def test_sync_timeout_disconnects_and_backs_off() -> None:
    link = open_link(sync_timeout=5.0)
    link.effects()
    assert link.next_deadline() == pytest.approx(5.1)
    link.handle_timer(5.2)
    effects = link.effects()
    assert kinds(effects) == ["Disconnect", "Lost"]
    assert link.state is State.WAITING
    deadline = link.next_deadline()
    assert deadline is not None and 5.2 + 0.25 <= deadline <= 5.2 + 0.5
    link.handle_timer(deadline)
    assert kinds(link.effects()) == ["Connect"]


def test_connect_timeout() -> None:
    link = ServerLink(YWebsocket(), config=LinkConfig(connect_timeout=3.0))
    link.start(0.0)
    link.effects()
    link.handle_timer(3.0)
    assert kinds(link.effects()) == ["Disconnect"]  # nothing was attached: no Lost
    assert link.state is State.WAITING


def test_backoff_grows_with_jitter_and_caps() -> None:
    config = LinkConfig(backoff_initial=1.0, backoff_max=8.0, backoff_factor=2.0)
    rng = random.Random(7)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 8.0), (1000, 8.0)]:
        delays = [backoff_delay(config, attempt, rng.uniform) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # really jittered


def test_repeated_failures_never_retry_tightly() -> None:
    # A server that accepts the socket and drops it at once, 50 times: the waits grow to the cap.
    link = ServerLink(
        Hocuspocus("room"), config=LinkConfig(backoff_initial=0.5, backoff_max=30.0), rng=random.Random(3)
    )
    now = 0.0
    link.start(now)
    waits = []
    for _ in range(50):
        link.effects()
        link.connection_made(now)
        link.connection_lost(now, "reset", code=1006)
        deadline = link.next_deadline()
        assert deadline is not None
        waits.append(deadline - now)
        now = deadline
        link.handle_timer(now)
    assert waits[0] < 0.6 and min(waits[10:]) >= 15.0
    assert now > 20 * 15.0  # 50 attempts took many minutes, not a tight loop


@pytest.mark.parametrize(
    "how",
    ["denied-frame", "http-401", "http-403", "close-4401", "close-4403"],
)
def test_auth_failure_is_terminal_with_a_clear_error(how: str) -> None:
    link = open_link()
    link.effects()
    if how == "denied-frame":
        link.frame_received(hp_frame("room", b"\x02\x01", text("permission-denied")), 1.0)
    elif how.startswith("http"):
        link.connection_lost(1.0, "server rejected WebSocket connection", http_status=int(how[-3:]))
    else:
        link.connection_lost(1.0, "closed", code=int(how[-4:]))
    effects = link.effects()
    failed = [e for e in effects if isinstance(e, Failed)]
    assert len(failed) == 1 and isinstance(failed[0].error, ServerRefused)
    assert "refused" in str(failed[0].error) and "not retrying" in str(failed[0].error)
    assert link.state is State.FAILED and link.next_deadline() is None
    link.handle_timer(10_000.0)
    assert link.effects() == []
    # restart() (a new token) tries again.
    link.token = "right"
    link.start(10_001.0)
    assert kinds(link.effects()) == ["Connect"]


def test_y_websocket_denied_message() -> None:
    link = open_link("y-websocket", token=None)
    assert kinds(link.effects()) == ["Opened"]
    link.frame_received(b"\x02\x00" + text("no"), 1.0)
    assert kinds(link.effects()) == ["Disconnect", "Failed"]


def test_other_http_statuses_are_retried() -> None:
    link = ServerLink(YWebsocket(), rng=random.Random(1))
    link.start(0.0)
    link.effects()
    link.connection_lost(0.1, "server rejected WebSocket connection", http_status=503)
    assert link.state is State.WAITING and link.effects() == []


def test_garbage_from_the_server_reconnects() -> None:
    link = open_link()
    link.effects()
    link.frame_received(text("room") + b"\x00\x09", 1.0)
    assert kinds(link.effects()) == ["Disconnect", "Lost"]
    assert link.state is State.WAITING


def test_keepalive_only_when_quiet_and_only_for_hocuspocus() -> None:
    link = open_link(keepalive=20.0)
    link.effects()
    link.frame_received(hp_frame("room", encode_sync_step2(b"\x00\x00")), 0.5)
    link.effects()
    assert link.next_deadline() == pytest.approx(20.1)
    link.send_sync(encode_update(b"\x00\x00"), 10.0)
    link.effects()
    link.handle_timer(20.1)
    assert link.effects() == []
    link.handle_timer(30.0)
    (keep,) = link.effects()
    assert isinstance(keep, Send) and keep.frame == text("room") + b"\x01\x01\x00"
    ylink = open_link("y-websocket")
    ylink.effects()
    assert ylink.next_deadline() is not None  # the sync timeout only
    ylink.frame_received(encode_sync_step2(b"\x00\x00"), 1.0)
    assert ylink.next_deadline() is None


def test_ping_pong_awareness_query_and_close() -> None:
    link = open_link()
    link.effects()
    link.frame_received(b"\x09", 1.0)
    assert link.effects() == [Send(b"\x0a")]
    link.frame_received(hp_frame("room", b"\x01", b"\x01\x07"), 1.0)
    link.frame_received(hp_frame("room", b"\x03"), 1.0)
    assert link.effects() == [AwarenessIn(b"\x07"), QueryAwareness()]
    link.frame_received(hp_frame("room", b"\x07", text("Server closed the connection")), 2.0)
    effects = link.effects()
    assert isinstance(effects[0], Disconnect) and isinstance(effects[1], Lost)


def test_close_is_final() -> None:
    link = open_link()
    link.effects()
    link.close(1.0)
    assert kinds(link.effects()) == ["Disconnect", "Finished"]
    link.start(2.0)
    link.connection_lost(2.0, "x")
    link.handle_timer(100.0)
    assert link.effects() == [] and link.state is State.CLOSED
    assert Connect() not in link.effects()
    assert Finished() == Finished()


def test_periodic_resync_while_synced() -> None:
    link = open_link(resync_interval=60.0, keepalive=1000.0)
    link.effects()
    link.frame_received(hp_frame("room", encode_sync_step2(b"\x00\x00")), 1.0)
    link.effects()
    assert link.next_deadline() == pytest.approx(61.0)
    link.handle_timer(61.0)
    assert [type(e).__name__ for e in link.effects()] == ["Resync"]
    link.frame_received(hp_frame("room", encode_sync_step2(b"\x00\x00")), 61.5)  # its answer
    assert kinds(link.effects()) == ["SyncIn"]
    assert link.next_deadline() == pytest.approx(121.5)
    plain = open_link(keepalive=1000.0)
    plain.effects()
    plain.frame_received(hp_frame("room", encode_sync_step2(b"\x00\x00")), 1.0)
    assert plain.next_deadline() == pytest.approx(1000.1)  # the keepalive only
