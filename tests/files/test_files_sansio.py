"""The sans-IO file layer: tokens, ranges, names, codec and the fetch state machine."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpstore import ProtocolError
from mpstore import _files as F


def _file(size: int, chunk: int = F.MIN_CHUNK) -> tuple[bytes, F.FileRef, list[bytes]]:
    data = os.urandom(size)
    builder = F.ManifestBuilder(chunk)
    for i in range(0, size, 1000):  # fed in pieces that do not line up with chunks
        builder.feed(data[i : i + 1000])
    ref = builder.finish("a.bin", "application/octet-stream")
    return data, ref, builder.hashes


def test_manifest_matches_the_bytes() -> None:
    data, ref, hashes = _file(3 * F.MIN_CHUNK + 5)
    assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size == len(data)
    step = F.MIN_CHUNK
    assert hashes == [hashlib.sha256(data[i : i + step]).digest() for i in range(0, len(data), step)]
    assert ref.root == hashlib.sha256(b"".join(hashes)).hexdigest()
    assert F.FileRef.from_value(ref.to_value()) == ref


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"sha256": "x"}, "sha256"),
        ({"size": -1}, "size"),
        ({"size": True}, "size"),
        ({"chunk": 1}, "chunk"),
        ({"root": None}, "root"),
        ({"mpstore-file": 2}, "not an mpstore file token"),
    ],
)
def test_bad_tokens_are_refused(change: dict[str, object], match: str) -> None:
    _, ref, _ = _file(10)
    with pytest.raises(ValueError, match=match):
        F.FileRef.from_value({**ref.to_value(), **change})


def test_a_token_over_the_size_limit_is_refused() -> None:
    _, ref, _ = _file(100)
    with pytest.raises(ValueError, match="over the limit"):
        F.FileRef.from_value(ref.to_value(), max_size=99)


@given(st.integers(0, 60), st.lists(st.integers(0, 70), max_size=120))
def test_ranges_agree_with_a_set(count: int, adds: list[int]) -> None:
    ranges, model = F.Ranges(count), set()
    for index in adds:
        assert ranges.add(index) == (0 <= index < count and index not in model)
        if 0 <= index < count:
            model.add(index)
        assert list(ranges.missing()) == [i for i in range(count) if i not in model]
        assert ranges.present == len(model) and ranges.complete == (len(model) == count)
        prefix = 0
        while prefix in model:
            prefix += 1
        assert ranges.prefix() == prefix
        spans = ranges.spans()
        assert all(a < b for a, b in spans)
        assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("..", "file"),
        (".bashrc", "bashrc"),
        ("C:\\Windows\\system32\\x.dll", "x.dll"),
        ("a\x00b\nc.txt", "a_b_c.txt"),
        ("CON.txt", "_CON.txt"),
        ("", "file"),
        ("photo.jpg", "photo.jpg"),
        ("  spaced .  ", "spaced"),
        ("\u202etxt.exe", "txt.exe"),
    ],
)
def test_names_are_sanitised(name: str, safe: str) -> None:
    assert F.sanitize_name(name) == safe


@given(st.text(max_size=400))
def test_a_sanitised_name_is_always_one_plain_entry(name: str) -> None:
    safe = F.sanitize_name(name)
    assert safe and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not safe.startswith(".") and safe not in (".", "..")
    assert len(safe.encode("utf-8")) <= F.MAX_NAME_BYTES
    assert F.sanitize_name(safe) == safe


@given(st.binary(max_size=200))
def test_decoding_garbage_raises_protocol_error_or_parses(payload: bytes) -> None:
    try:
        F.decode(payload)
    except ProtocolError:
        pass


def test_codec_round_trips() -> None:
    sha = "ab" * 32
    assert F.decode(F.encode_want(sha, [0, 5, 2**32 - 1])).indices == (0, 5, 2**32 - 1)
    msg = F.decode(F.encode_data_header(bytes.fromhex(sha), 7) + b"xyz")
    assert (msg.op, msg.sha, msg.indices, msg.data) == (F.Op.DATA, sha, (7,), b"xyz")
    assert F.decode(F.encode_manifest(sha, [b"1" * 32, b"2" * 32])).hashes == (b"1" * 32, b"2" * 32)
    with pytest.raises(ProtocolError, match="chunk list"):
        F.decode(F.encode_want(sha, range(F.MAX_WANT + 1)))


def _pump_fetch(
    fetch: F.Fetch,
    serve: dict[str, tuple[bytes, list[bytes]]],
    first: list[F.Send | F.Write],
    corrupt: set[tuple[str, int]] = frozenset(),  # type: ignore[assignment]
) -> tuple[bytearray, list[tuple[str, int]]]:
    """Answer a fetch's requests as the peers in ``serve`` would; return the written file."""
    out = bytearray(fetch.ref.size)
    asked: list[tuple[str, int]] = []
    actions = list(first)
    now = 0.0
    for _ in range(10000):
        if not actions:
            break
        action = actions.pop(0)
        if isinstance(action, F.Write):
            out[action.offset : action.offset + len(action.data)] = action.data
            continue
        peer, msg = action.peer, F.decode(action.payload)
        if peer not in serve:
            actions += fetch.missing(peer, now)
            continue
        data, hashes = serve[peer]
        if msg.op == F.Op.GET:
            actions += fetch.manifest(peer, tuple(hashes), now)
        elif msg.op == F.Op.WANT:
            for index in msg.indices:
                asked.append((peer, index))
                off, n = F.chunk_span(index, fetch.ref.size, fetch.ref.chunk)
                chunk = data[off : off + n]
                if (peer, index) in corrupt:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    corrupt = corrupt - {(peer, index)}
                actions += fetch.data(peer, index, chunk, now)
    return out, asked


def test_fetch_gets_every_chunk_once_and_repairs_a_bad_one() -> None:
    data, ref, hashes = _file(10 * F.MIN_CHUNK + 1)
    fetch = F.Fetch(ref, ["p"], 0.0, window=3)
    out, asked = _pump_fetch(fetch, {"p": (data, hashes)}, fetch.start(0.0), corrupt={("p", 4)})
    assert fetch.complete and bytes(out) == data
    assert sorted(asked) == sorted([("p", i) for i in range(11)] + [("p", 4)])


def test_fetch_skips_a_peer_without_the_file_and_one_with_a_lying_manifest() -> None:
    data, ref, hashes = _file(4 * F.MIN_CHUNK)
    liar = (data, [hashlib.sha256(b"x").digest()] * 4)
    fetch = F.Fetch(ref, ["empty", "liar", "good"], 0.0)
    out, asked = _pump_fetch(fetch, {"liar": liar, "good": (data, hashes)}, fetch.start(0.0))
    assert fetch.complete and bytes(out) == data and {p for p, _ in asked} == {"good"}


def test_fetch_gives_up_on_a_source_that_keeps_sending_bad_chunks() -> None:
    _data, ref, hashes = _file(2 * F.MIN_CHUNK)
    fetch = F.Fetch(ref, ["p"], 0.0, window=1, retries=2, pinned="p")
    fetch.start(0.0)
    fetch.manifest("p", tuple(hashes), 0.0)
    for attempt in range(3):
        assert fetch.active
        again = fetch.data("p", 0, b"\x00" * F.MIN_CHUNK, 0.0)
        if attempt < 2:  # asked again each time, until the retries are spent
            assert [F.decode(a.payload).indices for a in again if isinstance(a, F.Send)] == [(0,)]
    assert fetch.failed is not None and "do not match" in fetch.failed


def test_fetch_resumes_after_the_source_left_and_times_out_without_one() -> None:
    data, ref, hashes = _file(3 * F.MIN_CHUNK)
    fetch = F.Fetch(ref, ["p"], 0.0, window=1, resume_timeout=10.0)
    actions = fetch.start(0.0)
    assert F.decode(actions[0].payload).op == F.Op.GET  # type: ignore[union-attr]
    fetch.manifest("p", tuple(hashes), 0.0)
    fetch.data("p", 0, data[: F.MIN_CHUNK], 0.0)
    assert fetch.peer_down("p", 1.0) == [] and fetch.source is None
    assert fetch.timer(5.0) == [] and fetch.active
    again = fetch.peer_up("p", 6.0)
    assert [F.decode(a.payload).indices for a in again if isinstance(a, F.Send)] == [(1, 2)]
    fetch.peer_down("p", 7.0)
    fetch.timer(17.5)
    assert fetch.failed is not None and "no peer" in fetch.failed


def test_a_silent_source_is_asked_again_after_the_stall_timeout() -> None:
    _data, ref, hashes = _file(2 * F.MIN_CHUNK)
    fetch = F.Fetch(ref, ["p"], 0.0, window=2, stall_timeout=5.0)
    fetch.start(0.0)
    fetch.manifest("p", tuple(hashes), 0.0)
    assert fetch.timer(4.0) == []
    again = fetch.timer(6.0)
    assert [F.decode(a.payload).indices for a in again if isinstance(a, F.Send)] == [(0, 1)]
    assert fetch.next_deadline() == 11.0


def test_the_window_grows_while_round_trips_stay_flat_and_shrinks_when_a_queue_builds() -> None:
    data, ref, hashes = _file(400 * F.MIN_CHUNK)
    fetch = F.Fetch(ref, ["p"], 0.0, window=16, target_delay=0.01)
    fetch.start(0.0)
    fetch.manifest("p", tuple(hashes), 0.0)
    assert fetch.cwnd == 4
    now, index = 0.0, 0
    for _ in range(150):  # every chunk answered 1 ms after it was asked for: no queue
        now += 0.001
        fetch.data("p", index, data[index * F.MIN_CHUNK : (index + 1) * F.MIN_CHUNK], now)
        fetch._inflight = {i: now for i in fetch._inflight}  # the next ones were asked just now
        index += 1
    assert fetch.cwnd == 16
    for _ in range(150):  # now each takes 50 ms: a queue of 49 ms, far over the 10 ms target
        fetch._inflight = {i: now for i in fetch._inflight}
        now += 0.05
        fetch.data("p", index, data[index * F.MIN_CHUNK : (index + 1) * F.MIN_CHUNK], now)
        index += 1
    assert fetch.cwnd == F.MIN_WINDOW


_BEHAVIOURS = ("honest", "missing", "corrupting", "lying")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fetch_never_writes_wrong_bytes_and_completes_once_an_honest_peer_stays(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 9 * F.MIN_CHUNK), label="size")
    content, ref, hashes = _file(size)
    names = ["a", "b", "c"]
    kinds = {n: data.draw(st.sampled_from(_BEHAVIOURS), label=n) for n in names}
    kinds["a"] = data.draw(st.sampled_from(("corrupting", "lying")), label="a")  # asked first
    kinds["c"] = "honest"  # at least one peer has the right bytes
    connected = {"a"} | set(data.draw(st.sets(st.sampled_from(names)), label="connected at start"))
    now = 0.0
    fetch = F.Fetch(
        ref,
        sorted(connected),
        now,
        window=data.draw(st.integers(1, 8)),
        stall_timeout=5.0,
        resume_timeout=1e9,
    )
    requests: list[tuple[str, bytes]] = []  # (peer, payload) sent by the fetch, not yet answered
    replies: list[tuple[str, F.Msg]] = []  # answers on their way back
    out = bytearray(size)

    def act(actions: list[F.Send | F.Write]) -> None:
        for action in actions:
            if isinstance(action, F.Write):
                chunk = bytes(action.data)
                assert chunk == content[action.offset : action.offset + len(chunk)]  # never wrong
                out[action.offset : action.offset + len(chunk)] = chunk
            else:
                requests.append((action.peer, action.payload))

    def answer(peer: str, payload: bytes) -> None:
        if peer not in connected:
            return  # lost with the link
        msg, kind = F.decode(payload), kinds[peer]
        if kind == "missing":
            replies.append((peer, F.decode(F.encode_missing(msg.sha))))
        elif msg.op == F.Op.GET:
            sent = [hashlib.sha256(b"lie").digest()] * len(hashes) if kind == "lying" else hashes
            replies.append((peer, F.decode(F.encode_manifest(msg.sha, sent))))
        elif msg.op == F.Op.WANT:
            for index in msg.indices:
                off, n = F.chunk_span(index, size, ref.chunk)
                chunk = content[off : off + n]
                if kind == "corrupting" and n and data.draw(st.booleans(), label="corrupt"):
                    chunk = bytes([chunk[0] ^ 1]) + chunk[1:]
                replies.append((peer, F.decode(F.encode_data_header(bytes.fromhex(msg.sha), index) + chunk)))

    def deliver(peer: str, msg: F.Msg) -> None:
        if peer not in connected:
            return
        if msg.op == F.Op.MISSING:
            act(fetch.missing(peer, now))
        elif msg.op == F.Op.MANIFEST:
            act(fetch.manifest(peer, msg.hashes, now))
        elif msg.op == F.Op.DATA:
            act(fetch.data(peer, msg.indices[0], msg.data, now))

    act(fetch.start(now))
    for _ in range(data.draw(st.integers(0, 60), label="steps")):
        step = data.draw(st.sampled_from(["request", "reply", "down", "up", "time"]), label="step")
        if step == "request" and requests:
            answer(*requests.pop(data.draw(st.integers(0, len(requests) - 1))))
        elif step == "reply" and replies:
            deliver(*replies.pop(0))  # a link is ordered: replies from one peer keep their order
        elif step == "down" and connected:
            peer = data.draw(st.sampled_from(sorted(connected)))
            connected.discard(peer)
            requests[:] = [r for r in requests if r[0] != peer]
            replies[:] = [r for r in replies if r[0] != peer]
            act(fetch.peer_down(peer, now))
        elif step == "up":
            peer = data.draw(st.sampled_from(names))
            if peer not in connected:
                connected.add(peer)
                act(fetch.peer_up(peer, now))
        elif step == "time":
            now += data.draw(st.sampled_from([0.1, 6.0]))
            act(fetch.timer(now))
    # Then the honest peer is (or comes) back and the network delivers everything in order.
    if "c" not in connected:
        connected.add("c")
        act(fetch.peer_up("c", now))
    for _ in range(5000):
        if not fetch.active:
            break
        if requests:
            answer(*requests.pop(0))
        elif replies:
            deliver(*replies.pop(0))
        else:
            now += 6.0
            act(fetch.timer(now))
    assert fetch.complete and fetch.failed is None and bytes(out) == content
