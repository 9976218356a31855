"""LAN transport benchmarks, each figure next to a baseline measured in the same run.

    python benchmarks/lan.py [--messages 50000] [--repeat 3] [--netns]

1. Reliable app-message throughput between two peers on loopback (TLS, static addresses),
   against a plain asyncio TLS connection sending the same 100-byte JSON messages (the floor any
   design pays: JSON, TLS, TCP), sender and receiver on their own threads in both cases.
2. Round-trip time of a small message (ping/pong), against the same plain TLS connection.
3. With the replicated store (if available): median one-way latency of a store edit appearing on
   the other peer, and replicated edits per second; the same figures for pycrdt-websocket (a
   server and two clients over wss on loopback) if it and `websockets` are installed.
4. With --netns (root): in network namespaces, time from creating a peer to its first
   ``peer_added``, next to zeroconf's own register-to-found time for two plain services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import mpstore
from mpstore.transports._lan._tls import TlsIdentity
from mpstore.transports.lan import LanTransport


def message(i: int) -> dict[str, Any]:
    """A JSON message of exactly 100 bytes for i < 10**6."""
    base = {"seq": i, "from": "bench", "pad": ""}
    size = len(json.dumps(base, separators=(",", ":")))
    base["pad"] = "x" * (100 - size)
    return base


def _lan() -> LanTransport:
    return LanTransport(host="127.0.0.1", discovery=False, ip_version="v4")


class _Sink(mpstore.MultipeerConnectivity):
    def __init__(self, *args: Any, expect: int = 0, **kwargs: Any) -> None:
        self.count = 0
        self.expect = expect
        self.done = threading.Event()
        self.echo = False
        super().__init__(*args, **kwargs)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        pass

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        if self.echo:
            self.send(message, to_peer=from_peer)
            return
        self.count += 1
        if self.count >= self.expect:
            self.done.set()


def _pair(expect: int) -> tuple[_Sink, _Sink]:
    # max_message_rate=None: the default limit (5000/s per peer) would cut a fast sender off.
    a = _Sink("A", "bench", transport=_lan(), expect=expect, max_message_rate=None)
    b = _Sink(
        "B", "bench", transport=LanTransport(host="127.0.0.1", discovery=False, peers=[a.transport.address])
    )  # type: ignore[attr-defined]
    a.wait_for_peers(1, timeout=10)
    b.wait_for_peers(1, timeout=10)
    return a, b


def mpstore_throughput(n: int) -> float:
    """Messages per second, B -> A, reliable."""
    a, b = _pair(n)
    try:
        msgs = [message(i) for i in range(n)]
        t0 = time.perf_counter()
        for m in msgs:
            b.send(m)
        if not a.done.wait(120):
            raise RuntimeError(f"only {a.count}/{n} messages arrived")
        return n / (time.perf_counter() - t0)
    finally:
        b.end_all()
        a.end_all()


def mpstore_rtt(rounds: int) -> float:
    """Median round-trip seconds of a small message."""
    a, b = _pair(1)
    a.echo = True
    try:
        samples = []
        for i in range(rounds):
            b.done.clear()
            b.count, b.expect = 0, 1
            t0 = time.perf_counter()
            b.send(message(i))
            if not b.done.wait(10):
                raise RuntimeError("no echo")
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)
    finally:
        b.end_all()
        a.end_all()


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def plain_tls(n: int, rounds: int) -> tuple[float, float, float]:
    """Messages/s (written on the loop; hopped per message) and median RTT over bare asyncio TLS."""
    server_id, client_id = TlsIdentity(), TlsIdentity()
    rx, tx = _LoopThread(), _LoopThread()
    state: dict[str, Any] = {"count": 0, "expect": n, "echo": False}
    done = threading.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = await reader.readline()
            if not line:
                break
            msg = json.loads(line)
            if state["echo"]:
                writer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
                continue
            state["count"] += 1
            if state["count"] >= state["expect"]:
                done.set()
        writer.close()

    async def serve() -> asyncio.AbstractServer:
        return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_id.server_context)

    server = rx.run(serve())
    port = server.sockets[0].getsockname()[1]

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_id.client_context, server_hostname="mpstore"
        )

    reader, writer = tx.run(connect())
    msgs = [message(i) for i in range(n)]

    def send(m: Any) -> None:
        writer.write(json.dumps(m, separators=(",", ":")).encode() + b"\n")

    async def blast() -> None:
        for k, m in enumerate(msgs):
            send(m)
            if k % 256 == 255:
                await writer.drain()

    # (a) the sender's loop writes every message itself: the bare floor.
    t0 = time.perf_counter()
    tx.run(blast())
    if not done.wait(120):
        raise RuntimeError("baseline: messages missing")
    rate_direct = n / (time.perf_counter() - t0)

    # (b) one hop onto the sender's loop per message, as any threaded (sync) app must do.
    done.clear()
    state["count"] = 0
    t0 = time.perf_counter()
    for m in msgs:
        tx.loop.call_soon_threadsafe(send, m)
    if not done.wait(120):
        raise RuntimeError("baseline: messages missing")
    rate = n / (time.perf_counter() - t0)

    state["echo"] = True
    samples = []
    for i in range(rounds):

        async def ping(i: int = i) -> None:
            send(message(i))
            json.loads(await reader.readline())

        t0 = time.perf_counter()
        tx.run(ping())
        samples.append(time.perf_counter() - t0)

    async def close() -> None:
        writer.close()

    tx.run(close())

    async def stop_server() -> None:
        server.close()

    rx.run(stop_server())
    rx.stop()
    tx.stop()
    return rate_direct, rate, statistics.median(samples)


def store_figures(edits: int) -> tuple[float, float] | None:
    """Median one-way latency of a store edit, and replicated edits/s; None without a store."""
    a, b = _pair(1)
    try:
        try:
            da, db = a.shared_dict("bench"), b.shared_dict("bench")
        except mpstore.MpstoreError as exc:
            print(f"  (store figures skipped: {exc})")
            return None
        samples = []
        for i in range(200):
            key = f"k{i}"
            t0 = time.perf_counter()
            db[key] = "v"
            deadline = t0 + 5
            while key not in da and time.perf_counter() < deadline:
                time.sleep(0.0002)
            samples.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(edits):
            db["n"] = str(i)
        last = str(edits - 1)
        deadline = t0 + 60
        while da.get("n") != last and time.perf_counter() < deadline:
            time.sleep(0.001)
        rate = edits / (time.perf_counter() - t0)
        return statistics.median(samples), rate
    finally:
        b.end_all()
        a.end_all()


def netns_figures(rounds: int) -> None:
    """Start-to-peer_added of mpstore vs zeroconf register-to-found, in namespaces."""
    import subprocess
    import tempfile

    from tests.netns import NetnsLan, netns_unavailable

    reason = netns_unavailable()
    if reason:
        print(f"  (namespace figures skipped: {reason})")
        return
    probe = str(Path(__file__).with_name("_zc_probe.py"))
    ours: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            with NetnsLan(2, Path(tmp)) as lan:
                procs = [
                    subprocess.Popen(
                        ["ip", "netns", "exec", lan.namespace(i), sys.executable, probe, f"p{i}"],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    for i in range(2)
                ]
                for proc in procs:
                    out, _ = proc.communicate(timeout=30)
                    theirs.append(float(out.strip()))
            with NetnsLan(2, Path(tmp)) as lan:
                agents = [lan.spawn(i, f"p{i}") for i in range(2)]
                deadline = time.monotonic() + 30
                for agent in agents:
                    while time.monotonic() < deadline:
                        events = agent.call("events")["events"]
                        if events:
                            ours.append(events[0]["t"] - agent.hello["t_create"])
                            break
                        time.sleep(0.02)
    mine, zc = statistics.median(ours), statistics.median(theirs)
    print(f"  namespaces, {rounds} rounds x 2 peers:")
    print(f"  zeroconf register -> found: median {zc * 1000:.0f} ms")
    print(f"  mpstore create -> peer_added: median {mine * 1000:.0f} ms (ratio {mine / zc:.2f})")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--edits", type=int, default=5_000)
    p.add_argument("--netns", action="store_true")
    p.add_argument("--netns-rounds", type=int, default=3)
    args = p.parse_args()

    print(f"Python {sys.version.split()[0]}, mpstore {mpstore.__version__}, {args.messages} x 100-byte JSON")
    runs: dict[str, list[float]] = {"direct": [], "hopped": [], "rtt0": [], "mp": [], "rtt": []}
    for _ in range(args.repeat):  # interleaved, medians reported: the machine may be shared
        direct, hopped, base_rtt = plain_tls(args.messages, args.rounds)
        runs["direct"].append(direct)
        runs["hopped"].append(hopped)
        runs["rtt0"].append(base_rtt)
        runs["mp"].append(mpstore_throughput(args.messages))
        runs["rtt"].append(mpstore_rtt(args.rounds))
    direct, hopped, base_rtt, rate, rtt = (
        statistics.median(runs[k]) for k in ("direct", "hopped", "rtt0", "mp", "rtt")
    )
    print(
        f"  medians of {args.repeat} interleaved runs; mpstore/plain-on-loop per run: "
        + ", ".join(f"{m / d:.2f}" for m, d in zip(runs["mp"], runs["direct"], strict=True))
    )
    rtt_us, base_us = rtt * 1e6, base_rtt * 1e6
    print(f"  plain asyncio TLS, written on its loop   : {direct:,.0f} msg/s")
    print(f"  plain asyncio TLS, one thread hop per msg: {hopped:,.0f} msg/s, RTT median {base_us:.0f} us")
    print(f"  mpstore LAN (sync send from a thread)    : {rate:,.0f} msg/s, RTT median {rtt_us:.0f} us")
    print(f"  throughput mpstore / plain-on-loop: {rate / direct:.2f} (target >= 0.70)")
    print(f"  throughput mpstore / plain-with-hop: {rate / hopped:.2f}")
    print(f"  RTT ratio mpstore / plain: {rtt / base_rtt:.2f}")
    base_rate = direct
    store = store_figures(args.edits)
    try:
        from benchmarks._pycrdt_ws import pycrdt_websocket_figures
    except ImportError as exc:
        ws = None
        print(f"  (pycrdt-websocket comparison skipped: {exc})")
    else:
        ws = pycrdt_websocket_figures(200, args.edits)
        print(
            f"  pycrdt-websocket (server + 2 clients, wss on loopback): edit latency median "
            f"{ws[0] * 1e3:.2f} ms, {ws[1]:,.0f} replicated edits/s"
        )
    if store is not None:
        lat, edits = store
        print(f"  mpstore store: edit latency median {lat * 1e3:.2f} ms, {edits:,.0f} replicated edits/s")
        print(f"  (plain TLS RTT/2: {base_rtt * 5e2:.2f} ms; plain TLS messages: {base_rate:,.0f}/s)")
        if ws is not None:
            print(f"  mpstore / pycrdt-websocket: latency {lat / ws[0]:.2f}, edits/s {edits / ws[1]:.2f}")
    if args.netns:
        netns_figures(args.netns_rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
