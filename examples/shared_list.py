"""A shared shopping list: two phones add, tick off and remove items at the same time, one of
them offline for a while; when they meet again both lists agree and nothing is lost.

    python examples/shared_list.py

Runs on mpstore's in-memory network (no network needed).
"""

import threading

import mpstore

_print_lock = threading.Lock()


def say(text):
    with _print_lock:  # each phone calls back on its own thread
        print(text)


class Phone(mpstore.MultipeerConnectivity):
    def peer_added(self, peer):
        say(f"[{self.my_peer.display_name}] sees {peer.display_name}")

    def peer_removed(self, peer):
        say(f"[{self.my_peer.display_name}] lost {peer.display_name}")

    def store_changed(self, store, change):
        if change.from_peer is None:
            return
        for item, (old, new) in change.changes.items():
            if new is mpstore.MISSING:
                what = "removed"
            elif old is mpstore.MISSING:
                what = f"added x{new['qty']}"
            else:
                what = "ticked" if new["done"] else f"now x{new['qty']}"
            say(f"[{self.my_peer.display_name}] {change.from_peer.display_name} {what}: {item}")


def show(phone):
    lines = [f"--- {phone.my_peer.display_name}'s list"]
    for item, entry in sorted(phone.shared_dict("shopping").items()):
        lines.append(f"  [{'x' if entry['done'] else ' '}] {item} x{entry['qty']}")
    say("\n".join(lines))


network = mpstore.MemoryNetwork()  # an isolated network, with a switch to cut it
ann = Phone("Ann", "shopping", transport=network, peer_timeout=1.0)
bob = Phone("Bob", "shopping", transport=network, peer_timeout=1.0)
try:
    ann.wait_for_peers(1, timeout=10)
    ann_list, bob_list = ann.shared_dict("shopping"), bob.shared_dict("shopping")

    ann_list["milk"] = {"qty": 1, "done": False}
    with ann_list.batch():  # one transaction, one update on the wire
        ann_list["eggs"] = {"qty": 12, "done": False}
        ann_list["bread"] = {"qty": 1, "done": False}
    bob_list.wait_for(lambda s: len(s) == 3, timeout=10)

    # Bob goes into the cellar: no connection. Both keep editing.
    network.partition([ann], [bob])
    bob_list["eggs"] = {"qty": 12, "done": True}  # Bob has the eggs
    bob_list["coffee"] = {"qty": 2, "done": False}
    ann_list["milk"] = {"qty": 2, "done": False}  # Ann wants more milk
    del ann_list["bread"]
    say(f"while apart, Ann has {sorted(ann_list)} and Bob has {sorted(bob_list)}")

    # Back in range: the two lists merge.
    network.heal()
    ann_list.wait_for(lambda s: "coffee" in s, timeout=15)
    bob_list.wait_for(lambda s: "bread" not in s and s["milk"]["qty"] == 2, timeout=15)
    show(ann)
    show(bob)
    say(f"lists equal: {ann_list.to_dict() == bob_list.to_dict()}")
finally:
    ann.end_all()
    bob.end_all()
