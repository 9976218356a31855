"""A shared photo album: Ann sends Bob a photo directly, and puts another into the album by
reference; Cid joins after Ann has left and still gets it, from Bob.

    python examples/photo_album.py

Runs on mpstore's in-memory network (no network needed); the photos are random bytes made in a
temporary folder.
"""

import hashlib
import os
import shutil
import tempfile
import threading

import mpstore

_print_lock = threading.Lock()


def say(text):
    with _print_lock:  # each phone calls back on its own thread
        print(text)


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Phone(mpstore.MultipeerConnectivity):
    def peer_added(self, peer):
        say(f"[{self.my_peer.display_name}] sees {peer.display_name}")

    def peer_removed(self, peer):
        say(f"[{self.my_peer.display_name}] lost {peer.display_name}")

    def accept_file(self, transfer, from_peer):
        say(
            f"[{self.my_peer.display_name}] {from_peer.display_name} offers {transfer.name} "
            f"({transfer.size} bytes, {transfer.media_type}): yes"
        )
        return True  # into file_dir; return a folder to choose another, False to decline

    def file_received(self, transfer, from_peer):
        say(
            f"[{self.my_peer.display_name}] saved {os.path.basename(transfer.path)} "
            f"from {from_peer.display_name}, SHA-256 checked"
        )


folder = tempfile.mkdtemp(prefix="mpstore-album-")
beach, sunset = os.path.join(folder, "beach.jpg"), os.path.join(folder, "sunset.jpg")
for path in (beach, sunset):
    with open(path, "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024))

network = mpstore.MemoryNetwork()
ann = Phone("Ann", "album", transport=network)
bob = Phone("Bob", "album", transport=network, file_dir=os.path.join(folder, "bob"))
cid = None
try:
    ann.wait_for_peers(1, timeout=10)
    bob.wait_for_peers(1, timeout=10)

    transfer = ann.send_file(beach)  # straight to every peer (Bob)
    transfer.wait(timeout=30)
    say(f"[Ann] beach.jpg delivered: {transfer.progress:.0%}")

    album = ann.shared_dict("album")
    album["sunset"] = ann.share_file(sunset)  # a small token in the store, not the bytes
    bob_album = bob.shared_dict("album")
    bob_album.wait_for(lambda d: "sunset" in d, timeout=10)
    got = bob.fetch_file(bob_album["sunset"]).wait(timeout=30)
    say(f"[Bob] fetched {os.path.basename(got)}")

    ann.end_all()  # the author leaves
    cid = Phone("Cid", "album", transport=network, file_dir=os.path.join(folder, "cid"))
    cid.wait_for_peers(1, timeout=10)
    cid_album = cid.shared_dict("album")
    cid_album.wait_for(lambda d: "sunset" in d, timeout=10)
    late = cid.fetch_file(cid_album["sunset"])
    path = late.wait(timeout=30)
    say(f"[Cid] fetched {os.path.basename(path)} from {late.peer.display_name}")
    same = sha256_of(path) == sha256_of(sunset) == cid_album["sunset"]["sha256"]
    say(f"sunset.jpg identical at Cid: {same}")
finally:
    for phone in (ann, bob, cid):
        if phone is not None:
            phone.end_all()
    shutil.rmtree(folder)
