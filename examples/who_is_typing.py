"""A scoreboard that shows who is typing: presence next to the store.

    python examples/who_is_typing.py

Three players enter scores. While one is "typing" a score, the others see "Bob is typing..."
(presence: ephemeral, never in the store's history); when the score is entered it goes into the
shared dict and the typing state is cleared. A late joiner sees at once who is typing right now,
and a player who leaves disappears from everyone's list.

All devices run in this one process on mpstore's in-memory network (set MPSTORE_TRANSPORT=lan to
use the LAN transport instead).
"""

import os
import random
import threading
import time

import mpstore

_print_lock = threading.Lock()


def say(text):
    with _print_lock:  # each device calls back on its own thread
        print(text)


TRANSPORT = os.environ.get("MPSTORE_TRANSPORT", "memory")


class Device(mpstore.MultipeerConnectivity):
    def peer_added(self, peer):
        pass

    def peer_removed(self, peer):
        pass

    def presence_changed(self, peer, state):
        # Called on this device's dispatcher thread, in order with the other callbacks.
        if self.my_peer.display_name != "Ann":
            return  # let one device narrate
        if state and state.get("typing"):
            say(f"Ann sees: {peer.display_name} is typing...")
        elif state is None:
            say(f"Ann sees: {peer.display_name} is gone")
        else:
            say(f"Ann sees: {peer.display_name} stopped typing")


def typists(device):
    """Who this device sees typing now."""
    return sorted(p.display_name for p, s in device.presence.states().items() if s.get("typing"))


def enter_score(device, points):
    me = device.my_peer.display_name
    device.presence.set({"typing": True})
    time.sleep(random.uniform(0.2, 0.4))  # thinking...
    scores = device.shared_dict("scores")
    scores[me] = scores.get(me, 0) + points
    device.presence.set({"typing": False})


devices = [Device(name, "typing", transport=TRANSPORT) for name in ("Ann", "Bob", "Cat")]
try:
    for d in devices:
        d.wait_for_peers(2, timeout=10)
    ann, bob, cat = devices
    for d in devices:
        d.presence.set({"typing": False})

    enter_score(bob, 3)
    cat.presence.set({"typing": True})  # Cat starts typing and is still at it...

    late = Device("Dan", "typing", transport=TRANSPORT)
    devices.append(late)
    late.wait_for_peers(3, timeout=10)
    deadline = time.monotonic() + 10
    while typists(late) != ["Cat"] and time.monotonic() < deadline:
        time.sleep(0.02)
    say(f"Dan joined late and sees typing: {typists(late)}")

    cat.end_all()  # ...and leaves mid-sentence: her presence goes with her
    deadline = time.monotonic() + 10
    while any("Cat" in (p.display_name for p in d.presence.states()) for d in (ann, bob, late)):
        assert time.monotonic() < deadline, "Cat's presence did not go"
        time.sleep(0.02)
    say(f"after Cat left, Dan sees typing: {typists(late)}")
    board = ann.shared_dict("scores")
    board.wait_for(lambda s: "Bob" in s, timeout=10)
    say(f"scores: {board.to_dict()} (presence never touched the store)")
finally:
    for d in devices:
        d.end_all()
