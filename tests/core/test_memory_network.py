"""MultipeerConnectivity over the memory network: every method and rule of the wrapper."""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from typing import Any

import pytest

import mpstore
from tests.helpers import Recorder, connected, wait_until


@pytest.fixture
def net() -> mpstore.MemoryNetwork:
    return mpstore.MemoryNetwork(seed=1)


@pytest.fixture
def nodes(net: mpstore.MemoryNetwork) -> Any:
    made: list[mpstore.MultipeerConnectivity] = []

    def make(name: str, service: str = "chat", **kwargs: Any) -> Recorder:
        node = Recorder(name, service, transport=net, **kwargs)
        made.append(node)
        return node

    yield make
    for node in made:
        node.end_all()


def test_two_peers_find_each_other_and_exchange_messages(nodes: Any) -> None:
    ann, bob = nodes("Ann", discovery_info={"team": "red"}), nodes("Bob")
    assert [p.display_name for p in ann.wait_for_peers(1, timeout=5)] == ["Bob"]
    bob.wait_for_peers(1, timeout=5)
    assert bob.get_peers()[0].discovery_info == {"team": "red"}
    assert bob.get_peers()[0] == ann.my_peer
    ann.send({"text": "hi", "n": [1, 2.5, None, True]})
    bob.send("hello", to_peer=bob.get_peers()[0])
    wait_until(lambda: bob.messages() and ann.messages())
    assert bob.messages() == [{"text": "hi", "n": [1, 2.5, None, True]}]
    assert ann.messages() == ["hello"]


def test_callbacks_run_on_one_dispatcher_thread(nodes: Any) -> None:
    ann, bob = nodes("Ann"), nodes("Bob")
    wait_until(connected(ann, bob))
    bob.send("x")
    wait_until(lambda: ann.messages() == ["x"])
    assert len(ann.threads) == 1
    (name,) = ann.threads
    assert name.startswith("mpstore-dispatch-")


def test_messages_from_one_peer_arrive_in_order(nodes: Any, net: mpstore.MemoryNetwork) -> None:
    net.set_latency(0.002)
    ann, bob = nodes("Ann"), nodes("Bob")
    wait_until(connected(ann, bob))
    for i in range(500):
        ann.send(i)
    wait_until(lambda: len(bob.messages()) == 500, timeout=10)
    assert bob.messages() == list(range(500))


def test_send_to_one_peer_and_to_a_list(nodes: Any) -> None:
    ann, bob, cat, dan = nodes("Ann"), nodes("Bob"), nodes("Cat"), nodes("Dan")
    wait_until(connected(ann, bob, cat, dan))
    by_name = {p.display_name: p for p in ann.get_peers()}
    ann.send("to bob", to_peer=by_name["Bob"])
    ann.send("to cat and dan", to_peer=[by_name["Cat"], by_name["Dan"]])
    ann.send("to all")
    wait_until(lambda: len(bob.messages()) == 2 and len(cat.messages()) == 2 and len(dan.messages()) == 2)
    assert bob.messages() == ["to bob", "to all"]
    assert cat.messages() == ["to cat and dan", "to all"]
    assert dan.messages() == ["to cat and dan", "to all"]


def test_get_peers_is_in_join_order(nodes: Any) -> None:
    ann = nodes("Ann")
    bob = nodes("Bob")
    ann.wait_for_peers(1, timeout=5)
    cat = nodes("Cat")
    ann.wait_for_peers(2, timeout=5)
    assert [p.display_name for p in ann.get_peers()] == ["Bob", "Cat"]
    wait_until(connected(ann, bob, cat))


def test_send_validation_raises_before_anything_is_sent(nodes: Any, net: mpstore.MemoryNetwork) -> None:
    ann, bob = nodes("Ann", max_message_size=1000), nodes("Bob")
    wait_until(connected(ann, bob))
    with pytest.raises(TypeError, match="JSON"):
        ann.send({"bad": object()})
    with pytest.raises(TypeError, match="JSON"):
        ann.send({1, 2})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TypeError):
        ann.send(loop)
    with pytest.raises(mpstore.MessageTooLarge):
        ann.send("x" * 2000)
    with pytest.raises(TypeError):
        ann.send("x", to_peer="Bob")
    # A peer that left: NotConnected naming it, and nothing goes to anyone else either.
    cat = nodes("Cat")
    wait_until(connected(ann, bob, cat))
    cat_peer = next(p for p in ann.get_peers() if p.display_name == "Cat")
    cat.end_all()
    wait_until(lambda: cat_peer not in ann.get_peers())
    bob_peer = next(p for p in ann.get_peers() if p.display_name == "Bob")
    with pytest.raises(mpstore.NotConnected, match="Cat") as info:
        ann.send("hello", to_peer=[bob_peer, cat_peer])
    assert info.value.peer == cat_peer
    ann.send("marker", to_peer=bob_peer)
    wait_until(lambda: bob.messages() == ["marker"])


def test_send_with_nobody_connected_is_a_no_op(nodes: Any) -> None:
    ann = nodes("Ann", service="lonely")
    ann.send("into the void")


def test_only_the_same_service_type_connects(nodes: Any) -> None:
    ann, bob, cat = nodes("Ann", service="chat"), nodes("Bob", service="chess"), nodes("Cat", service="chat")
    wait_until(connected(ann, cat))
    time.sleep(0.2)
    assert bob.get_peers() == []


def test_peer_added_before_receive_and_removed_after_last(nodes: Any) -> None:
    ann, bob = nodes("Ann"), nodes("Bob")
    wait_until(connected(ann, bob))
    for i in range(50):
        bob.send(i)
    bob.end_all()
    wait_until(lambda: "removed" in [e[0] for e in ann.events])
    kinds = [e[0] for e in ann.events]
    assert kinds[0] == "added" and kinds[-1] == "removed"
    assert kinds.count("receive") == 50


def test_accept_peer_refusal_keeps_the_peer_out_on_both_sides(nodes: Any) -> None:
    ann = nodes("Ann", refuse={"Eve"})
    bob = nodes("Bob")
    eve = nodes("Eve")
    wait_until(lambda: {p.display_name for p in bob.get_peers()} == {"Ann", "Eve"})
    wait_until(lambda: len(eve.get_peers()) == 1 and len(ann.get_peers()) == 1)
    time.sleep(0.3)
    assert [p.display_name for p in ann.get_peers()] == ["Bob"]
    assert [p.display_name for p in eve.get_peers()] == ["Bob"]
    assert "Ann" not in eve.names("added") and "Eve" not in ann.names("added")
    assert any(p.display_name == "Eve" for p in ann.asked)


def test_accept_peer_that_raises_refuses(nodes: Any, caplog: pytest.LogCaptureFixture) -> None:
    class Grumpy(Recorder):
        def accept_peer(self, peer: mpstore.PeerID) -> bool:
            raise RuntimeError("boom")

    net = mpstore.MemoryNetwork()
    grumpy = Grumpy("Grumpy", "chat", transport=net)
    bob = Recorder("Bob", "chat", transport=net)
    try:
        with caplog.at_level(logging.ERROR, logger="mpstore"):
            time.sleep(0.3)
        assert grumpy.get_peers() == [] and bob.get_peers() == []
        assert "accept_peer raised" in caplog.text
    finally:
        grumpy.end_all()
        bob.end_all()


def test_stop_and_start_looking(nodes: Any) -> None:
    ann, bob = nodes("Ann"), nodes("Bob")
    wait_until(connected(ann, bob))
    ann.stop_looking_for_peers()
    cat = nodes("Cat")
    wait_until(lambda: [p.display_name for p in cat.get_peers()] == ["Bob"])
    time.sleep(0.3)
    assert [p.display_name for p in ann.get_peers()] == ["Bob"]  # Bob stays, Cat kept out
    ann.send("still talking")
    wait_until(lambda: bob.messages() == ["still talking"])
    ann.start_looking_for_peers()
    wait_until(connected(ann, bob, cat))


def test_disconnect_then_rejoin(nodes: Any) -> None:
    ann, bob, cat = nodes("Ann"), nodes("Bob"), nodes("Cat")
    wait_until(connected(ann, bob, cat))
    ann.disconnect()
    wait_until(lambda: ann.get_peers() == [] and len(bob.get_peers()) == 1 and len(cat.get_peers()) == 1)
    wait_until(lambda: sorted(ann.names("removed")) == ["Bob", "Cat"])
    wait_until(lambda: "Ann" in bob.names("removed") and "Ann" in cat.names("removed"))
    time.sleep(0.3)
    assert ann.get_peers() == []  # looking stopped: nobody reconnects
    ann.start_looking_for_peers()
    wait_until(connected(ann, bob, cat))
    ann.send("back")
    wait_until(lambda: bob.messages() == ["back"] and cat.messages() == ["back"])


def test_clean_leave_is_seen_at_once(nodes: Any) -> None:
    ann, bob = nodes("Ann", peer_timeout=30.0), nodes("Bob", peer_timeout=30.0)
    wait_until(connected(ann, bob))
    start = time.monotonic()
    bob.end_all()
    wait_until(lambda: ann.get_peers() == [], timeout=10)
    assert time.monotonic() - start < 10.0  # at once, not after the 30 s timeout (wide: loaded CI)


def test_killed_peer_is_removed_within_peer_timeout(nodes: Any, net: mpstore.MemoryNetwork) -> None:
    ann, bob = nodes("Ann", peer_timeout=1.0), nodes("Bob", peer_timeout=1.0)
    wait_until(connected(ann, bob))
    start = time.monotonic()
    net.kill(bob)
    wait_until(lambda: ann.get_peers() == [], timeout=6)
    elapsed = time.monotonic() - start
    assert 0.8 <= elapsed <= 4.0, elapsed  # the timeout, plus a tick and wide scheduling slack
    wait_until(lambda: ann.names("removed") == ["Bob"])  # peer_removed runs on the dispatcher


def test_partition_and_heal(nodes: Any, net: mpstore.MemoryNetwork) -> None:
    kw = {"peer_timeout": 0.4}
    ann, bob, cat, dan = nodes("Ann", **kw), nodes("Bob", **kw), nodes("Cat", **kw), nodes("Dan", **kw)
    wait_until(connected(ann, bob, cat, dan))
    net.partition([ann, bob], [cat, dan])
    wait_until(
        lambda: connected(ann, bob)() and connected(cat, dan)() and len(ann.get_peers()) == 1, timeout=3
    )
    ann.send("inside")
    wait_until(lambda: bob.messages() == ["inside"])
    time.sleep(0.2)
    assert cat.messages() == [] and dan.messages() == []
    net.heal()
    wait_until(connected(ann, bob, cat, dan), timeout=5)
    ann.send("healed")
    wait_until(lambda: cat.messages() == ["healed"] and dan.messages() == ["healed"])


def test_partition_with_unnamed_nodes_forms_a_group(nodes: Any, net: mpstore.MemoryNetwork) -> None:
    kw = {"peer_timeout": 0.4}
    ann, bob, cat = nodes("Ann", **kw), nodes("Bob", **kw), nodes("Cat", **kw)
    wait_until(connected(ann, bob, cat))
    net.partition([ann])
    wait_until(lambda: ann.get_peers() == [] and connected(bob, cat)(), timeout=3)
    net.heal()
    wait_until(connected(ann, bob, cat), timeout=5)


def test_unreliable_messages_can_be_lost_reliable_never(nodes: Any, net: mpstore.MemoryNetwork) -> None:
    ann, bob = nodes("Ann"), nodes("Bob")
    wait_until(connected(ann, bob))
    net.set_loss(0.5)
    for i in range(200):
        ann.send({"u": i}, reliable=False)
    for i in range(200):
        ann.send({"r": i})
    wait_until(lambda: sum("r" in m for m in bob.messages()) == 200)
    unreliable = [m["u"] for m in bob.messages() if "u" in m]
    reliable = [m["r"] for m in bob.messages() if "r" in m]
    assert reliable == list(range(200))
    assert 40 < len(unreliable) < 160  # about half lost with this seed
    assert set(unreliable) <= set(range(200))


def test_latency_delays_delivery(nodes: Any, net: mpstore.MemoryNetwork) -> None:
    ann, bob = nodes("Ann"), nodes("Bob")
    wait_until(connected(ann, bob))
    net.set_latency(0.2)
    start = time.monotonic()
    ann.send("slow")
    wait_until(lambda: bob.messages() == ["slow"])
    assert time.monotonic() - start >= 0.19


def test_callbacks_may_call_back_into_the_api(nodes: Any) -> None:
    class Echo(Recorder):
        def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
            super().receive(message, from_peer)
            assert from_peer in self.get_peers()
            self.send({"echo": message}, to_peer=from_peer)

    net = mpstore.MemoryNetwork()
    echo = Echo("Echo", "chat", transport=net)
    ann = Recorder("Ann", "chat", transport=net)
    try:
        wait_until(connected(echo, ann))
        ann.send("ping")
        wait_until(lambda: ann.messages() == [{"echo": "ping"}])
    finally:
        echo.end_all()
        ann.end_all()


def test_end_all_from_inside_a_callback(nodes: Any) -> None:
    done = threading.Event()

    class Quitter(Recorder):
        def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
            self.end_all()
            done.set()

    net = mpstore.MemoryNetwork()
    quitter = Quitter("Q", "chat", transport=net)
    ann = Recorder("Ann", "chat", transport=net)
    try:
        wait_until(connected(quitter, ann))
        ann.send("quit please")
        assert done.wait(5)
        wait_until(lambda: ann.get_peers() == [])
        with pytest.raises(mpstore.Closed):
            quitter.get_peers()
    finally:
        ann.end_all()
        quitter.end_all()


def test_an_exception_in_a_callback_is_logged_and_delivery_goes_on(
    nodes: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Flaky(Recorder):
        def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
            super().receive(message, from_peer)
            if message == 1:
                raise ValueError("user bug")

    net = mpstore.MemoryNetwork()
    flaky = Flaky("Flaky", "chat", transport=net)
    ann = Recorder("Ann", "chat", transport=net)
    try:
        wait_until(connected(flaky, ann))
        with caplog.at_level(logging.ERROR):
            for i in range(3):
                ann.send(i)
            wait_until(lambda: flaky.messages() == [0, 1, 2])
        assert "user bug" in caplog.text
    finally:
        flaky.end_all()
        ann.end_all()


def test_end_all_is_idempotent_and_later_calls_raise_closed(net: mpstore.MemoryNetwork) -> None:
    ann = Recorder("Ann", "chat", transport=net)
    ann.end_all()
    ann.end_all()
    for call in (
        ann.get_peers,
        lambda: ann.send("x"),
        ann.start_looking_for_peers,
        ann.stop_looking_for_peers,
        ann.disconnect,
        lambda: ann.wait_for_peers(1, timeout=0.1),
    ):
        with pytest.raises(mpstore.Closed):
            call()
    assert not [t for t in threading.enumerate() if t.name.startswith("mpstore-") and "Ann" in t.name]


def test_context_manager_ends_all(net: mpstore.MemoryNetwork) -> None:
    with Recorder("Ann", "chat", transport=net) as ann, Recorder("Bob", "chat", transport=net) as bob:
        wait_until(connected(ann, bob))
    with pytest.raises(mpstore.Closed):
        ann.get_peers()


def test_wait_for_peers_times_out(nodes: Any) -> None:
    ann = nodes("Ann", service="alone")
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        ann.wait_for_peers(1, timeout=0.2)
    assert time.monotonic() - start < 3.0  # the timeout, not forever (wide: loaded CI)
    with pytest.raises(mpstore.Timeout):
        ann.wait_for_peers(1, timeout=0.05)


def test_garbage_collection_shuts_a_node_down(net: mpstore.MemoryNetwork) -> None:
    bob = Recorder("Bob", "chat", transport=net)
    try:
        ann = Recorder("Ann", "chat", transport=net)
        wait_until(connected(ann, bob))
        ref = weakref.ref(ann)
        del ann
        gc.collect()
        assert ref() is None
        wait_until(lambda: bob.get_peers() == [])
        wait_until(lambda: not [t for t in threading.enumerate() if "Ann" in t.name])
    finally:
        bob.end_all()


def test_max_peers_is_enforced(net: mpstore.MemoryNetwork) -> None:
    made = [Recorder(f"P{i}", "chat", transport=net, max_peers=3) for i in range(4)]
    try:
        time.sleep(0.5)
        assert all(len(node.get_peers()) <= 2 for node in made)
        assert sum(len(node.get_peers()) for node in made) >= 4
    finally:
        for node in made:
            node.end_all()


def test_default_memory_network_and_alias() -> None:
    assert mpstore.MultipeerCommunications is mpstore.MultipeerConnectivity
    with (
        Recorder("Ann", "dflt", transport="memory") as ann,
        Recorder("Bob", "dflt", transport="memory") as bob,
    ):
        wait_until(connected(ann, bob))
        assert isinstance(ann.transport, mpstore.transports.memory.MemoryTransport)


def test_frames_are_copies_nothing_shared_by_reference(nodes: Any) -> None:
    ann, bob = nodes("Ann"), nodes("Bob")
    wait_until(connected(ann, bob))
    payload = {"list": [1, 2, 3]}
    ann.send(payload)
    payload["list"].append(4)
    wait_until(lambda: bob.messages() == [{"list": [1, 2, 3]}])


def test_repr_is_readable(nodes: Any) -> None:
    ann = nodes("Ann")
    assert "Ann" in repr(ann) and "memory" in repr(ann)


def test_interpreter_exit_without_end_all_is_clean(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "forgetful.py"
    script.write_text(
        "import mpstore, time\n"
        "net = mpstore.MemoryNetwork()\n"
        "added = []\n"
        "class Ann(mpstore.MultipeerConnectivity):\n"
        "    def peer_added(self, peer):\n"
        "        super().peer_added(peer)\n"
        "        added.append(self)\n"
        "class Bob(Ann):\n"
        "    seen = False\n"
        "    def receive(self, message, from_peer):\n"
        "        super().receive(message, from_peer)\n"
        "        Bob.seen = True\n"
        "a = Ann('Ann', 'chat', transport=net)\n"
        "b = Bob('Bob', 'chat', transport=net)\n"
        "a.wait_for_peers(1, timeout=5)\n"
        # Both 'Added peer' lines printed first: two dispatcher threads' prints would interleave.
        "deadline = time.monotonic() + 10\n"
        "while time.monotonic() < deadline and len(added) < 2:\n"
        "    time.sleep(0.01)\n"
        "a.send('bye')\n"
        "deadline = time.monotonic() + 10\n"
        "while time.monotonic() < deadline and not b.seen:\n"
        "    time.sleep(0.01)\n"
        "print('leaving without end_all')\n"
    )
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(root)),
    )
    assert result.returncode == 0, result.stderr
    assert "leaving without end_all" in result.stdout
    assert "Message from Ann - bye" in result.stdout  # the seed's default receive() prints
    assert "Traceback" not in result.stderr
    assert time.monotonic() - start < 20


def test_a_receiver_that_is_busy_holds_the_sender_back(nodes: Any, net: mpstore.MemoryNetwork) -> None:
    """Flow control, as a socket buffer gives: while the receiver's loop is blocked, the bytes it
    has not taken stay bounded (before, a sender flooded the receiver's loop with callbacks, and
    its heartbeat timer waited behind all of them)."""
    from mpstore.transports.memory import FLIGHT_HIGH

    ann, bob = nodes("Ann", peer_timeout=30.0), nodes("Bob", peer_timeout=30.0)
    wait_until(connected(ann, bob))
    (link,) = net._links.values()
    sender = ann.transport
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, link.flight[sender])
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        bob._runtime.post(lambda: time.sleep(1.5))  # Bob's loop is busy (a long apply, a GC pause)
        blob = "x" * 100_000
        for i in range(60):  # 6 MB, far more than the bound
            ann.send({"i": i, "blob": blob})
        wait_until(lambda: len(bob.messages()) == 60, timeout=30)
    finally:
        stop.set()
        watcher.join()
    assert [m["i"] for m in bob.messages()] == list(range(60))
    # The bound plus what one core turn hands over after the last writability report.
    assert 0 < peak <= FLIGHT_HIGH + 1024 * 1024 + 64 * 1024, peak
