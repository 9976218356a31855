"""File transfer over the memory network: integrity, resume, repair, cancel, names, limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mpstore
from mpstore._wire import Kind
from tests.helpers import wait_until

from .helpers import FilePeer, files_in, make_file, sha_of

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def net() -> mpstore.MemoryNetwork:
    return mpstore.MemoryNetwork(seed=1)


@pytest.fixture
def peers(net: mpstore.MemoryNetwork) -> Iterator[Any]:
    made: list[FilePeer] = []

    def make(name: str, **kwargs: Any) -> FilePeer:
        node = FilePeer(name, "files", transport=net, **kwargs)
        made.append(node)
        return node

    yield make
    for node in made:
        node.end_all()


def _pair(peers: Any, tmp_path: Path, **kwargs: Any) -> tuple[FilePeer, FilePeer, Path]:
    inbox = tmp_path / "in"
    ann, bob = peers("Ann"), peers("Bob", file_dir=inbox, **kwargs)
    ann.wait_for_peers(1, timeout=10)
    bob.wait_for_peers(1, timeout=10)
    return ann, bob, inbox


@pytest.mark.parametrize("size", [0, 1024, 256 * 1024, 256 * 1024 + 1])
def test_small_files_arrive_byte_identical(peers: Any, tmp_path: Path, size: int) -> None:
    ann, bob, inbox = _pair(peers, tmp_path)
    src = tmp_path / "photo.jpg"
    digest = make_file(src, size)
    handle = ann.send_file(src)
    assert handle.wait(timeout=20) is None
    assert handle.state == "done" and handle.progress == 1.0
    wait_until(lambda: len(bob.received) == 1)
    got = bob.received[0]
    assert got.path == str(inbox / "photo.jpg") and sha_of(got.path) == digest
    assert got.media_type == "image/jpeg" and got.size == size and got.sha256 == digest
    assert files_in(inbox) == ["photo.jpg"]  # no partial file left behind


def test_partial_files_left_by_a_crashed_process_are_removed(peers: Any, tmp_path: Path) -> None:
    """A receiver killed mid-transfer leaves its hidden .part file (nothing can delete it then);
    they piled up in the folder for good. The next transfer into the folder removes those old
    enough that no live transfer can own them, and nothing else."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    stale = inbox / ".mpstore-0123456789abcdef-89abcdef.part"
    fresh = inbox / ".mpstore-fedcba9876543210-01234567.part"  # another process's live transfer
    other = inbox / ".mpstore-notes.part"  # not a name we make
    for path in (stale, fresh, other):
        path.write_bytes(b"x" * 1000)
    old = time.time() - 3600
    for path in (stale, other):
        os.utime(path, (old, old))
    ann, bob, _ = _pair(peers, tmp_path)
    src = tmp_path / "photo.jpg"
    make_file(src, 1000)
    assert ann.send_file(src).wait(timeout=20) is None
    wait_until(lambda: len(bob.received) == 1)
    assert not stale.exists()
    assert fresh.exists() and other.exists()


def test_50_mib_arrives_byte_identical_with_bounded_memory(tmp_path: Path) -> None:
    # In a fresh process, so that the peak RSS is this transfer's and nothing else's.
    script = f"""
import json, resource, sys, time
sys.path.insert(0, {str(ROOT)!r})
import mpstore
from pathlib import Path
from tests.files.helpers import FilePeer, make_file, sha_of
tmp = Path({str(tmp_path)!r})
digest = make_file(tmp / "big.bin", 50 * 1024 * 1024)
net = mpstore.MemoryNetwork()
ann = FilePeer("Ann", "files", transport=net)
bob = FilePeer("Bob", "files", transport=net, file_dir=tmp / "in")
ann.wait_for_peers(1, timeout=10); bob.wait_for_peers(1, timeout=10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ann.send_file(tmp / "big.bin").wait(timeout=120)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ok = sha_of(tmp / "in" / "big.bin") == digest
ann.end_all(); bob.end_all()
print(json.dumps({{"ok": ok, "grew_kib": after - before}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"]
    # The file is 50 MiB; a transfer that held it (or a large part of it) would grow by that.
    assert result["grew_kib"] < 24 * 1024, result


def test_a_link_cut_mid_transfer_resumes_from_the_missing_chunks(
    peers: Any, net: mpstore.MemoryNetwork, tmp_path: Path
) -> None:
    ann, bob, inbox = _pair(peers, tmp_path)
    src = tmp_path / "big.bin"
    digest = make_file(src, 12 * 1024 * 1024)
    net.set_latency(0.02)  # 8 chunks per 40 ms round trip: about 50 MB/s, a few tenths of a second
    handle = ann.send_file(src)
    wait_until(lambda: handle.progress > 0.2, timeout=20)
    net.partition([ann], [bob])
    wait_until(lambda: not ann.get_peers() and not bob.get_peers(), timeout=10)
    at_cut = bob.offered[0].bytes_done
    assert 0 < at_cut < src.stat().st_size and not handle.done
    net.heal()
    assert handle.wait(timeout=60) is None
    got = bob.received[0] if bob.received else None
    wait_until(lambda: len(bob.received) == 1)
    got = bob.received[0]
    assert sha_of(got.path) == digest and files_in(inbox) == ["big.bin"]


def test_a_corrupted_chunk_is_detected_and_fetched_again(peers: Any, tmp_path: Path) -> None:
    ann, bob, _inbox = _pair(peers, tmp_path)
    src = tmp_path / "doc.pdf"
    digest = make_file(src, 2 * 1024 * 1024)
    sent: list[int] = []
    real_send = ann.transport.send

    def corrupting(link: Any, frame: bytes, reliable: bool = True) -> bool:
        # The first frame of a DATA message: kind, flags, op 7, sha (32), index (4), bytes.
        if frame[0] == Kind.FILE and len(frame) > 200 and frame[2] == 7:
            index = int.from_bytes(frame[35:39], "big")
            sent.append(index)
            if index == 3 and sent.count(3) == 1:
                frame = frame[:100] + bytes([frame[100] ^ 0xFF]) + frame[101:]
        return real_send(link, frame, reliable)

    ann.transport.send = corrupting  # type: ignore[method-assign]
    ann.send_file(src).wait(timeout=30)
    wait_until(lambda: len(bob.received) == 1)
    assert sha_of(bob.received[0].path) == digest
    assert sent.count(3) == 2 and all(sent.count(i) == 1 for i in range(8) if i != 3)


def test_a_sender_that_keeps_sending_bad_bytes_fails_the_transfer(peers: Any, tmp_path: Path) -> None:
    ann, bob, inbox = _pair(peers, tmp_path)
    src = tmp_path / "doc.bin"
    make_file(src, 1024 * 1024)
    real_send = ann.transport.send

    def corrupting(link: Any, frame: bytes, reliable: bool = True) -> bool:
        if frame[0] == Kind.FILE and len(frame) > 200 and frame[2] == 7:
            frame = frame[:100] + bytes([frame[100] ^ 0xFF]) + frame[101:]
        return real_send(link, frame, reliable)

    ann.transport.send = corrupting  # type: ignore[method-assign]
    handle = ann.send_file(src)
    with pytest.raises(mpstore.TransferFailed, match="do not match"):
        handle.wait(timeout=30)
    wait_until(lambda: bob.offered and bob.offered[0].done)
    assert bob.offered[0].state == "failed" and bob.received == []
    assert files_in(inbox) == []  # never shown, partial deleted


def test_the_sender_cancels(peers: Any, net: mpstore.MemoryNetwork, tmp_path: Path) -> None:
    ann, bob, inbox = _pair(peers, tmp_path)
    src = tmp_path / "big.bin"
    make_file(src, 8 * 1024 * 1024)
    net.set_latency(0.05)
    handle = ann.send_file(src)
    wait_until(lambda: bob.offered and bob.offered[0].bytes_done > 0, timeout=20)
    handle.cancel()
    with pytest.raises(mpstore.TransferCancelled):
        handle.wait(timeout=10)
    with pytest.raises(mpstore.TransferCancelled, match="sender cancelled"):
        bob.offered[0].wait(timeout=10)
    assert bob.received == [] and files_in(inbox) == []


def test_the_receiver_cancels(peers: Any, net: mpstore.MemoryNetwork, tmp_path: Path) -> None:
    ann, bob, inbox = _pair(peers, tmp_path)
    src = tmp_path / "big.bin"
    make_file(src, 8 * 1024 * 1024)
    net.set_latency(0.05)
    handle = ann.send_file(src)
    wait_until(lambda: bob.offered and bob.offered[0].bytes_done > 0, timeout=20)
    bob.offered[0].cancel()
    with pytest.raises(mpstore.TransferCancelled, match="cancelled by the receiver"):
        handle.wait(timeout=10)
    assert bob.offered[0].state == "cancelled"
    assert bob.received == [] and files_in(inbox) == []


def test_a_declined_file_is_reported_to_the_sender(peers: Any, tmp_path: Path) -> None:
    ann, bob = peers("Ann"), peers("Bob")  # no file_dir: the default accept_file declines
    ann.wait_for_peers(1, timeout=10)
    bob.wait_for_peers(1, timeout=10)
    src = tmp_path / "a.txt"
    make_file(src, 10)
    with pytest.raises(mpstore.TransferDeclined):
        ann.send_file(src).wait(timeout=10)
    assert bob.offered[0].state == "failed"


def test_a_hostile_name_is_sanitised(peers: Any, tmp_path: Path) -> None:
    ann, bob, inbox = _pair(peers, tmp_path)
    src = tmp_path / "a.txt"
    digest = make_file(src, 100)
    ann.send_file(src, name="../../etc/passwd").wait(timeout=10)
    ann.send_file(src, name="..").wait(timeout=10)
    ann.send_file(src, name="/abs\\..\\x\x00y").wait(timeout=10)
    wait_until(lambda: len(bob.received) == 3)
    assert files_in(inbox) == ["file", "passwd", "x_y"]
    assert all(sha_of(t.path) == digest for t in bob.received)
    assert [t.name for t in bob.received] == ["passwd", "file", "x_y"]


def test_a_second_file_of_the_same_name_gets_a_number(peers: Any, tmp_path: Path) -> None:
    ann, _bob, inbox = _pair(peers, tmp_path)
    src = tmp_path / "notes.txt"
    make_file(src, 100)
    ann.send_file(src).wait(timeout=10)
    make_file(src, 200)
    ann.send_file(src).wait(timeout=10)
    assert files_in(inbox) == ["notes (1).txt", "notes.txt"]


def test_limits_size_and_transfers_per_peer(peers: Any, tmp_path: Path) -> None:
    limits = mpstore.FileLimits(max_file_size=1000, max_transfers_per_peer=1)
    ann, bob, inbox = _pair(peers, tmp_path, file_limits=limits)
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    make_file(big, 1001)
    make_file(small, 10)
    with pytest.raises(mpstore.TransferDeclined, match="over the limit"):
        ann.send_file(big).wait(timeout=10)
    bob.accept = False  # hold nothing; then: one at a time
    gate: list[Any] = []

    def slow_accept(transfer: Any, from_peer: Any) -> Any:
        gate.append(transfer)
        time.sleep(0.5)
        return str(inbox)

    bob.accept_file = slow_accept  # type: ignore[method-assign]
    first, second = ann.send_file(small), ann.send_file(small)
    first.wait(timeout=10)
    with pytest.raises(mpstore.TransferDeclined, match="busy"):
        second.wait(timeout=10)


def test_disk_bound_declines_a_file_that_would_fill_the_disk(peers: Any, tmp_path: Path) -> None:
    limits = mpstore.FileLimits(min_free_disk=2**62)
    ann, _bob, inbox = _pair(peers, tmp_path, file_limits=limits)
    src = tmp_path / "a.bin"
    make_file(src, 10)
    with pytest.raises(mpstore.TransferDeclined, match="disk space"):
        ann.send_file(src).wait(timeout=10)
    assert files_in(inbox) == []


def test_a_store_referenced_file_is_fetched_by_a_late_joiner_from_a_non_author(
    peers: Any, tmp_path: Path
) -> None:
    ann = peers("Ann")
    bob = peers("Bob", file_dir=tmp_path / "bob")
    ann.wait_for_peers(1, timeout=10)
    src = tmp_path / "cat.png"
    digest = make_file(src, 3 * 1024 * 1024 + 5)
    album = ann.shared_dict("album")
    album["cat"] = ann.share_file(src)
    wait_until(lambda: "cat" in bob.shared_dict("album"), timeout=10)
    token = bob.shared_dict("album")["cat"]
    assert token["sha256"] == digest and token["size"] == src.stat().st_size
    got = bob.fetch_file(token)
    assert sha_of(got.wait(timeout=30)) == digest and got.peer is not None and got.peer.display_name == "Ann"
    ann.end_all()  # the author leaves
    cid = peers("Cid", file_dir=tmp_path / "cid")
    cid.wait_for_peers(1, timeout=10)
    wait_until(lambda: "cat" in cid.shared_dict("album"), timeout=10)
    late = cid.fetch_file(cid.shared_dict("album")["cat"])
    path = late.wait(timeout=30)
    assert path == str(tmp_path / "cid" / "cat.png") and sha_of(path) == digest
    assert late.peer is not None and late.peer.display_name == "Bob"


def test_a_fetch_with_nobody_holding_the_file_fails_after_the_resume_timeout(
    peers: Any, tmp_path: Path
) -> None:
    limits = mpstore.FileLimits(resume_timeout=0.5)
    ann, bob, inbox = _pair(peers, tmp_path, file_limits=limits)
    src = tmp_path / "x.bin"
    make_file(src, 100)
    token = mpstore.MultipeerConnectivity.share_file(ann, src)
    token = dict(token, sha256="0" * 64)
    with pytest.raises(mpstore.TransferFailed, match="no peer with the file"):
        bob.fetch_file(token).wait(timeout=10)
    assert files_in(inbox) == []


def test_bad_arguments_raise_clearly(peers: Any, tmp_path: Path) -> None:
    ann, bob, _inbox = _pair(peers, tmp_path)
    with pytest.raises(FileNotFoundError):
        ann.send_file(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):  # the missing file is named, not the missing peer
        ann.send_file(tmp_path / "nope", to_peer=[])
    with pytest.raises(mpstore.InvalidArgument, match="not an mpstore file token"):
        bob.fetch_file({"a": 1})
    with pytest.raises(mpstore.ConfigurationError, match="needs a folder"):
        ann.fetch_file(ann.share_file(__file__))


def test_hostile_file_messages_are_dropped_and_nothing_breaks(peers: Any, tmp_path: Path) -> None:
    from mpstore import _files as F

    ann, bob, inbox = _pair(peers, tmp_path)
    bob_id = ann.get_peers()[0].id

    def raw(payload: bytes) -> None:
        ann._runtime.call(ann._node.send, Kind.FILE, [bob_id], payload, True)

    raw(b"")
    raw(b"\x63garbage")
    raw(bytes([F.Op.OFFER]) + b"{not json")
    raw(F.encode_json(F.Op.OFFER, {"x": "1", "ref": {"mpstore-file": 1, "sha256": "zz"}}))
    raw(F.encode_data_header(b"\x01" * 32, 0) + b"unsolicited")
    raw(F.encode_want("ab" * 32, range(64)))  # a file Bob does not hold
    raw(F.encode_manifest("ab" * 32, [b"x" * 32]))
    raw(F.encode_json(F.Op.DONE, {"x": "nope", "ok": True}))
    src = tmp_path / "after.txt"
    digest = make_file(src, 5000)
    ann.send_file(src).wait(timeout=10)  # the link and both nodes still work
    wait_until(lambda: len(bob.received) == 1)
    assert sha_of(bob.received[0].path) == digest and files_in(inbox) == ["after.txt"]
    assert len(bob.offered) == 1  # the bad offer never reached accept_file


def test_a_shared_file_that_changed_is_no_longer_served(peers: Any, tmp_path: Path) -> None:
    ann, bob, inbox = _pair(peers, tmp_path, file_limits=mpstore.FileLimits(resume_timeout=1.0))
    src = tmp_path / "draft.txt"
    make_file(src, 600 * 1024)
    token = ann.share_file(src)
    time.sleep(0.01)
    make_file(src, 600 * 1024)  # same size, new bytes and modification time
    with pytest.raises(mpstore.TransferFailed, match="no peer with the file"):
        bob.fetch_file(token, inbox).wait(timeout=10)
    assert files_in(inbox) == []


def test_one_send_to_every_peer_reports_each_result(peers: Any, tmp_path: Path) -> None:
    ann = peers("Ann")
    bob = peers("Bob", file_dir=tmp_path / "bob")
    cid = peers("Cid")  # no file_dir: declines
    dan = peers("Dan", file_dir=tmp_path / "dan")
    for node in (ann, bob, cid, dan):
        node.wait_for_peers(3, timeout=10)
    src = tmp_path / "party.jpg"
    digest = make_file(src, 700 * 1024)
    handle = ann.send_file(src)  # to_peer=None: everyone
    with pytest.raises(mpstore.TransferDeclined, match=r"not delivered to Cid: declined$"):
        handle.wait(timeout=20)
    by_name = {p.display_name: p.id for p in ann.get_peers()}
    assert handle.results[by_name["Bob"]] == "done" and handle.results[by_name["Dan"]] == "done"
    assert handle.results[by_name["Cid"]].startswith("declined")
    assert sha_of(tmp_path / "bob" / "party.jpg") == digest == sha_of(tmp_path / "dan" / "party.jpg")


def test_ending_mid_transfer_fails_both_sides_and_leaves_no_partial_file(
    peers: Any, net: mpstore.MemoryNetwork, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    ann, bob = peers("Ann"), peers("Bob", file_dir=inbox)
    ann.wait_for_peers(1, timeout=10)
    src = tmp_path / "big.bin"
    make_file(src, 8 * 1024 * 1024)
    net.set_latency(0.05)
    handle = ann.send_file(src)
    wait_until(lambda: bob.offered and bob.offered[0].bytes_done > 0, timeout=20)
    incoming = bob.offered[0]
    bob.end_all()
    with pytest.raises(mpstore.TransferFailed, match="closed"):
        incoming.wait(timeout=5)
    with pytest.raises(mpstore.TransferFailed, match=r"Bob: failed: .*the node was closed"):
        handle.wait(timeout=5)  # told at once, before Bob's goodbye
    assert files_in(inbox) == [] and bob.received == []


def test_a_full_disk_fails_the_transfer_on_both_sides_and_removes_the_partial_file(
    peers: Any, net: mpstore.MemoryNetwork, tmp_path: Path
) -> None:
    ann, bob, inbox = _pair(peers, tmp_path)
    src = tmp_path / "big.bin"
    make_file(src, 4 * 1024 * 1024)
    net.set_latency(0.02)
    handle = ann.send_file(src)
    files = bob._node.files

    class Full:
        def __init__(self, f: Any) -> None:
            self._f = f

        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._f, name)

    def fill_the_disk() -> bool:
        if not files._fetches:
            return False
        files._fetches[0].file = Full(files._fetches[0].file)
        return True

    wait_until(lambda: bob._runtime.call(fill_the_disk), timeout=10)
    with pytest.raises(mpstore.TransferFailed, match="No space left on device"):
        bob.offered[0].wait(timeout=10)
    with pytest.raises(mpstore.TransferFailed, match=r"Bob: failed: .*No space left"):
        handle.wait(timeout=10)
    assert files_in(inbox) == [] and bob.received == []


def test_an_unshared_file_is_no_longer_served(peers: Any, tmp_path: Path) -> None:
    ann, bob, inbox = _pair(peers, tmp_path, file_limits=mpstore.FileLimits(resume_timeout=0.5))
    src = tmp_path / "private.txt"
    make_file(src, 1000)
    token = ann.share_file(src)
    assert ann.unshare_file(token) is True and ann.unshare_file(token) is False
    with pytest.raises(mpstore.TransferFailed, match="no peer with the file"):
        bob.fetch_file(token, inbox).wait(timeout=10)


def test_received_files_served_to_others_are_bounded(peers: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from mpstore import _filenode

    monkeypatch.setattr(_filenode, "_MAX_RECEIVED_SERVED", 2)
    ann, bob, _inbox = _pair(peers, tmp_path)
    tokens = []
    for i in range(4):
        src = tmp_path / f"f{i}.bin"
        make_file(src, 100 + i)
        ann.send_file(src).wait(timeout=10)
        tokens.append(ann.share_file(src))
    wait_until(lambda: len(bob.received) == 4)
    served = bob._runtime.call(lambda: set(bob._node.files._blobs))
    assert served == {t["sha256"] for t in tokens[2:]}  # the two latest


def test_an_offer_lost_with_the_link_before_the_answer_is_made_again(
    peers: Any, net: mpstore.MemoryNetwork, tmp_path: Path
) -> None:
    import threading

    ann, bob, inbox = _pair(peers, tmp_path)
    asked: list[Any] = []
    link_gone = threading.Event()

    def slow_accept(transfer: Any, from_peer: Any) -> Any:
        asked.append(transfer)
        if len(asked) == 1:
            link_gone.wait(10)  # the link goes while Bob thinks
        return str(inbox)

    bob.accept_file = slow_accept  # type: ignore[method-assign]
    src = tmp_path / "a.bin"
    digest = make_file(src, 300 * 1024)
    handle = ann.send_file(src)
    wait_until(lambda: len(asked) == 1, timeout=10)
    net.partition([ann], [bob])
    wait_until(lambda: not ann.get_peers() and not bob.get_peers(), timeout=10)
    link_gone.set()
    wait_until(lambda: asked[0].done, timeout=10)
    net.heal()
    handle.wait(timeout=30)  # offered again once Bob is back, and accepted
    assert asked[0].state == "failed" and len(asked) == 2
    wait_until(lambda: len(bob.received) == 1)
    assert sha_of(bob.received[0].path) == digest and files_in(inbox) == ["a.bin"]
