"""A shared scoreboard: three players score at the same time, a fourth joins late, and every
device ends with the same board.

    python examples/scoreboard.py

All four devices run in this one process on mpstore's in-memory network, so no network is
needed (set MPSTORE_TRANSPORT=lan to use the LAN transport instead, e.g. one device per machine
by editing NAMES).
"""

import os
import random
import threading

import mpstore

_print_lock = threading.Lock()


def say(text):
    with _print_lock:  # each device calls back on its own thread
        print(text)


TRANSPORT = os.environ.get("MPSTORE_TRANSPORT", "memory")
NAMES = ["Ann", "Bob", "Cat"]


class Device(mpstore.MultipeerConnectivity):
    def peer_added(self, peer):
        say(f"{self.my_peer.display_name}: {peer.display_name} joined")

    def peer_removed(self, peer):
        pass


def play(device, points):
    scores = device.shared_dict("scores")
    me = device.my_peer.display_name
    for _ in range(points):
        with scores.batch():  # one transaction: both keys travel in one update
            scores[me] = scores.get(me, 0) + 1
            scores["last"] = me


devices = [Device(name, "scoreboard", transport=TRANSPORT) for name in NAMES]
try:
    for d in devices:
        d.wait_for_peers(len(NAMES) - 1, timeout=10)
    players = [threading.Thread(target=play, args=(d, random.randint(20, 40))) for d in devices]
    for p in players:
        p.start()
    for p in players:
        p.join()

    # A late joiner receives everything as one snapshot.
    late = Device("Dan", "scoreboard", transport=TRANSPORT)
    devices.append(late)
    board = late.shared_dict("scores")
    board.wait_for(lambda s: all(n in s for n in NAMES), timeout=10)

    # Everyone declares the winner at once: the same last writer wins on every device.
    leader = max(NAMES, key=board.__getitem__)
    for d in devices:
        d.shared_dict("scores")["winner"] = f"{leader} (says {d.my_peer.display_name})"

    # Wait until every board is the same at one moment (checked on each change and every 0.1 s).
    final = devices[0].shared_dict("scores")
    boards = [d.shared_dict("scores") for d in devices]
    final.wait_for(lambda s: all(b.to_dict() == s.to_dict() for b in boards), timeout=10)
    lines = [f"{name:>4}: {final[name]:3d} points" for name in NAMES]
    lines.append(f"winner: {final['winner']}")
    same = all(d.shared_dict("scores").to_dict() == final.to_dict() for d in devices)
    lines.append(f"all {len(devices)} boards equal: {same}")
    say("\n".join(lines))
finally:
    for d in devices:
        d.end_all()
