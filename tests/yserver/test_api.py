"""connect_server's arguments, and the state machine under random event sequences."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mpstore
from mpstore._yserver import Connect, Hocuspocus, LinkConfig, ServerLink, State
from mpstore._yserver_io import server_url


def test_server_url() -> None:
    assert server_url("ws://h:1234", "y-websocket", "board") == "ws://h:1234/board"
    assert server_url("ws://h:1234/", "y-websocket", "a b/c") == "ws://h:1234/a%20b%2Fc"
    assert server_url("wss://h/yjs?auth=x", "y-websocket", "d") == "wss://h/yjs/d?auth=x"
    assert server_url("wss://h/collab", "hocuspocus", "d") == "wss://h/collab"
    for bad in ("http://h", "h:1234", "ws://"):
        with pytest.raises(mpstore.ConfigurationError):
            server_url(bad, "y-websocket", "d")


def test_connect_server_refuses_bad_arguments() -> None:
    with mpstore.MultipeerConnectivity("a", "args", transport=mpstore.MemoryNetwork()) as mc:
        with pytest.raises(mpstore.ConfigurationError, match="dialect"):
            mc.connect_server("ws://127.0.0.1:9", "s", dialect="yjs")
        with pytest.raises(mpstore.ConfigurationError, match="token"):
            mc.connect_server("ws://127.0.0.1:9", "s", token="t")
        with pytest.raises(ValueError):
            mc.connect_server("ws://127.0.0.1:9", "")
        with pytest.raises(ValueError):
            mc.connect_server("ws://127.0.0.1:9", "s", sync_timeout=0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        # A setting out of range is a ConfigurationError (was a plain ValueError, or accepted).
        ({"sync_timeout": 0}, mpstore.ConfigurationError),
        ({"connect_timeout": -1}, mpstore.ConfigurationError),
        ({"resync_interval": 0}, mpstore.ConfigurationError),
        ({"max_backoff": -1}, mpstore.ConfigurationError),
        ({"max_backoff": float("nan")}, mpstore.ConfigurationError),
        ({"document": ""}, mpstore.ConfigurationError),
        ({"document": "", "dialect": "hocuspocus"}, mpstore.ConfigurationError),
        # A value of the wrong kind is an InvalidArgument (headers={"a": 1} was accepted, then
        # every connection attempt failed inside the library).
        ({"headers": {"a": 1}}, mpstore.InvalidArgument),
        ({"headers": [("a", "b")]}, mpstore.InvalidArgument),
        ({"document": 5}, mpstore.InvalidArgument),
        ({"token": 5, "dialect": "hocuspocus"}, mpstore.InvalidArgument),
    ],
)
def test_connect_server_settings_are_checked_with_mpstore_errors(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    net = mpstore.MemoryNetwork()
    with mpstore.MultipeerConnectivity("a", "args", transport=net) as mc, pytest.raises(error):
        mc.connect_server("ws://127.0.0.1:9", "s", **kwargs)  # type: ignore[arg-type]


def test_nothing_listening_is_retried_with_backoff_and_closes_cleanly() -> None:
    import socket

    with socket.socket() as s:  # a port with nothing behind it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mpstore.MultipeerConnectivity("a", "args", transport=mpstore.MemoryNetwork()) as mc:
        conn = mc.connect_server(f"ws://127.0.0.1:{port}", "s", max_backoff=1.0)
        with pytest.raises(mpstore.Timeout, match="not synced"):
            conn.wait_synced(2.5)
        assert conn.state in ("waiting", "connecting") and conn.connects == 0
        conn.close()
        assert conn.state == "closed"
        with pytest.raises(mpstore.Closed):
            conn.wait_synced(1)
        mc.shared_dict("s")["k"] = 1  # the store is unaffected


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["made", "lost", "lost-auth", "garbage", "step2", "denied", "timer", "wait"]),
        st.floats(min_value=0.0, max_value=40.0),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.integers(0, 2**32))
def test_no_tight_retry_and_refusals_stay_refused(events: list[tuple[str, float]], seed: int) -> None:
    config = LinkConfig(backoff_initial=0.5, backoff_max=8.0)
    link = ServerLink(Hocuspocus("d"), config=config, rng=random.Random(seed))
    now = 0.0
    link.start(now)
    last_loss: float | None = None
    for kind, dt in events:
        now += dt
        before = link.state
        if kind == "made":
            link.connection_made(now)
        elif kind == "lost":
            link.connection_lost(now, "reset", code=1006)
        elif kind == "lost-auth":
            link.connection_lost(now, "refused", http_status=403)
        elif kind == "garbage":
            link.frame_received(b"\x01d\xff", now)
        elif kind == "step2":
            link.frame_received(b"\x01d\x00\x01\x02\x00\x00", now)
        elif kind == "denied":
            link.frame_received(b"\x01d\x02\x01\x02no", now)
        elif kind == "timer":
            deadline = link.next_deadline()
            if deadline is not None:
                now = max(now, deadline)
                link.handle_timer(now)
        if before in (State.CONNECTING, State.SYNCING, State.SYNCED) and link.state is State.WAITING:
            last_loss = now
        for effect in link.effects():
            if isinstance(effect, Connect):
                assert before not in (State.FAILED, State.CLOSED)
                if last_loss is not None and before is State.WAITING:
                    assert now - last_loss >= config.backoff_initial / 2  # never a tight loop
        if link.state is State.FAILED:
            assert link.next_deadline() is None and link.error is not None
        if link.state is State.WAITING:
            deadline = link.next_deadline()
            assert last_loss is not None and deadline is not None
            assert deadline >= last_loss + config.backoff_initial / 2 - 1e-9
