"""Sans-IO file transfer: tokens, chunk manifests, range bookkeeping, the fetch state machine.

A file is named by its token (:class:`FileRef`): the SHA-256 of its bytes, its size, a name, a
media type, the chunk size and ``root``, the SHA-256 over the concatenated SHA-256 of every chunk.
Transfers are *pulled* by the receiver, which makes resume and repair the same thing as the first
fetch: ask a peer that has the bytes (``GET``), receive the chunk hashes (``MANIFEST``, checked
against ``root``), then ask for missing chunks a window at a time (``WANT``); each ``DATA`` chunk is
checked against its hash before it is written, a bad one is asked for again, and the whole-file
SHA-256 is checked before the file is shown to anyone. A push (``send_file``) is an ``OFFER`` that
the receiver answers by pulling, then ``DONE`` (or ``DECLINE`` / ``CANCEL``).

Nothing here touches a socket, a file or a clock: bytes and ``now`` come in, messages and
decisions go out. The core-thread glue with the disk lives in ``_filenode.py``.

Wire format (payload of a ``Kind.FILE`` message)::

    op (1 byte) | body
    OFFER    1  JSON {"x": transfer id, "ref": token}
    DECLINE  2  JSON {"x", "why"}
    GET      3  JSON {"s": sha256 hex, "x": transfer id or ""}
    MANIFEST 4  sha256 (32) | chunk hashes (32 each)
    MISSING  5  sha256 (32)
    WANT     6  sha256 (32) | chunk indices (u32 big-endian each, at most MAX_WANT)
    DATA     7  sha256 (32) | chunk index (u32) | bytes
    CANCEL   8  JSON {"s", "x", "why"}
    DONE     9  JSON {"x", "ok", "why"}
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ._errors import ProtocolError

__all__ = [
    "CHUNK_SIZE",
    "Fetch",
    "FileRef",
    "ManifestBuilder",
    "Op",
    "Ranges",
    "chunk_count",
    "chunk_span",
    "decode",
    "sanitize_name",
]

#: Bytes per chunk: one hash and one DATA message each. 128 bytes under 256 KiB, so that a chunk
#: with its headers (session 2, DATA 37, a sealed frame's 26) fits one LAN frame: the receiver
#: then never joins fragments (a copy of every byte).
CHUNK_SIZE: Final = 256 * 1024 - 128
MIN_CHUNK: Final = 16 * 1024
MAX_CHUNK: Final = 1024 * 1024
#: Chunk indices in one WANT, and chunks a peer may have asked us for and not yet received.
MAX_WANT: Final = 64
MIN_WINDOW: Final = 2
MAX_NAME_BYTES: Final = 200
TOKEN_TAG: Final = "mpstore-file"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_U32 = struct.Struct(">I")


class Op:
    """Message types inside ``Kind.FILE``."""

    OFFER = 1
    DECLINE = 2
    GET = 3
    MANIFEST = 4
    MISSING = 5
    WANT = 6
    DATA = 7
    CANCEL = 8
    DONE = 9


def chunk_count(size: int, chunk: int) -> int:
    """How many chunks a file of ``size`` bytes has (an empty file has none)."""
    return (size + chunk - 1) // chunk


def chunk_span(index: int, size: int, chunk: int) -> tuple[int, int]:
    """(offset, length) of chunk ``index``."""
    offset = index * chunk
    return offset, min(chunk, size - offset)


@dataclass(frozen=True)
class FileRef:
    """The token of a file: what a store holds instead of the bytes (see :meth:`to_value`)."""

    sha256: str
    size: int
    name: str
    type: str
    root: str
    chunk: int = CHUNK_SIZE

    def to_value(self) -> dict[str, Any]:
        """The token as a plain JSON-able dict, ready to put into a shared_dict."""
        return {
            TOKEN_TAG: 1,
            "sha256": self.sha256,
            "size": self.size,
            "name": self.name,
            "type": self.type,
            "root": self.root,
            "chunk": self.chunk,
        }

    @classmethod
    def from_value(cls, value: object, *, max_size: int | None = None) -> FileRef:
        """Parse and validate a token (a dict from :meth:`to_value`, or a FileRef)."""
        if isinstance(value, FileRef):
            value = value.to_value()
        if not isinstance(value, Mapping) or value.get(TOKEN_TAG) != 1:
            raise ValueError("not an mpstore file token")
        sha, root = value.get("sha256"), value.get("root")
        size, chunk = value.get("size"), value.get("chunk", CHUNK_SIZE)
        name, kind = value.get("name", ""), value.get("type", "")
        if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
            raise ValueError("file token: sha256 must be 64 lowercase hex digits")
        if not isinstance(root, str) or not _HEX64.fullmatch(root):
            raise ValueError("file token: root must be 64 lowercase hex digits")
        if type(size) is not int or size < 0:
            raise ValueError("file token: size must be an int >= 0")
        if max_size is not None and size > max_size:
            raise ValueError(f"file token: {size} bytes is over the limit of {max_size}")
        if type(chunk) is not int or not MIN_CHUNK <= chunk <= MAX_CHUNK:
            raise ValueError(f"file token: chunk must be an int in {MIN_CHUNK}..{MAX_CHUNK}")
        if not isinstance(name, str) or len(name) > 1024:
            raise ValueError("file token: name must be a str of at most 1024 characters")
        if not isinstance(kind, str) or len(kind) > 255:
            raise ValueError("file token: type must be a str of at most 255 characters")
        return cls(sha, size, name, kind, root, chunk)

    @property
    def chunks(self) -> int:
        """The number of chunks."""
        return chunk_count(self.size, self.chunk)


class ManifestBuilder:
    """Hash a file fed in order: the whole-file SHA-256 and every chunk's SHA-256."""

    def __init__(self, chunk: int = CHUNK_SIZE) -> None:
        self.chunk = chunk
        self.size = 0
        self._whole = hashlib.sha256()
        self._part = hashlib.sha256()
        self._part_len = 0
        self.hashes: list[bytes] = []

    def feed(self, data: bytes | memoryview) -> None:
        """Take the next bytes of the file."""
        view = memoryview(data)
        self._whole.update(view)
        self.size += len(view)
        while len(view):
            take = min(len(view), self.chunk - self._part_len)
            self._part.update(view[:take])
            self._part_len += take
            view = view[take:]
            if self._part_len == self.chunk:
                self.hashes.append(self._part.digest())
                self._part, self._part_len = hashlib.sha256(), 0

    def finish(self, name: str, media_type: str) -> FileRef:
        """The token; ``hashes`` then holds every chunk's hash."""
        if self._part_len:
            self.hashes.append(self._part.digest())
            self._part_len = 0
        root = hashlib.sha256(b"".join(self.hashes)).hexdigest()
        return FileRef(self._whole.hexdigest(), self.size, name, media_type, root, self.chunk)


class Ranges:
    """Which chunks of ``count`` are present, as sorted half-open intervals."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._spans: list[list[int]] = []
        self.present = 0

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int):
            return False
        for start, end in self._spans:
            if start <= index < end:
                return True
            if index < start:
                return False
        return False

    def add(self, index: int) -> bool:
        """Mark chunk ``index`` present; False if it already was."""
        if not 0 <= index < self.count or index in self:
            return False
        spans = self._spans
        i = 0
        while i < len(spans) and spans[i][1] < index:
            i += 1
        if i < len(spans) and spans[i][1] == index:
            spans[i][1] += 1
            if i + 1 < len(spans) and spans[i + 1][0] == index + 1:
                spans[i][1] = spans[i + 1][1]
                del spans[i + 1]
        elif i < len(spans) and spans[i][0] == index + 1:
            spans[i][0] = index
        else:
            spans.insert(i, [index, index + 1])
        self.present += 1
        return True

    @property
    def complete(self) -> bool:
        """True when every chunk is present."""
        return self.present == self.count

    def missing(self) -> Iterator[int]:
        """The absent chunk indices, in order."""
        at = 0
        for start, end in self._spans:
            yield from range(at, start)
            at = end
        yield from range(at, self.count)

    def prefix(self) -> int:
        """How many chunks from the start are present without a gap."""
        return self._spans[0][1] if self._spans and self._spans[0][0] == 0 else 0

    def spans(self) -> list[tuple[int, int]]:
        """The present intervals as (start, end) pairs."""
        return [(s, e) for s, e in self._spans]


# -- names -----------------------------------------------------------------------------------------

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\/]')


def sanitize_name(name: str, fallback: str = "file") -> str:
    """A file name that is safe to create in a folder: no path, no control or reserved name.

    ``../../etc/passwd`` becomes ``passwd``; the result is never empty, never ``.``/``..``,
    never hidden (no leading dot), and at most MAX_NAME_BYTES UTF-8 bytes with its extension kept.
    """
    if not isinstance(name, str):
        name = ""
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    name = name.strip().lstrip(".").rstrip(". ")
    if not name:
        name = fallback
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.upper() in _WINDOWS_RESERVED:
        stem = "_" + stem
    ext = ext[:32]
    suffix = "." + ext if dot else ""
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    while len(stem.encode("utf-8")) > budget:
        stem = stem[:-1]
    return (stem or fallback) + suffix


def numbered(name: str, n: int) -> str:
    """``name`` with `` (n)`` before its extension, for a name already taken."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return f"{name} ({n})"
    return f"{stem} ({n}).{ext}"


# -- codec -----------------------------------------------------------------------------------------


def encode_json(op: int, body: Mapping[str, Any]) -> bytes:
    """A control message."""
    return bytes((op,)) + json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_offer(xid: str, ref: FileRef) -> bytes:
    """OFFER: a push of ``ref`` under transfer id ``xid``."""
    return encode_json(Op.OFFER, {"x": xid, "ref": ref.to_value()})


def encode_manifest(sha: str, hashes: list[bytes]) -> bytes:
    """MANIFEST: every chunk's hash."""
    return bytes((Op.MANIFEST,)) + bytes.fromhex(sha) + b"".join(hashes)


def encode_missing(sha: str) -> bytes:
    """MISSING: we do not hold that file."""
    return bytes((Op.MISSING,)) + bytes.fromhex(sha)


def encode_want(sha: str, indices: Iterable[int]) -> bytes:
    """WANT: send these chunks."""
    body = b"".join(_U32.pack(i) for i in indices)
    return bytes((Op.WANT,)) + bytes.fromhex(sha) + body


def encode_data_header(sha_raw: bytes, index: int) -> bytes:
    """The bytes of a DATA message before the chunk."""
    return bytes((Op.DATA,)) + sha_raw + _U32.pack(index)


@dataclass(frozen=True)
class Msg:
    """One decoded message."""

    op: int
    sha: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    indices: tuple[int, ...] = ()
    hashes: tuple[bytes, ...] = ()
    data: bytes | memoryview = b""


def decode(payload: bytes) -> Msg:
    """Parse one ``Kind.FILE`` payload; ProtocolError if malformed."""
    if not payload:
        raise ProtocolError("empty file message")
    op = payload[0]
    if op in (Op.OFFER, Op.DECLINE, Op.GET, Op.CANCEL, Op.DONE):
        if len(payload) > 8192:
            raise ProtocolError("file control message over 8192 bytes")
        try:
            body = json.loads(payload[1:].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ProtocolError("file control message is not JSON") from None
        if not isinstance(body, dict):
            raise ProtocolError("file control message is not a JSON object")
        xid = body.get("x", "")
        if not isinstance(xid, str) or len(xid) > 64:
            raise ProtocolError("bad transfer id")
        sha = body.get("s", "")
        if not isinstance(sha, str) or (sha and not _HEX64.fullmatch(sha)):
            raise ProtocolError("bad sha256")
        return Msg(op, sha, body)
    if len(payload) < 33:
        raise ProtocolError("file message too short")
    sha = payload[1:33].hex()
    if op == Op.DATA:  # the hot path: no copy of the chunk (payload is immutable bytes)
        if len(payload) < 37:
            raise ProtocolError("data message too short")
        return Msg(op, sha, indices=(_U32.unpack_from(payload, 33)[0],), data=memoryview(payload)[37:])
    rest = payload[33:]
    if op == Op.MANIFEST:
        if len(rest) % 32:
            raise ProtocolError("manifest is not a whole number of hashes")
        return Msg(op, sha, hashes=tuple(rest[i : i + 32] for i in range(0, len(rest), 32)))
    if op == Op.MISSING:
        return Msg(op, sha)
    if op == Op.WANT:
        if len(rest) % 4 or len(rest) // 4 > MAX_WANT:
            raise ProtocolError("bad chunk list")
        return Msg(op, sha, indices=tuple(_U32.unpack_from(rest, i)[0] for i in range(0, len(rest), 4)))
    raise ProtocolError(f"unknown file message {op}")


# -- the receiving side ----------------------------------------------------------------------------


@dataclass
class Send:
    """Send ``payload`` to ``peer``."""

    peer: str
    payload: bytes


@dataclass
class Write:
    """Write a verified chunk at ``offset`` of the partial file."""

    offset: int
    data: bytes | memoryview


class Fetch:
    """Getting one file's bytes from whichever peers have them, a window of chunks at a time.

    Feed it ``start``/``peer_up``/``peer_down``/``manifest``/``missing``/``data``/``timer``; it
    returns ``Send`` and ``Write`` actions. ``failed`` is a reason once it gave up; ``complete``
    once every chunk is written and verified against its hash (the caller then checks the
    whole-file SHA-256 and reports ``verified(ok)``).
    """

    def __init__(
        self,
        ref: FileRef,
        sources: Iterable[str],
        now: float,
        *,
        window: int = 32,
        retries: int = 3,
        target_delay: float = 0.02,
        stall_timeout: float = 30.0,
        resume_timeout: float = 60.0,
        xid: str = "",
        pinned: str | None = None,
    ) -> None:
        self.ref = ref
        self.xid = xid
        self.window = max(MIN_WINDOW, min(window, MAX_WANT))
        self.target_delay = target_delay
        self._cwnd = float(min(4, self.window))
        self._base_rtt = float("inf")
        self._epoch_rtt = float("inf")
        self._epoch_samples = 0
        self.retries = retries
        self.stall_timeout = stall_timeout
        self.resume_timeout = resume_timeout
        self.pinned = pinned
        self.hashes: list[bytes] | None = [] if ref.size == 0 else None
        self.have = Ranges(ref.chunks)
        self.source: str | None = None
        self.failed: str | None = None
        self.verified_ok = False
        self._candidates: list[str] = []
        self._connected: set[str] = set()
        self._tried: set[str] = set()
        self._inflight: dict[int, float] = {}
        self._bad: dict[int, int] = {}
        self._last_progress = now
        self._waiting_since: float | None = now
        self.bytes_done = 0
        for peer in sources:
            self._offer_source(peer)
            self._connected.add(peer)

    @property
    def complete(self) -> bool:
        """Every chunk present and individually verified."""
        return self.hashes is not None and self.have.complete

    @property
    def active(self) -> bool:
        """Still fetching (not complete, not failed)."""
        return self.failed is None and not self.complete

    def _offer_source(self, peer: str) -> None:
        if self.pinned is not None and peer != self.pinned:
            return
        if peer not in self._candidates:
            self._candidates.append(peer)

    def start(self, now: float) -> list[Send | Write]:
        """Ask the first candidate peer."""
        return self._next_source(now)

    def _next_source(self, now: float) -> list[Send | Write]:
        self.source = None
        self._inflight.clear()
        self._base_rtt = self._epoch_rtt = float("inf")
        self._epoch_samples = 0
        for peer in self._candidates:
            if peer in self._connected and peer not in self._tried:
                self._tried.add(peer)
                self.source = peer
                self._waiting_since = None
                self._last_progress = now
                if self.hashes is not None:
                    return self._request(now)
                return [Send(peer, encode_json(Op.GET, {"s": self.ref.sha256, "x": self.xid}))]
        if self._waiting_since is None:
            self._waiting_since = now
        return []

    def peer_up(self, peer: str, now: float) -> list[Send | Write]:
        """A peer connected (again): it may have the bytes."""
        if not self.active:
            return []
        self._offer_source(peer)
        self._connected.add(peer)
        self._tried.discard(peer)
        if self.source is None:
            return self._next_source(now)
        return []

    def peer_down(self, peer: str, now: float) -> list[Send | Write]:
        """A peer left; switch to another source if it was ours."""
        self._connected.discard(peer)
        self._tried.discard(peer)
        if self.source == peer and self.active:
            return self._next_source(now)
        return []

    def missing(self, peer: str, now: float) -> list[Send | Write]:
        """The peer does not hold the file."""
        if peer != self.source or not self.active:
            return []
        if self.pinned is not None:
            self.failed = "the sender no longer has the file"
            return []
        return self._next_source(now)

    def manifest(self, peer: str, hashes: tuple[bytes, ...], now: float) -> list[Send | Write]:
        """The chunk hashes arrived: check them against the token's root."""
        if peer != self.source or not self.active or self.hashes is not None:
            return []
        if len(hashes) != self.ref.chunks or hashlib.sha256(b"".join(hashes)).hexdigest() != self.ref.root:
            return self._drop_source(peer, now)
        self.hashes = list(hashes)
        self._last_progress = now
        return self._request(now)

    def data(self, peer: str, index: int, chunk: bytes | memoryview, now: float) -> list[Send | Write]:
        """A chunk arrived: write it if its hash matches, ask again if not."""
        if peer != self.source or not self.active or self.hashes is None:
            return []
        asked_at = self._inflight.pop(index, None)
        if asked_at is None:
            return []  # not asked for (or asked again after a stall): ignore
        self._pace(now - asked_at)
        offset, length = chunk_span(index, self.ref.size, self.ref.chunk)
        actions: list[Send | Write] = []
        if len(chunk) != length or hashlib.sha256(chunk).digest() != self.hashes[index]:
            bad = self._bad[index] = self._bad.get(index, 0) + 1
            if bad > self.retries:
                return self._drop_source(peer, now)
        else:
            self._bad.pop(index, None)
            if self.have.add(index):
                self.bytes_done += length
                actions.append(Write(offset, chunk))
        self._last_progress = now
        actions.extend(self._request(now))
        return actions

    def _pace(self, rtt: float) -> None:
        # LEDBAT-style: grow the window while the round trip stays within target_delay of the
        # smallest one seen (nothing queued), shrink it as the queue grows. Chunks queued at the
        # sender delay every message sent behind them; this keeps that queue short.
        self._epoch_rtt = min(self._epoch_rtt, rtt)
        self._epoch_samples += 1
        if self._epoch_samples >= 256:  # forget old minima slowly (routes and load change)
            self._base_rtt, self._epoch_rtt, self._epoch_samples = self._epoch_rtt, float("inf"), 0
        base = min(self._base_rtt, self._epoch_rtt)
        off_target = (self.target_delay - (rtt - base)) / self.target_delay
        self._cwnd += max(-1.0, min(1.0, off_target)) / self._cwnd
        self._cwnd = max(float(MIN_WINDOW), min(float(self.window), self._cwnd))

    @property
    def cwnd(self) -> int:
        """Chunks asked for at once now (between MIN_WINDOW and window)."""
        return int(self._cwnd)

    def _drop_source(self, peer: str, now: float) -> list[Send | Write]:
        if self.pinned is not None:
            self.failed = "the sender sent bytes that do not match the file's hashes"
            return []
        if peer in self._candidates:
            self._candidates.remove(peer)
        return self._next_source(now)

    def _request(self, now: float) -> list[Send | Write]:
        if self.source is None or self.hashes is None:
            return []
        window = int(self._cwnd)
        room = window - len(self._inflight)
        # Ask in batches of half a window: fewer small messages (each is a syscall and a TCP
        # segment on both ends), and the other half keeps the link busy meanwhile.
        if room <= 0 or (self._inflight and room < window // 2):
            return []
        wanted = []
        for index in self.have.missing():
            if index not in self._inflight:
                wanted.append(index)
                self._inflight[index] = now
                if len(wanted) == room:
                    break
        if not wanted:
            return []
        return [Send(self.source, encode_want(self.ref.sha256, wanted))]

    def timer(self, now: float) -> list[Send | Write]:
        """Re-ask a silent source; give up when no source was found for resume_timeout."""
        if not self.active:
            return []
        if self.source is None:
            if self._waiting_since is not None and now - self._waiting_since > self.resume_timeout:
                self.failed = f"no peer with the file for {self.resume_timeout:g} s"
            return []
        if now - self._last_progress > self.stall_timeout:
            peer = self.source
            self._tried.discard(peer)
            self._inflight.clear()
            self._last_progress = now
            if self.hashes is None:
                return [Send(peer, encode_json(Op.GET, {"s": self.ref.sha256, "x": self.xid}))]
            return self._request(now)
        return []

    def verified(self, ok: bool) -> None:
        """The caller checked the whole-file SHA-256 of the written chunks."""
        if ok:
            self.verified_ok = True
        else:
            self.failed = "the file's SHA-256 does not match its token"

    def next_deadline(self) -> float | None:
        """When timer() next has something to do."""
        if not self.active:
            return None
        if self.source is None:
            return None if self._waiting_since is None else self._waiting_since + self.resume_timeout
        return self._last_progress + self.stall_timeout
