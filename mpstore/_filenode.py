"""File transfer on the core thread: the disk edge around the sans-IO ``_files.py``.

Every method of :class:`FileManager` runs on the core thread, except where it says otherwise.
Chunks are read from disk one at a time when the receiver asks for them and the link is
writable, and written to a hidden partial file next to the destination one at a time, so memory
stays bounded by the window (``FileLimits.window`` chunks per transfer) whatever the file's size.

Interleaving: a chunk is one message (256 KiB, two LAN frames); a receiver asks for at most
``window`` chunks at once, a sender serves at most ``_BURST`` chunks per turn of the core loop
and none while the link is over its high-water mark, so messages and store updates queued by
other code get the link between chunks, behind at most one window of file bytes.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import re
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import _files as F
from ._errors import MpstoreError, Timeout, TransferCancelled, TransferDeclined, TransferFailed
from ._peer import PeerID
from ._wire import Kind

if TYPE_CHECKING:
    from ._core import Node

__all__ = ["FileLimits", "FileManager", "FileTransfer", "hash_file"]

log = logging.getLogger("mpstore.files")

_BURST = 2
#: Received files served to other peers at once (the oldest stop being served first).
_MAX_RECEIVED_SERVED = 1024
_READ = 1024 * 1024
#: The names of partial files (see fetch): a hash prefix and a random part.
_PART_NAME = re.compile(r"\.mpstore-[0-9a-f]{16}-[0-9a-f]{8}\.part")
#: A partial file untouched this long belongs to no live transfer (one writes a chunk, or gives
#: up, within its stall and resume timeouts): a process that crashed left it behind.
_STALE_PART_MIN = 600.0


@dataclass(frozen=True)
class FileLimits:
    """Limits and pacing of file transfers (per MultipeerConnectivity object)."""

    max_file_size: int = 8 * 1024**3
    """The largest file we accept or fetch, in bytes."""
    max_transfers_per_peer: int = 4
    """Incoming transfers from one peer at once; more offers are declined as busy."""
    min_free_disk: int = 512 * 1024**2
    """A file is accepted only if its folder's disk keeps this many bytes free after it (and
    after every other file still arriving)."""
    window: int = 32
    """The most chunks asked for and not yet received, per transfer (the window adapts below
    it to keep the queueing delay near ``target_delay``)."""
    target_delay: float = 0.02
    """Queueing delay (seconds) a transfer aims to add to the link: messages wait about this long
    behind file chunks."""
    resume_timeout: float = 60.0
    """How long a transfer waits for a lost peer (or any peer with the bytes) to come back."""
    stall_timeout: float = 30.0
    """Chunks asked for and not received for this long are asked for again."""


def hash_file(
    path: str | os.PathLike[str],
    name: str | None = None,
    media_type: str | None = None,
    chunk: int = F.CHUNK_SIZE,
) -> tuple[F.FileRef, list[bytes]]:
    """Read a file once (bounded memory) and return its token and chunk hashes (any thread)."""
    p = Path(path)
    builder = F.ManifestBuilder(chunk)
    with open(p, "rb") as f:
        while True:
            block = f.read(_READ)
            if not block:
                break
            builder.feed(block)
    display = name if name is not None else p.name
    kind = media_type or mimetypes.guess_type(display)[0] or "application/octet-stream"
    ref = builder.finish(display, kind)
    return ref, builder.hashes


class FileTransfer:
    """One file on its way in or out: progress, cancel, wait (usable from any thread)."""

    def __init__(
        self,
        manager: FileManager,
        ref: F.FileRef,
        direction: str,
        peer: PeerID | None,
        path: str | None,
        xid: str,
        peers: int = 1,
    ) -> None:
        self._manager = manager
        self.ref = ref
        self.direction = direction
        self.peer = peer
        self.path = path
        self.xid = xid
        self._cond = threading.Condition()
        self._done_bytes = 0
        self._total = ref.size * max(1, peers)
        self._state = "pending"
        self._error: TransferFailed | None = None
        self.results: dict[str, str] = {}

    # -- read-only facts --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The file's name (sanitised on the receiving side once it is saved)."""
        return os.path.basename(self.path) if self.path and self.direction == "in" else self.ref.name

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return self.ref.size

    @property
    def sha256(self) -> str:
        """The SHA-256 of the file's bytes (hex)."""
        return self.ref.sha256

    @property
    def media_type(self) -> str:
        """The media type the sender gave (informative only)."""
        return self.ref.type

    @property
    def token(self) -> dict[str, Any]:
        """The file's token (see ``share_file``)."""
        return self.ref.to_value()

    @property
    def bytes_done(self) -> int:
        """Bytes sent (out: summed over receivers) or received and verified (in)."""
        return self._done_bytes

    @property
    def total_bytes(self) -> int:
        """What bytes_done reaches when complete."""
        return self._total

    @property
    def progress(self) -> float:
        """0.0 .. 1.0."""
        if self._state == "done":
            return 1.0
        return self._done_bytes / self._total if self._total else 0.0

    @property
    def state(self) -> str:
        """'pending', 'active', 'done', 'failed' or 'cancelled'."""
        return self._state

    @property
    def done(self) -> bool:
        """True once the transfer ended, well or not."""
        return self._state in ("done", "failed", "cancelled")

    @property
    def error(self) -> TransferFailed | None:
        """Why it failed, once it did."""
        return self._error

    def cancel(self) -> None:
        """Stop the transfer on both sides; a partial file is deleted."""
        if not self.done:
            try:
                self._manager.node.runtime.post(self._manager.cancel, self)
            except Exception:
                pass

    def wait(self, timeout: float | None = None) -> str | None:
        """Block until done; return the path (in) or None (out). Raise TransferFailed or Timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self.done:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise Timeout(f"{self!r} not done after {timeout} s")
                self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))
            if self._error is not None:
                raise self._error
            return self.path if self.direction == "in" else None

    def __repr__(self) -> str:
        arrow = "from" if self.direction == "in" else "to"
        who = self.peer.display_name if self.peer is not None else "peers"
        return f"<FileTransfer {self.ref.name!r} {arrow} {who} {self.progress:.0%} {self._state}>"

    # -- core thread ------------------------------------------------------------------------------
    def _set(self, state: str, done_bytes: int | None = None, error: TransferFailed | None = None) -> None:
        with self._cond:
            if self.done:
                return
            self._state = state
            if done_bytes is not None:
                self._done_bytes = done_bytes
            if error is not None:
                self._error = error
            self._cond.notify_all()

    def _add(self, n: int) -> None:
        self._done_bytes = min(self._total, self._done_bytes + n)
        if self._state == "pending":
            self._state = "active"


@dataclass
class _Blob:
    """A file we can serve."""

    path: str
    ref: F.FileRef
    hashes: list[bytes]
    size: int
    mtime_ns: int
    received: bool = False


class _Incoming:
    """A fetch in progress: the sans-IO Fetch, its partial file and its handle."""

    def __init__(self, fetch: F.Fetch, handle: FileTransfer, folder: str, part: str, f: IO[bytes]) -> None:
        self.fetch = fetch
        self.handle = handle
        self.folder = folder
        self.part = part
        self.file = f
        self.hasher = hashlib.sha256()
        self.hashed = 0
        self.push_from: str | None = None


class _Outgoing:
    """A push: the handle and each receiver's state."""

    def __init__(self, handle: FileTransfer, peers: list[str]) -> None:
        self.handle = handle
        self.state = dict.fromkeys(peers, "offered")
        self.lost_at: dict[str, float] = {}
        self.lost_from: dict[str, str] = {}  # the state a lost peer was in: offered or active


class FileManager:
    """Offers, fetches and serving of files for one node (core thread)."""

    def __init__(self, node: Node, limits: FileLimits, folder: str | None) -> None:
        self.node = node
        self.limits = limits
        self.folder = folder
        self._blobs: dict[str, _Blob] = {}
        self._open: dict[str, IO[bytes]] = {}
        self._queues: dict[str, deque[tuple[str, int]]] = {}
        self._queued: dict[str, set[tuple[str, int]]] = {}
        self._scheduled: set[str] = set()
        self._fetches: list[_Incoming] = []
        self._swept: set[str] = set()  # folders cleared of partial files left by crashes
        self._offers: dict[tuple[str, str], FileTransfer] = {}
        self._out: dict[str, _Outgoing] = {}
        self._closed = False

    # -- blobs ------------------------------------------------------------------------------------
    def register(self, path: str, ref: F.FileRef, hashes: list[bytes], *, received: bool = False) -> None:
        """Serve ``path`` as the bytes of ``ref`` from now on.

        Files we received are served too, but only the latest ``_MAX_RECEIVED_SERVED`` of them
        (each costs 32 bytes of memory per chunk); files shared or sent on purpose stay.
        """
        st = os.stat(path)
        old = self._blobs.pop(ref.sha256, None)
        if old is not None and not old.received:
            received = False
        blob = _Blob(os.path.abspath(path), ref, hashes, st.st_size, st.st_mtime_ns, received)
        self._blobs[ref.sha256] = blob
        if received:
            served = [sha for sha, b in self._blobs.items() if b.received]
            for sha in served[: max(0, len(served) - _MAX_RECEIVED_SERVED)]:
                self.unregister(sha)

    def unregister(self, sha: str) -> bool:
        """Stop serving the file with that SHA-256; False if it was not served."""
        blob = self._blobs.pop(sha, None)
        f = self._open.pop(sha, None)
        if f is not None:
            f.close()
        for peer in list(self._queues):
            self._drop_queue(peer, sha)
        return blob is not None

    def local_path(self, sha: str) -> str | None:
        """The path of a file we hold with that SHA-256, if unchanged."""
        blob = self._blobs.get(sha)
        if blob is None:
            return None
        try:
            st = os.stat(blob.path)
        except OSError:
            return None
        return blob.path if (st.st_size, st.st_mtime_ns) == (blob.size, blob.mtime_ns) else None

    # -- pushes -----------------------------------------------------------------------------------
    def offer(self, path: str, ref: F.FileRef, hashes: list[bytes], peers: list[PeerID]) -> FileTransfer:
        """Register the file and offer it to ``peers``."""
        self.register(path, ref, hashes)
        xid = secrets.token_hex(8)
        handle = FileTransfer(self, ref, "out", peers[0] if len(peers) == 1 else None, path, xid, len(peers))
        out = _Outgoing(handle, [p.id for p in peers])
        self._out[xid] = out
        payload = F.encode_offer(xid, ref)
        now = time.monotonic()
        for peer in peers:
            if peer.id in self.node.peers:
                self._send(peer.id, payload)
            else:  # it left while the file was hashed: offered when it is back
                out.state[peer.id] = "lost"
                out.lost_at[peer.id] = now
                out.lost_from[peer.id] = "offered"
        return handle

    def _out_for(self, peer: str, sha: str) -> _Outgoing | None:
        for out in self._out.values():
            if out.handle.ref.sha256 == sha and out.state.get(peer) in ("offered", "active", "lost"):
                return out
        return None

    def _settle_out(self, out: _Outgoing) -> None:
        states = out.state
        if any(s in ("offered", "active", "lost") for s in states.values()):
            return
        out.handle.results = dict(states)
        self._out.pop(out.handle.xid, None)
        failed = {p: s for p, s in states.items() if s != "done"}
        if not failed:
            out.handle._set("done", out.handle.total_bytes)
            return
        cls: type[TransferFailed] = TransferFailed
        if all(s.startswith("declined") for s in failed.values()):
            cls = TransferDeclined
        elif all(s.startswith("cancelled") for s in failed.values()):
            cls = TransferCancelled
        names = "; ".join(f"{self._name(p)}: {s}" for p, s in failed.items())
        state = "cancelled" if cls is TransferCancelled else "failed"
        out.handle._set(state, error=cls(f"{out.handle.ref.name!r} not delivered to {names}"))

    def _name(self, peer_id: str) -> str:
        peer = self.node.known.get(peer_id)
        return peer.display_name if peer is not None else peer_id[:8]

    # -- fetches ----------------------------------------------------------------------------------
    def fetch(
        self,
        ref: F.FileRef,
        folder: str,
        sources: list[str],
        *,
        xid: str = "",
        pinned: PeerID | None = None,
        handle: FileTransfer | None = None,
    ) -> FileTransfer:
        """Start getting ``ref``'s bytes into ``folder`` (raises TransferDeclined if no room)."""
        now = time.monotonic()
        if handle is None:
            local = self.local_path(ref.sha256)
            for inc in self._fetches:
                if inc.fetch.ref.sha256 == ref.sha256 and inc.folder == folder and not inc.fetch.pinned:
                    return inc.handle
            handle = FileTransfer(self, ref, "in", pinned, None, xid)
            if local is not None:
                handle.path = local
                handle._set("done", ref.size)
                return handle
        self._check_room(ref, folder)
        os.makedirs(folder, exist_ok=True)
        if folder not in self._swept:
            self._swept.add(folder)
            self._remove_stale_parts(folder)
        part = os.path.join(folder, f".mpstore-{ref.sha256[:16]}-{secrets.token_hex(4)}.part")
        f = open(part, "w+b")  # noqa: SIM115 (open for the whole transfer, closed in _finish_fetch)
        fetch = F.Fetch(
            ref,
            sources,
            now,
            window=self.limits.window,
            target_delay=self.limits.target_delay,
            stall_timeout=self.limits.stall_timeout,
            resume_timeout=self.limits.resume_timeout,
            xid=xid,
            pinned=pinned.id if pinned is not None else None,
        )
        inc = _Incoming(fetch, handle, folder, part, f)
        if pinned is not None:
            inc.push_from = pinned.id
        handle._set("active")
        self._fetches.append(inc)
        self._run(inc, fetch.start(now))
        return handle

    def _remove_stale_parts(self, folder: str) -> None:
        # A process killed mid-transfer cannot delete its partial file; the next one here does.
        age = max(_STALE_PART_MIN, 4 * max(self.limits.resume_timeout, self.limits.stall_timeout))
        cutoff = time.time() - age
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if not _PART_NAME.fullmatch(entry.name):
                continue
            try:
                stale = entry.stat(follow_symlinks=False).st_mtime < cutoff
                if stale and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    log.info("removed %s, a partial file left by an earlier run", entry.path)
            except OSError:
                pass

    def _check_room(self, ref: F.FileRef, folder: str) -> None:
        if ref.size > self.limits.max_file_size:
            raise TransferDeclined(f"{ref.size} bytes is over max_file_size ({self.limits.max_file_size})")
        probe = folder
        while not os.path.isdir(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        free = shutil.disk_usage(probe).free
        pending = sum(i.fetch.ref.size - i.fetch.bytes_done for i in self._fetches)
        if free - pending - ref.size < self.limits.min_free_disk:
            raise TransferDeclined(
                f"not enough disk space for {ref.size} bytes in {folder} "
                f"(keeping {self.limits.min_free_disk} bytes free)"
            )

    def _run(self, inc: _Incoming, actions: list[F.Send | F.Write]) -> None:
        if inc not in self._fetches:
            return
        try:
            for action in actions:
                if isinstance(action, F.Send):
                    self._send(action.peer, action.payload)
                else:
                    self._write(inc, action)
            if inc.fetch.failed is not None:
                self._finish_fetch(inc, TransferFailed(f"{inc.fetch.ref.name!r}: {inc.fetch.failed}"))
            elif inc.fetch.complete and not inc.fetch.verified_ok:
                self._verify(inc)
        except OSError as exc:  # disk full, folder removed, permissions: this transfer ends
            self._finish_fetch(inc, TransferFailed(f"{inc.fetch.ref.name!r}: cannot save it: {exc}"))

    def _write(self, inc: _Incoming, action: F.Write) -> None:
        f = inc.file
        f.seek(action.offset)
        f.write(action.data)
        ref = inc.fetch.ref
        index = action.offset // ref.chunk
        if index == inc.hashed:
            inc.hasher.update(action.data)
            inc.hashed += 1
            prefix = inc.fetch.have.prefix()
            while inc.hashed < prefix:  # chunks that arrived out of order, already on disk
                offset, length = F.chunk_span(inc.hashed, ref.size, ref.chunk)
                f.seek(offset)
                inc.hasher.update(f.read(length))
                inc.hashed += 1
        inc.handle._add(len(action.data))
        if inc.handle.peer is None and inc.fetch.source is not None:
            inc.handle.peer = self.node.known.get(inc.fetch.source)

    def _verify(self, inc: _Incoming) -> None:
        inc.file.flush()
        ok = inc.hashed == inc.fetch.ref.chunks and inc.hasher.hexdigest() == inc.fetch.ref.sha256
        inc.fetch.verified(ok)
        if not ok:
            self._finish_fetch(inc, TransferFailed(f"{inc.fetch.ref.name!r}: {inc.fetch.failed}"))
            return
        inc.file.close()
        final = self._place(inc)
        inc.handle.path = final
        self.register(final, inc.fetch.ref, list(inc.fetch.hashes or []), received=True)
        self._finish_fetch(inc, None)

    def _place(self, inc: _Incoming) -> str:
        base = F.sanitize_name(inc.fetch.ref.name)
        for n in range(10000):
            name = base if n == 0 else F.numbered(base, n)
            final = os.path.join(inc.folder, name)
            try:
                os.link(inc.part, final)
            except FileExistsError:
                continue
            except OSError:  # no hard links here: a check, then a rename
                if os.path.lexists(final):
                    continue
                os.replace(inc.part, final)
                return final
            os.unlink(inc.part)
            return final
        raise TransferFailed(f"no free name for {base!r} in {inc.folder}")

    def _finish_fetch(self, inc: _Incoming, error: TransferFailed | None) -> None:
        if inc not in self._fetches:
            return
        self._fetches.remove(inc)
        peer = inc.push_from
        if error is not None:
            inc.fetch.failed = inc.fetch.failed or str(error)
            try:
                inc.file.close()
                os.unlink(inc.part)
            except OSError:
                pass
            state = "cancelled" if isinstance(error, TransferCancelled) else "failed"
            inc.handle._set(state, error=error)
            if peer is not None:
                why = "cancelled" if isinstance(error, TransferCancelled) else str(error)
                self._send(peer, F.encode_json(F.Op.DONE, {"x": inc.handle.xid, "ok": False, "why": why}))
            return
        inc.handle._set("done", inc.fetch.ref.size)
        if peer is not None:
            self._send(peer, F.encode_json(F.Op.DONE, {"x": inc.handle.xid, "ok": True}))
        sender = self.node.known.get(peer) if peer is not None else inc.handle.peer
        if peer is not None:
            self.node.runtime.dispatch(_call_owner, self.node._owner, "file_received", inc.handle, sender)

    # -- cancel -----------------------------------------------------------------------------------
    def cancel(self, handle: FileTransfer) -> None:
        """The user cancelled (core thread)."""
        if handle.done:
            return
        if handle.direction == "out":
            out = self._out.get(handle.xid)
            if out is None:
                return
            for peer, state in out.state.items():
                if state in ("offered", "active", "lost"):
                    out.state[peer] = "cancelled by us"
                    self._send(peer, F.encode_json(F.Op.CANCEL, {"x": handle.xid, "s": handle.sha256}))
                    self._drop_queue(peer, handle.sha256)
            self._settle_out(out)
            return
        for key, offered in list(self._offers.items()):
            if offered is handle:
                del self._offers[key]
                handle._set("cancelled", error=TransferCancelled(f"{handle.ref.name!r}: cancelled"))
                self._send(key[0], F.encode_json(F.Op.DECLINE, {"x": key[1], "why": "cancelled"}))
                return
        for inc in self._fetches:
            if inc.handle is handle:
                if inc.fetch.source is not None and inc.push_from is None:
                    self._send(inc.fetch.source, F.encode_json(F.Op.CANCEL, {"x": "", "s": handle.sha256}))
                self._finish_fetch(inc, TransferCancelled(f"{handle.ref.name!r}: cancelled"))
                return

    # -- events from the node ---------------------------------------------------------------------
    def peer_added(self, peer: PeerID) -> None:
        """A peer connected: fetches waiting for a source may use it; pushes to it resume."""
        now = time.monotonic()
        for inc in list(self._fetches):
            self._run(inc, inc.fetch.peer_up(peer.id, now))
        for out in self._out.values():
            if out.state.get(peer.id) == "lost":
                out.lost_at.pop(peer.id, None)
                if out.lost_from.pop(peer.id, "active") == "offered":
                    # It never started pulling (it may not even have seen the offer): offer again.
                    out.state[peer.id] = "offered"
                    self._send(peer.id, F.encode_offer(out.handle.xid, out.handle.ref))
                else:  # it keeps its partial file and asks for the missing chunks itself
                    out.state[peer.id] = "active"

    def peer_removed(self, peer: PeerID) -> None:
        """A peer left: its queue goes, fetches switch source or wait, pushes to it wait."""
        now = time.monotonic()
        self._queues.pop(peer.id, None)
        self._queued.pop(peer.id, None)
        for key in [k for k in self._offers if k[0] == peer.id]:
            handle = self._offers.pop(key)
            handle._set("failed", error=TransferFailed(f"{handle.ref.name!r}: {peer.display_name} left"))
        for inc in list(self._fetches):
            self._run(inc, inc.fetch.peer_down(peer.id, now))
        for out in self._out.values():
            if out.state.get(peer.id) in ("offered", "active"):
                out.lost_from[peer.id] = out.state[peer.id]
                out.state[peer.id] = "lost"
                out.lost_at[peer.id] = now

    def writable(self, peer_id: str) -> None:
        """The link to ``peer_id`` drained: serve more."""
        if self._queues.get(peer_id):
            self._schedule(peer_id)

    #: How often timers are checked while a fetch or a lost peer is pending.
    TICK = 0.25

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`tick` next has something to check, or None when nothing is pending."""
        if self._fetches or any(out.lost_at for out in self._out.values()):
            return now + self.TICK
        return None

    def tick(self, now: float) -> None:
        """Timers: stalled fetches, peers that did not come back."""
        for inc in list(self._fetches):
            self._run(inc, inc.fetch.timer(now))
        for out in list(self._out.values()):
            for peer, at in list(out.lost_at.items()):
                if now - at > self.limits.resume_timeout and out.state.get(peer) == "lost":
                    out.state[peer] = f"lost for {self.limits.resume_timeout:g} s"
                    del out.lost_at[peer]
            self._settle_out(out)

    def close(self) -> None:
        """The node is shutting down: fail what is in flight, close files."""
        self._closed = True
        for inc in list(self._fetches):
            self._finish_fetch(inc, TransferFailed(f"{inc.fetch.ref.name!r}: the node was closed"))
        for handle in self._offers.values():
            handle._set("failed", error=TransferFailed("the node was closed"))
        self._offers.clear()
        for out in list(self._out.values()):
            for peer, state in out.state.items():
                if state in ("offered", "active", "lost"):
                    out.state[peer] = "the node was closed"
            self._settle_out(out)
        for f in self._open.values():
            f.close()
        self._open.clear()

    def message(self, peer: PeerID, payload: bytes) -> None:
        """One ``Kind.FILE`` message from ``peer``."""
        try:
            msg = F.decode(payload)
        except MpstoreError as exc:
            log.warning("dropping a file message from %r: %s", peer, exc)
            return
        op, now = msg.op, time.monotonic()
        if op == F.Op.DATA:
            for inc in list(self._fetches):
                if inc.fetch.ref.sha256 == msg.sha and inc.fetch.source == peer.id:
                    self._run(inc, inc.fetch.data(peer.id, msg.indices[0], msg.data, now))
                    break
        elif op == F.Op.WANT:
            self._want(peer.id, msg.sha, msg.indices)
        elif op == F.Op.GET:
            self._get(peer.id, msg.sha, msg.body.get("x", ""))
        elif op == F.Op.MANIFEST:
            for inc in list(self._fetches):
                if inc.fetch.ref.sha256 == msg.sha:
                    self._run(inc, inc.fetch.manifest(peer.id, msg.hashes, now))
        elif op == F.Op.MISSING:
            for inc in list(self._fetches):
                if inc.fetch.ref.sha256 == msg.sha:
                    self._run(inc, inc.fetch.missing(peer.id, now))
        elif op == F.Op.OFFER:
            self._on_offer(peer, msg.body)
        elif op == F.Op.DECLINE:
            out = self._out.get(msg.body.get("x", ""))
            if out is not None and out.state.get(peer.id) in ("offered", "active", "lost"):
                why = str(msg.body.get("why", ""))[:200]
                out.state[peer.id] = "declined" if why in ("", "declined") else f"declined: {why}"
                self._settle_out(out)
        elif op == F.Op.DONE:
            out = self._out.get(msg.body.get("x", ""))
            if out is not None and out.state.get(peer.id) in ("offered", "active", "lost"):
                why = str(msg.body.get("why", ""))[:200]
                if msg.body.get("ok") is True:
                    out.state[peer.id] = "done"
                elif why == "cancelled":
                    out.state[peer.id] = "cancelled by the receiver"
                else:
                    out.state[peer.id] = f"failed: {why}"
                self._drop_queue(peer.id, out.handle.sha256)
                self._settle_out(out)
        elif op == F.Op.CANCEL:
            self._on_cancel(peer, msg.body.get("x", ""), msg.sha)

    def _on_cancel(self, peer: PeerID, xid: str, sha: str) -> None:
        if sha:
            self._drop_queue(peer.id, sha)
        offered = self._offers.pop((peer.id, xid), None)
        if offered is not None:
            offered._set("cancelled", error=TransferCancelled(f"{offered.ref.name!r}: the sender cancelled"))
        for inc in list(self._fetches):
            if xid and inc.push_from == peer.id and inc.handle.xid == xid:
                self._finish_fetch(inc, TransferCancelled(f"{inc.fetch.ref.name!r}: the sender cancelled"))
        out = self._out.get(xid)
        if out is not None and out.state.get(peer.id) in ("offered", "active", "lost"):
            out.state[peer.id] = "cancelled by the receiver"
            self._settle_out(out)

    # -- the receiving side of a push -------------------------------------------------------------
    def _on_offer(self, peer: PeerID, body: dict[str, Any]) -> None:
        xid = body.get("x", "")
        if not xid or (peer.id, xid) in self._offers:
            return
        if any(i.push_from == peer.id and i.handle.xid == xid for i in self._fetches):
            return  # offered again after a lost link, but we are already resuming it
        try:
            ref = F.FileRef.from_value(body.get("ref"), max_size=self.limits.max_file_size)
        except ValueError as exc:
            self._send(peer.id, F.encode_json(F.Op.DECLINE, {"x": xid, "why": str(exc)[:200]}))
            return
        busy = sum(1 for k in self._offers if k[0] == peer.id)
        busy += sum(1 for i in self._fetches if i.push_from == peer.id)
        if busy >= self.limits.max_transfers_per_peer:
            self._send(peer.id, F.encode_json(F.Op.DECLINE, {"x": xid, "why": "busy"}))
            return
        handle = FileTransfer(self, ref, "in", peer, None, xid)
        self._offers[(peer.id, xid)] = handle
        self.node.runtime.dispatch(_ask_accept, self.node._owner, self.node.runtime, self, handle, peer)

    def decide(self, handle: FileTransfer, peer: PeerID, answer: object) -> None:
        """accept_file answered (posted from the dispatcher)."""
        if self._offers.pop((peer.id, handle.xid), None) is None or self._closed:
            return
        folder: str | None = None
        if answer is True:
            folder = self.folder
            if folder is None:
                log.warning("accept_file returned True but no file_dir is set: declining %r", handle)
        elif isinstance(answer, (str, os.PathLike)):
            folder = os.fspath(answer)
        if folder is None:
            handle._set("failed", error=TransferDeclined(f"{handle.ref.name!r}: declined"))
            self._send(peer.id, F.encode_json(F.Op.DECLINE, {"x": handle.xid, "why": "declined"}))
            return
        if peer.id not in self.node.peers:
            handle._set("failed", error=TransferFailed(f"{handle.ref.name!r}: {peer.display_name} left"))
            return
        try:
            self.fetch(handle.ref, folder, [peer.id], xid=handle.xid, pinned=peer, handle=handle)
        except (OSError, TransferFailed) as exc:
            why = str(exc)[:200]
            err = exc if isinstance(exc, TransferFailed) else TransferFailed(why)
            handle._set("failed", error=err)
            self._send(peer.id, F.encode_json(F.Op.DECLINE, {"x": handle.xid, "why": why}))

    # -- serving ----------------------------------------------------------------------------------
    def _get(self, peer: str, sha: str, xid: str) -> None:
        if peer in self.node.blocked:
            return  # its link is full: a manifest can be large (the asker asks again after a stall)
        blob = self._blobs.get(sha) if self.local_path(sha) is not None else None
        if blob is None:
            self._send(peer, F.encode_missing(sha))
            return
        out = self._out.get(xid) if xid else None
        if out is not None and out.state.get(peer) in ("offered", "lost"):
            out.state[peer] = "active"
            out.handle._set("active")
        self._send(peer, F.encode_manifest(sha, blob.hashes))

    def _want(self, peer: str, sha: str, indices: tuple[int, ...]) -> None:
        blob = self._blobs.get(sha)
        if blob is None:
            self._send(peer, F.encode_missing(sha))
            return
        queue = self._queues.setdefault(peer, deque())
        queued = self._queued.setdefault(peer, set())
        bound = F.MAX_WANT * self.limits.max_transfers_per_peer
        for index in indices:
            if 0 <= index < blob.ref.chunks and (sha, index) not in queued and len(queue) < bound:
                queue.append((sha, index))
                queued.add((sha, index))
        self._schedule(peer)

    def _drop_queue(self, peer: str, sha: str) -> None:
        queue = self._queues.get(peer)
        if queue:
            kept = deque(item for item in queue if item[0] != sha)
            self._queues[peer] = kept
            self._queued[peer] = set(kept)

    def _schedule(self, peer: str) -> None:
        if peer not in self._scheduled and not self._closed:
            self._scheduled.add(peer)
            self.node.runtime.loop.call_soon(self._serve, peer)

    def _serve(self, peer: str) -> None:
        self._scheduled.discard(peer)
        queue = self._queues.get(peer)
        for _ in range(_BURST):
            if not queue or peer in self.node.blocked or peer not in self.node.peers or self._closed:
                return
            sha, index = queue.popleft()
            self._queued[peer].discard((sha, index))
            self._send_chunk(peer, sha, index)
        if queue and peer not in self.node.blocked:
            self._schedule(peer)

    def _send_chunk(self, peer: str, sha: str, index: int) -> None:
        blob = self._blobs.get(sha)
        if blob is None:
            return
        ref = blob.ref
        offset, length = F.chunk_span(index, ref.size, ref.chunk)
        try:
            f = self._open.get(sha)
            if f is None:
                if len(self._open) >= 16:
                    self._open.pop(next(iter(self._open))).close()
                f = self._open[sha] = open(blob.path, "rb")  # noqa: SIM115 (cached, closed in close())
            st = os.fstat(f.fileno())
            f.seek(offset)
            data = f.read(length)
        except OSError as exc:
            log.warning("cannot read %s: %s", blob.path, exc)
            data, st = b"", None
        # The receiver checks every chunk against its hash; here a cheaper check that the file
        # was not changed since it was hashed (size and modification time).
        if st is None or len(data) != length or (st.st_size, st.st_mtime_ns) != (blob.size, blob.mtime_ns):
            log.warning("%s changed since it was shared; no longer serving it", blob.path)
            self._blobs.pop(sha, None)
            old = self._open.pop(sha, None)
            if old is not None:
                old.close()
            self._send(peer, F.encode_missing(sha))
            return
        header = F.encode_data_header(bytes.fromhex(sha), index)
        self._send(peer, header + data)
        out = self._out_for(peer, sha)
        if out is not None:
            out.handle._add(length)

    def _send(self, peer_id: str, payload: bytes) -> None:
        found = self.node.peers.get(peer_id)
        if found is not None:
            self.node.send_to_peer(found[0], Kind.FILE, payload)


# Dispatcher-thread helpers (the owner is held weakly, as in _core).


def _call_owner(owner_ref: Callable[[], Any], method: str, *args: Any) -> None:
    owner = owner_ref()
    if owner is not None:
        getattr(owner, method)(*args)


def _ask_accept(
    owner_ref: Callable[[], Any], runtime: Any, manager: FileManager, handle: FileTransfer, peer: PeerID
) -> None:
    owner = owner_ref()
    answer: object = False
    if owner is not None:
        try:
            answer = owner.accept_file(handle, peer)
        except Exception:
            log.exception("accept_file raised; declining %r", handle)
            answer = False
    if not runtime.closed:
        try:
            runtime.post(manager.decide, handle, peer, answer)
        except Exception:
            pass
