"""The LAN transport on loopback with static addresses (no multicast): links, frames, faults."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl

import pytest

pytest.importorskip("zeroconf")
pytest.importorskip("cryptography")

from mpstore._errors import TransportError
from mpstore.transports._lan._framing import Preface, encode_frame_header
from mpstore.transports._lan._tls import TlsIdentity
from mpstore.transports.base import LinkId
from mpstore.transports.lan import LanTransport
from tests.lan.helpers import Recorder, close_all, free_ports, make, run, wait_until

A, B, C = "a" * 32, "b" * 32, "c" * 32


async def _pair(**kwargs: object):  # type: ignore[no-untyped-def]
    b = make(B, **kwargs)  # type: ignore[arg-type]
    a = make(A, peers=[b[0].address], **kwargs)  # type: ignore[arg-type]
    for t, _ in (a, b):
        t.start_discovery()
    await wait_until(lambda: a[1].live() and b[1].live(), what="a link")
    return a, b


def test_frames_both_ways_in_order_including_large_and_empty() -> None:
    async def body() -> None:
        a, b = await _pair()
        (la,), (lb,) = a[1].live(), b[1].live()
        big = os.urandom(a[0].max_frame_size)
        sent_a = [b"", big] + [i.to_bytes(4, "big") * (i % 50) for i in range(2000)] + [big]
        sent_b = [os.urandom(i * 37 % 70000) for i in range(300)]
        for f in sent_a:
            assert a[0].send(la, f)
        for f in sent_b:
            assert b[0].send(lb, f)
        await wait_until(lambda: len(b[1].frames[lb]) == len(sent_a), what="frames to b")
        await wait_until(lambda: len(a[1].frames[la]) == len(sent_b), what="frames to a")
        assert b[1].frames[lb] == sent_a
        assert a[1].frames[la] == sent_b
        assert a[1].up[la] is not None and a[1].up[la].startswith("127.0.0.1:")
        await close_all(a, b)

    run(body())


def test_frame_over_max_frame_size_is_a_caller_error() -> None:
    async def body() -> None:
        a, b = await _pair()
        (la,) = a[1].live()
        with pytest.raises(TransportError):
            a[0].send(la, b"x" * (a[0].max_frame_size + 1))
        assert a[0].send("no such link", b"x") is False
        await close_all(a, b)

    run(body())


def test_channel_binding_is_the_same_on_both_ends_and_unique_per_pair() -> None:
    async def body() -> None:
        c = make(C)
        a, b = await _pair()
        c2 = make("d" * 32, peers=[b[0].address])
        c[0].start_discovery()
        c2[0].start_discovery()
        await wait_until(lambda: len(b[1].live()) == 2 and c2[1].live(), what="second link")
        (la,), (ld,) = a[1].live(), c2[1].live()
        ba = a[0].channel_binding(la)
        assert len(ba) == 32
        bindings_at_b = {b[0].channel_binding(link) for link in b[1].live()}
        assert bindings_at_b == {ba, c2[0].channel_binding(ld)}
        assert a[0].channel_binding("unknown") == b""
        await close_all(a, b, c, c2)

    run(body())


@pytest.mark.parametrize("n", [2, 4])
def test_simultaneous_dials_keep_exactly_one_link_per_pair(n: int) -> None:
    async def body() -> None:
        for _round in range(3 if n > 2 else 8):
            ports = free_ports(n)
            addrs = [("127.0.0.1", p) for p in ports]
            ids = [os.urandom(16).hex() for _ in range(n)]
            nodes = [
                make(ids[i], port=ports[i], peers=[a for j, a in enumerate(addrs) if j != i])
                for i in range(n)
            ]
            for t, _ in nodes:  # every node dials every other at the same moment
                t.start_discovery()
            await wait_until(
                lambda nodes=nodes: all(len(r.live()) == n - 1 for _, r in nodes), what="full mesh"
            )
            await asyncio.sleep(0.3)  # any duplicate would have shown up by now
            for _, r in nodes:
                assert len(r.up) == n - 1, r.events
                assert not r.down, r.down
            await close_all(*nodes)

    run(body(), timeout=60)


def test_service_type_mismatch_and_self_dial_never_link() -> None:
    async def body() -> None:
        b = make(B, service="other")
        port = free_ports(1)[0]
        a = make(A, port=port, peers=[b[0].address, ("127.0.0.1", port)])
        a[0].start_discovery()
        b[0].start_discovery()
        await asyncio.sleep(1.0)
        assert not a[1].up and not b[1].up
        # Ourselves: never dialed again. The other service: retried with backoff only.
        own = a[0]._targets[f"addr:127.0.0.1:{port}"]
        other = a[0]._targets[f"addr:127.0.0.1:{b[0].address[1]}"]
        assert own.dead and own.failures == 0
        assert not other.dead and 1 <= other.failures <= 4
        await close_all(a, b)

    run(body())


def test_garbage_and_half_open_connections_do_not_disturb_links() -> None:
    async def body() -> None:
        a, b = await _pair(connect_timeout=0.5)
        (la,), (lb,) = a[1].live(), b[1].live()
        host, port = b[0].address
        loop = asyncio.get_running_loop()
        # Garbage: random bytes at the TLS layer.
        r1, w1 = await asyncio.open_connection(host, port)
        w1.write(os.urandom(5000))
        # Half-open: connect and say nothing.
        r2, w2 = await asyncio.open_connection(host, port)
        for i in range(200):
            assert a[0].send(la, b"ping %d" % i)
        await wait_until(lambda: len(b[1].frames[lb]) == 200, what="frames past the garbage")
        # Both bad connections get closed by b: garbage at once, half-open at the timeout.
        assert await asyncio.wait_for(r1.read(), 3) == b""
        t0 = loop.time()
        assert await asyncio.wait_for(r2.read(), 3) == b""
        assert loop.time() - t0 < 1.5
        for w in (w1, w2):
            w.close()
        assert b[1].live() == [lb] and not b[1].down
        await close_all(a, b)

    run(body())


def test_plaintext_client_is_dropped() -> None:
    async def body() -> None:
        b = make(B)
        b[0].start_discovery()
        r, w = await asyncio.open_connection(*b[0].address)
        pre = Preface("test", A).encode()
        w.write(encode_frame_header(len(pre)) + pre)
        assert await asyncio.wait_for(r.read(), 3) == b""
        w.close()
        assert not b[1].up
        await close_all(b)

    run(body())


async def _tls_client(address: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ident = TlsIdentity()
    return await asyncio.open_connection(*address, ssl=ident.client_context, server_hostname="mpstore")


def test_bad_frames_inside_tls_end_only_that_connection() -> None:
    async def body() -> None:
        a, b = await _pair()
        (la,), (lb,) = a[1].live(), b[1].live()
        cases = [
            encode_frame_header(2**31) + b"x",  # over the frame limit
            encode_frame_header(10) + b"not a pref",  # not a preface
        ]
        pre = Preface("test", "0" * 32).encode()  # b waits for our decision
        cases.append(encode_frame_header(len(pre)) + pre + encode_frame_header(3) + b"bad")
        for payload in cases:
            r, w = await _tls_client(b[0].address)
            w.write(payload)
            data = await asyncio.wait_for(r.read(), 3)
            w.close()
            # b may have sent its preface before hanging up, nothing more.
            assert len(data) < 200
        assert a[0].send(la, b"still here")
        await wait_until(lambda: b[1].frames[lb] == [b"still here"])
        assert len(b[1].up) == 1 and not b[1].down
        await close_all(a, b)

    run(body())


def test_tls_13_with_the_peer_certificate_on_both_ends() -> None:
    async def body() -> None:
        a, b = await _pair()
        for t, r in (a, b):
            (link,) = r.live()
            conn = t._links[link]
            assert conn._transport is not None
            so = conn._transport.get_extra_info("ssl_object")
            assert isinstance(so, ssl.SSLObject)
            assert so.version() == "TLSv1.3"
            assert so.getpeercert(binary_form=True)
        await close_all(a, b)

    run(body())


def test_back_pressure_with_a_stuck_reader() -> None:
    async def body() -> None:
        kw = {"high_water": 64 * 1024, "max_buffer": 2 * 1024 * 1024}
        b = make(B, **kw)  # type: ignore[arg-type]
        c = make(C, **kw)  # type: ignore[arg-type]
        a = make(A, peers=[b[0].address, c[0].address], **kw)  # type: ignore[arg-type]
        for t, _ in (a, b, c):
            t.start_discovery()
        await wait_until(lambda: len(a[1].live()) == 2 and b[1].live() and c[1].live())
        (lb,), (lc,) = b[1].live(), c[1].live()
        link_b = next(link for link, conn in a[0]._links.items() if conn.remote_id == B)
        link_c = next(link for link in a[1].live() if link != link_b)
        b_conn = b[0]._links[lb]
        assert b_conn._transport is not None
        b_conn._transport.pause_reading()  # b's application stops reading

        chunk = os.urandom(16 * 1024)
        dropped = 0
        for _ in range(2000):  # unreliable frames are dropped once the buffer is high
            if not a[0].send(link_b, chunk, reliable=False):
                dropped += 1
                if dropped > 10:
                    break
            await asyncio.sleep(0)
        assert dropped > 10
        await wait_until(lambda: ("writable", link_b, False) in a[1].events, what="pause")
        assert a[0]._links[link_b].pending() < 2 * 1024 * 1024

        # The other link is not slowed down.
        for i in range(100):
            assert a[0].send(link_c, b"c%d" % i)
        await wait_until(lambda: len(c[1].frames[lc]) == 100, what="c unaffected")

        # The reader resumes: writable again, and everything reliable arrives.
        b_conn._transport.resume_reading()
        await wait_until(lambda: ("writable", link_b, True) in a[1].events, what="resume")
        got_before = len(b[1].frames[lb])
        assert a[0].send(link_b, b"after")
        await wait_until(lambda: b[1].frames[lb][-1:] == [b"after"], what="after resume")
        assert len(b[1].frames[lb]) > got_before

        # Stuck for good: reliable frames past max_buffer end that link only.
        b_conn._transport.pause_reading()
        ok = True
        for _ in range(4000):  # kernel socket buffers take some megabytes first
            ok = a[0].send(link_b, chunk)
            if not ok:
                break
        assert not ok
        await wait_until(lambda: link_b in a[1].down, what="overflowing link closed")
        assert "not reading" in a[1].down[link_b]
        assert a[0].send(link_c, b"still fine")
        await wait_until(lambda: c[1].frames[lc][-1:] == [b"still fine"])
        await close_all(a, b, c)

    run(body())


def test_stop_discovery_refuses_newcomers_and_keeps_live_links() -> None:
    async def body() -> None:
        a, b = await _pair()
        (lb,) = b[1].live()
        b[0].stop_discovery()
        c = make(C, peers=[b[0].address])
        c[0].start_discovery()
        await asyncio.sleep(1.0)
        assert not c[1].up and b[1].live() == [lb]
        assert a[0].send(a[1].live()[0], b"hi")
        await wait_until(lambda: b[1].frames[lb] == [b"hi"])
        b[0].start_discovery()
        await wait_until(lambda: c[1].live() and len(b[1].live()) == 2, timeout=8, what="admitted")
        await close_all(a, b, c)

    run(body())


def test_close_link_flushes_then_reports_down_and_the_dialer_redials() -> None:
    async def body() -> None:
        a, b = await _pair()
        (la,), (lb,) = a[1].live(), b[1].live()
        for i in range(100):
            a[0].send(la, b"%d" % i)
        a[0].close_link(la, "bye")
        await wait_until(lambda: la in a[1].down and lb in b[1].down, what="both down")
        assert len(b[1].frames[lb]) == 100
        # a's static peer is dialed again (the core would decide to keep or close the link).
        await wait_until(lambda: len(a[1].live()) == 1 and len(b[1].live()) == 1, timeout=8)
        await close_all(a, b)

    run(body())


def test_a_restarted_peer_with_a_new_id_is_a_new_link() -> None:
    async def body() -> None:
        a, b = await _pair()
        port = b[0].address[1]
        await close_all(b)
        await wait_until(lambda: not a[1].live(), what="a sees b gone")
        b2 = make("e" * 32, port=port)
        b2[0].start_discovery()
        await wait_until(lambda: len(a[1].live()) == 1 and b2[1].live(), timeout=10)
        new = a[1].live()[0]
        assert a[0]._links[new].remote_id == "e" * 32
        await close_all(a, b2)

    run(body())


def test_aclose_leaves_no_socket_or_task_and_no_callback_after() -> None:
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        pytest.skip("needs /proc")

    async def body() -> None:
        before = len(os.listdir(fd_dir))
        a, b = await _pair()
        host, port = b[0].address
        half = socket.create_connection((host, port))  # mid-handshake at aclose
        await asyncio.sleep(0.05)
        for _ in range(50):
            a[0].send(a[1].live()[0], b"x" * 1000)
        await close_all(a, b)
        half.close()
        await asyncio.sleep(0.05)
        assert len(os.listdir(fd_dir)) <= before
        assert all(("down", link, "transport closed") in a[1].events for link in a[1].up)
        assert set(b[1].down) == set(b[1].up)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=1).close()

    run(body())


class _Refuser(Recorder):
    """A listener that closes every link at once, as a core that refuses the peer would."""

    transport: LanTransport | None = None

    def link_up(self, link: LinkId, address: str | None) -> None:
        super().link_up(link, address)
        assert self.transport is not None
        self.transport.close_link(link, "refused")


def test_a_flapping_link_is_retried_with_backoff_never_in_parallel() -> None:
    async def body() -> None:
        refuser = _Refuser()
        b = make(B, recorder=refuser)
        refuser.transport = b[0]
        a = make(A, peers=[b[0].address])
        for t, _ in (a, b):
            t.start_discovery()
        await asyncio.sleep(3.0)
        ups = [e for e in a[1].events if e[0] == "up"]
        # Backoff 0.4 s, 0.8 s, 1.6 s (+-20 %) between attempts: 2 to 4 links in 3 s, one at a time.
        assert 2 <= len(ups) <= 4, a[1].events
        assert len(a[1].live()) <= 1
        await close_all(a, b)

    run(body())


def test_a_port_in_use_is_a_clear_error_and_aclose_without_open_is_fine() -> None:
    async def body() -> None:
        a = make(A)
        with pytest.raises(TransportError, match=r"cannot listen on 127\.0\.0\.1"):
            make(B, port=a[0].address[1])
        await LanTransport().aclose()
        await close_all(a)

    run(body())


class _Batching(Recorder):
    """A listener with link_frames: the transport hands it a read's frames in one call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def link_frames(self, link: LinkId, frames: list[bytes]) -> None:
        self.calls += 1
        for frame in frames:
            self.link_frame(link, frame)


def test_many_frames_coalesced_in_one_write_arrive_whole_in_order_in_few_calls() -> None:
    async def body() -> None:
        rb = _Batching()
        b = make(B, recorder=rb)
        a = make(A, peers=[b[0].address])
        for t, _ in (a, b):
            t.start_discovery()
        await wait_until(lambda: a[1].live() and rb.live(), what="a link")
        (la,), (lb,) = a[1].live(), rb.live()
        sent = [i.to_bytes(3, "big") + bytes([i % 251]) * (i % 120) for i in range(5000)]
        a[0].send_frames(la, sent[:2500])  # one call: one TLS write per loop turn
        for frame in sent[2500:]:
            assert a[0].send(la, frame)
        await wait_until(lambda: len(rb.frames[lb]) == len(sent), what="frames to b")
        assert rb.frames[lb] == sent
        assert rb.calls < len(sent) // 10, rb.calls  # frames of one read go up together
        await close_all(a, b)

    run(body())


def test_a_frame_cut_across_tls_records_and_reads_arrives_once_whole() -> None:
    async def body() -> None:
        rb = _Batching()
        b = make(B, recorder=rb)
        b[0].start_discovery()
        _, w = await _tls_client(b[0].address)
        pre = Preface("test", "0" * 32).encode()  # "0"*32 < B: we decide, and accept
        w.write(encode_frame_header(len(pre)) + pre + encode_frame_header(1) + b"\x01")
        await wait_until(lambda: rb.live(), what="the raw link up at b")
        (lb,) = rb.live()
        frames = [b"first", b"x" * 3000, b"", b"last"]
        stream = b"".join(encode_frame_header(len(f)) + f for f in frames)
        done = 0
        for cut in (2, 7, 11, 1500, 3015, len(stream) - 1):  # inside headers and bodies
            w.write(stream[done:cut])
            await w.drain()
            await asyncio.sleep(0.02)  # separate TLS records, separate reads
            done = cut
            assert len(rb.frames[lb]) < len(frames)
        assert rb.frames[lb] == frames[:3]
        w.write(stream[done:])
        await wait_until(lambda: len(rb.frames[lb]) == len(frames), what="the last frame")
        assert rb.frames[lb] == frames
        w.close()
        await close_all(b)

    run(body())


def test_flush_writes_what_waits_for_the_next_turn_now() -> None:
    async def body() -> None:
        a, b = await _pair()
        (la,), (lb,) = a[1].live(), b[1].live()
        a[0].send_frames(la, [b"one", b"two"])
        conn = a[0]._links[la]
        assert conn._out and a[0]._unflushed  # held for the loop's next turn
        a[0].flush()
        assert not conn._out and not a[0]._unflushed  # handed to TLS at once
        await wait_until(lambda: b[1].frames[lb] == [b"one", b"two"], what="the frames")
        await close_all(a, b)

    run(body())
