"""Files over Multipeer Connectivity (the simulated framework): our own chunks on sendData.

We carry files as our own 256 KiB chunks in reliable sendData frames, not with the framework's
sendResourceAtURL: one protocol on every transport (resume from the missing chunks after a lost
link, per-chunk hashes, any peer serving a store-referenced file), and a bridge that only moves
bytes. These tests run it through the simulation with both adapters.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.files.helpers import FilePeer, make_file, sha_of
from tests.helpers import wait_until

from . import sim
from .test_wrapper_mc import mc_platform  # noqa: F401  (the fixture)


@pytest.mark.usefixtures("mc_platform")
def test_a_file_crosses_mc_byte_identical_with_messages_interleaved(world: sim.World, tmp_path: Path) -> None:
    got: list[Any] = []

    class Bob(FilePeer):
        def receive(self, message: Any, from_peer: Any) -> None:
            got.append((message, time.monotonic()))

    ann = FilePeer("Ann", "files", transport="mc")
    bob = Bob("Bob", "files", transport="mc", file_dir=tmp_path / "in")
    try:
        ann.wait_for_peers(1, timeout=10)
        bob.wait_for_peers(1, timeout=10)
        src = tmp_path / "photo.heic"
        digest = make_file(src, 2 * 1024 * 1024 + 99)
        frames_before = world.sent_frames
        handle = ann.send_file(src)
        sent_at = []
        while not handle.done:
            ann.send({"n": len(sent_at)})
            sent_at.append(time.monotonic())
            time.sleep(0.02)
        handle.wait(timeout=30)
        wait_until(lambda: len(bob.received) == 1 and len(got) == len(sent_at))
        assert sha_of(bob.received[0].path) == digest
        assert [m for m, _ in got] == [{"n": i} for i in range(len(sent_at))]
        assert world.sent_frames - frames_before >= (2 * 1024 * 1024) // (16 * 1024)  # 16 KiB frames
    finally:
        ann.end_all()
        bob.end_all()


@pytest.mark.usefixtures("mc_platform")
def test_a_store_referenced_file_over_mc_from_a_non_author(world: sim.World, tmp_path: Path) -> None:
    ann = FilePeer("Ann", "files", transport="mc")
    bob = FilePeer("Bob", "files", transport="mc", file_dir=tmp_path / "bob")
    made = [ann, bob]
    try:
        ann.wait_for_peers(1, timeout=10)
        src = tmp_path / "clip.mov"
        digest = make_file(src, 600 * 1024)
        ann.shared_dict("media")["clip"] = ann.share_file(src)
        wait_until(lambda: "clip" in bob.shared_dict("media"), timeout=10)
        assert sha_of(bob.fetch_file(bob.shared_dict("media")["clip"]).wait(timeout=30)) == digest
        ann.end_all()
        cid = FilePeer("Cid", "files", transport="mc", file_dir=tmp_path / "cid")
        made.append(cid)
        cid.wait_for_peers(1, timeout=10)
        wait_until(lambda: "clip" in cid.shared_dict("media"), timeout=10)
        late = cid.fetch_file(cid.shared_dict("media")["clip"])
        assert sha_of(late.wait(timeout=30)) == digest
        assert late.peer is not None and late.peer.display_name == "Bob"
    finally:
        for m in made:
            m.end_all()
