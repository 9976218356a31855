"""LAN transport and store benchmarks against baselines measured in the same run, two processes.

    python benchmarks/lan.py                 # 5 interleaved repeats (~3-4 min on a loaded box)
    python benchmarks/lan.py --quick         # 2 small repeats, for development (~1 min)
    python benchmarks/lan.py --netns         # + discovery time in network namespaces (root)
    python benchmarks/lan.py --sender-cpu    # CPU per message of the sending process, vs plain TLS

Every figure below comes from separate OS processes on 127.0.0.1 (TLS 1.3, static addresses,
no multicast), so no two ends share a GIL. One repeat runs every configuration once, in an order
rotated from repeat to repeat; the table gives the median over the repeats with [min-max], and
ratios are medians of the per-repeat ratios. The load average is printed with every repeat.

1. App messages, 100-byte JSON, sender process -> receiver process:
   - baseline: plain asyncio TLS written as a competent engineer would: the sender JSON-encodes
     each message and writes 4-byte length-prefixed frames batched into ~64 KiB writes (awaiting
     ``drain``), the receiver is an ``asyncio.Protocol`` that buffers, cuts frames and
     JSON-decodes each message (the same work mpstore's ``receive`` does);
   - mpstore with its default ``max_message_rate`` (5,000/s: the sender paces itself to what the
     receiver advertises, which a hostile-peer limit implies), and separately with rate limiting
     off on both ends (``max_message_rate=None``); ``send()`` called from the main thread.
   msgs/s is from the sender's first send to the receiver's last arrival (one machine-wide
   monotonic clock). Then the round-trip time of one message (the receiver echoes), median.
2. The replicated store against pycrdt-websocket (a ``WebsocketServer`` process and two client
   processes with pycrdt ``Provider``s over wss, websocket compression off and on), same
   operations on both: one-way latency of an edit (writer's write -> the reader's observer
   called; the reader acknowledges by an edit before the next), p50; then a burst of distinct-key
   edits, edits/s until the reader's observer has seen all of them. mpstore runs with its
   defaults (engine: ``MPSTORE_ENGINE`` or the default, printed).
3. With --netns (root): time from creating a peer to its first ``peer_added`` in network
   namespaces, next to zeroconf's own register-to-found time for two plain services.

Scaling with peers and message sizes: ``benchmarks/lan_scaling.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

from benchmarks._procs import Children, Figure, load, now, ratio_text, say, wait_for_eof  # noqa: E402

SCRIPT = str(Path(__file__).resolve())
WS_SCRIPT = str(Path(__file__).resolve().with_name("_pycrdt_ws.py"))
_say_lock = threading.Lock()


def message(i: int) -> dict[str, Any]:
    """A JSON message of exactly 100 bytes for i < 10**6."""
    base = {"seq": i, "from": "bench", "pad": ""}
    size = len(json.dumps(base, separators=(",", ":")))
    base["pad"] = "x" * (100 - size)
    return base


def payload(i: int, size: int) -> Any:
    """A message whose JSON is exactly ``size`` bytes: ``message(i)`` for 100, else a string."""
    return message(i) if size == 100 else "x" * (size - 2)


def _say(**fields: Any) -> None:
    with _say_lock:
        say(**fields)


def _rate_kwargs(rate: str) -> dict[str, Any]:
    return {} if rate == "default" else {"max_message_rate": None}


# -- children: plain asyncio TLS ------------------------------------------------------------------


async def _stdin_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def _frame(obj: Any) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return len(body).to_bytes(4, "big") + body


class _PlainReceiver(asyncio.Protocol):
    """Buffers, cuts length-prefixed frames, decodes each; counts n, then echoes each message."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        echo: list[bytes] = []
        while end - pos >= 4:
            size = int.from_bytes(buf[pos : pos + 4], "big")
            if end - pos - 4 < size:
                break
            msg = json.loads(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
            if self.count >= self.n:
                echo.append(_frame(msg))
                continue
            self.count += 1
            if self.count == self.n:
                _say(done=now())
        del buf[:pos]
        if echo and self.transport is not None:
            self.transport.write(b"".join(echo))


async def _plain_rx(n: int) -> None:  # any message size
    from mpstore.transports._lan._tls import TlsIdentity

    ident = TlsIdentity()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _PlainReceiver(n), "127.0.0.1", 0, ssl=ident.server_context)
    _say(port=server.sockets[0].getsockname()[1])
    await _stdin_line()
    server.close()


async def _plain_tx(port: int, n: int, rounds: int, size: int) -> None:
    from mpstore.transports._lan._tls import TlsIdentity

    ident = TlsIdentity()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ident.client_context, server_hostname="mpstore"
    )
    msgs = [payload(i, size) for i in range(n)]
    _say(ready=True)
    await _stdin_line()  # go
    t0 = now()
    batch: list[bytes] = []
    size = 0
    for m in msgs:
        body = json.dumps(m, separators=(",", ":")).encode()
        batch.append(len(body).to_bytes(4, "big"))
        batch.append(body)
        size += 4 + len(body)
        if size >= 65536:
            writer.write(b"".join(batch))
            batch.clear()
            size = 0
            await writer.drain()
    if batch:
        writer.write(b"".join(batch))
        await writer.drain()
    _say(start=t0, sent=now())
    await _stdin_line()  # rtt
    samples = []
    for i in range(rounds):
        t = now()
        writer.write(_frame(message(i)))
        head = await reader.readexactly(4)
        json.loads(await reader.readexactly(int.from_bytes(head, "big")))
        samples.append(now() - t)
    _say(rtt=statistics.median(samples) if samples else 0.0)
    await _stdin_line()
    writer.close()


# -- children: mpstore ------------------------------------------------------------------------------


def _device(name: str, port: int | None, rate: str, **kwargs: Any) -> Any:
    import mpstore
    from mpstore.transports.lan import LanTransport

    class Device(mpstore.MultipeerConnectivity):
        def peer_added(self, peer: Any) -> None:
            pass

        def peer_removed(self, peer: Any) -> None:
            pass

        def receive(self, message: Any, from_peer: Any) -> None:
            self.on_message(message, from_peer)

        def on_message(self, message: Any, from_peer: Any) -> None:
            pass

    peers = [] if port is None else [("127.0.0.1", port)]
    transport = LanTransport(host="127.0.0.1", peers=peers, discovery=False, ip_version="v4")
    return Device(name, "bench", transport=transport, **_rate_kwargs(rate), **kwargs)


def _mp_rx(n: int, rate: str) -> None:
    dev = _device("rx", None, rate)
    count = [0]

    def on_message(message: Any, from_peer: Any) -> None:
        if count[0] >= n:
            dev.send(message, to_peer=from_peer)
            return
        count[0] += 1
        if count[0] == n:
            _say(done=now())

    dev.on_message = on_message
    _say(port=dev.transport.address[1])
    while sys.stdin.readline():  # "count": how many arrived (asked when some did not)
        _say(count=count[0])
    dev.end_all()


def _mp_tx(port: int, n: int, rounds: int, rate: str, size: int) -> None:
    dev = _device("tx", port, rate)
    echoed = threading.Event()
    dev.on_message = lambda message, from_peer: echoed.set()
    dev.wait_for_peers(1, timeout=60)
    msgs = [payload(i, size) for i in range(n)]
    _say(ready=True)
    sys.stdin.readline()  # go
    t0 = now()
    for m in msgs:
        dev.send(m)
    _say(start=t0, sent=now())
    sys.stdin.readline()  # rtt
    samples = []
    for i in range(rounds):
        echoed.clear()
        t = now()
        dev.send(message(i))
        if not echoed.wait(30):
            raise RuntimeError("no echo")
        samples.append(now() - t)
    _say(rtt=statistics.median(samples) if samples else 0.0)
    wait_for_eof()
    dev.end_all()


def _store_rx(edits: int, lat: int, rate: str) -> None:
    dev = _device("rx", None, rate)
    d = dev.shared_dict("bench")
    seen = [0.0] * lat
    count = [0]

    def on_change(change: Any) -> None:
        t = now()
        for key in change.changes:
            if key[0] == "l":
                seen[int(key[3:])] = t
            elif key[0] == "k":
                count[0] += 1
                if count[0] == edits:
                    _say(done=t)

    sub = d.observe(on_change)
    _say(port=dev.transport.address[1])
    for i in range(lat):
        d.wait_for(lambda s, key=f"lat{i}": key in s, timeout=60)
        d["ack"] = i
    _say(seen=seen)
    wait_for_eof()
    sub.cancel()
    dev.end_all()


def _store_tx(port: int, edits: int, lat: int, rate: str) -> None:
    dev = _device("tx", port, rate)
    d = dev.shared_dict("bench")
    dev.wait_for_peers(1, timeout=60)
    time.sleep(0.3)  # let the stores' sync handshake finish
    _say(ready=True)
    sys.stdin.readline()  # go
    sent = []
    for i in range(lat):
        sent.append(now())
        d[f"lat{i}"] = i
        d.wait_for(lambda s, i=i: s.get("ack") == i, timeout=60)
    t0 = now()
    for i in range(edits):
        d[f"k{i}"] = i
    _say(sent=sent, start=t0)
    wait_for_eof()
    dev.end_all()


def child(role: str, args: list[str]) -> None:
    """Run one child role (called with --child)."""
    if os.environ.get("BENCH_LOG"):  # the children's logs on their stderr (shown if one fails)
        import logging

        logging.basicConfig(level=os.environ["BENCH_LOG"], format="%(asctime)s %(name)s %(message)s")
    if role == "plain_rx":
        asyncio.run(_plain_rx(int(args[0])))
    elif role == "plain_tx":
        asyncio.run(_plain_tx(int(args[0]), int(args[1]), int(args[2]), int(args[3])))
    elif role == "mp_rx":
        _mp_rx(int(args[0]), args[1])
    elif role == "mp_tx":
        _mp_tx(int(args[0]), int(args[1]), int(args[2]), args[3], int(args[4]))
    elif role == "store_rx":
        _store_rx(int(args[0]), int(args[1]), args[2])
    elif role == "store_tx":
        _store_tx(int(args[0]), int(args[1]), int(args[2]), args[3])
    else:
        raise SystemExit(f"unknown role {role}")


# -- the parent ---------------------------------------------------------------------------------------


def messages_run(
    kind: str, n: int, rounds: int, size: int = 100, profile: str | None = None
) -> tuple[float, float]:
    """(msgs/s, median RTT s) for 'plain', 'mp-default' or 'mp-off', two fresh processes;
    messages of ``size`` bytes as JSON, round trips with 100-byte ones."""
    with Children() as kids:
        if kind == "plain":
            rx = kids.start(SCRIPT, "plain_rx", n)
            port = rx.read()["port"]
            tx = kids.start(SCRIPT, "plain_tx", port, n, rounds, size)
        else:
            rate = kind.split("-", 1)[1]
            log = {"BENCH_LOG": "INFO"}
            rx = kids.start(SCRIPT, "mp_rx", n, rate, env=log, profile=profile and f"{profile}/mp_rx.txt")
            port = rx.read()["port"]
            tx_profile = profile and f"{profile}/mp_tx.txt"
            tx = kids.start(SCRIPT, "mp_tx", port, n, rounds, rate, size, env=log, profile=tx_profile)
        tx.read(timeout=120)  # ready
        tx.tell(cmd="go")
        start = tx.read(timeout=300)["start"]
        try:
            done = rx.read(timeout=30 + n / 1000)["done"]
        except RuntimeError:
            if kind == "plain":
                raise
            rx.tell(cmd="count")
            got = rx.read(timeout=30)["count"]
            logs = [ln for ln in (rx.stderr_tail() + tx.stderr_tail()).splitlines() if "mpstore" in ln]
            raise Lost(
                f"{kind}: {got:,} of {n:,} messages arrived; logs:\n    " + "\n    ".join(logs[-8:])
            ) from None
        tx.tell(cmd="rtt")
        rtt = tx.read(timeout=300)["rtt"]
    return n / (done - start), float(rtt)


class Lost(RuntimeError):
    """Messages whose send() returned never arrived."""


def _collect(child: Any, keys: set[str], timeout: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while not keys <= out.keys():
        out.update(child.read(timeout=max(1.0, deadline - time.monotonic())))
    return out


def store_run(kind: str, edits: int, lat: int, profile: str | None = None) -> tuple[float, float]:
    """(p50 one-way edit latency s, edits/s) for 'mpstore', 'ws-off' or 'ws-on'."""
    with Children() as kids:
        if kind == "mpstore":
            rx = kids.start(
                SCRIPT, "store_rx", edits, lat, "default", profile=profile and f"{profile}/store_rx.txt"
            )
            port = rx.read()["port"]
            tx_profile = profile and f"{profile}/store_tx.txt"
            tx = kids.start(SCRIPT, "store_tx", port, edits, lat, "default", profile=tx_profile)
        else:
            compression = kind.split("-", 1)[1]
            server = kids.start(WS_SCRIPT, "server", compression)
            port = server.read()["port"]
            rx = kids.start(WS_SCRIPT, "reader", port, edits, lat, compression)
            rx.read(timeout=120)  # synced
            tx = kids.start(WS_SCRIPT, "writer", port, edits, lat, compression)
        tx.read(timeout=120)  # ready
        tx.tell(cmd="go")
        got_tx = _collect(tx, {"sent", "start"}, 600)
        got_rx = _collect(rx, {"seen", "done"}, 600)
    latencies = [b - a for a, b in zip(got_tx["sent"], got_rx["seen"], strict=True)]
    return statistics.median(latencies), edits / (got_rx["done"] - got_tx["start"])


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
    print(f"namespaces, {rounds} rounds x 2 peers:")
    print(f"  zeroconf register -> found: median {zc * 1000:.0f} ms")
    print(f"  mpstore create -> peer_added: median {mine * 1000:.0f} ms (ratio {mine / zc:.2f})")


def profile(folder: str, n: int, edits: int, lat: int) -> int:
    """Run mpstore's message and store runs under py-spy; print per-thread summaries."""
    from benchmarks._procs import summarize_profile

    out = Path(folder).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"py-spy, 250 samples/s, every thread (idle excluded); {load()}")
    m_rate, _ = messages_run("mp-off", n, 100, profile=str(out))
    plain_rate, _ = messages_run("plain", n, 100)
    print(f"\n{n:,} x 100-byte messages, rate limit off: {m_rate:,.0f} msgs/s under the profiler")
    print(f"(plain TLS right after, not profiled: {plain_rate:,.0f} msgs/s)")
    for role in ("mp_tx", "mp_rx"):
        print(f"{role} ({out / role}.txt):\n{summarize_profile(str(out / role) + '.txt')}")
    s_lat, s_eps = store_run("mpstore", edits, lat, profile=str(out))
    print(f"\nstore: {s_eps:,.0f} edits/s, latency p50 {s_lat * 1e3:.2f} ms under the profiler")
    for role in ("store_tx", "store_rx"):
        print(f"{role} ({out / role}.txt):\n{summarize_profile(str(out / role) + '.txt')}")
    print(f"end: {load()}")
    return 0


def sender_cpu(n: int, repeats: int) -> int:
    """CPU time per 100-byte message of the sending process (all its threads) and of its sending
    thread, mpstore (rate limit off) and the plain TLS sender, each to a receiver process."""
    import resource

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def mp_once() -> tuple[float, float]:
        with Children() as kids:
            rx = kids.start(SCRIPT, "mp_rx", n, "off")
            dev = _device("tx", rx.read()["port"], "off")
            try:
                dev.wait_for_peers(1, timeout=60)
                msgs = [message(i) for i in range(n)]
                c0, t0 = cpu(), time.thread_time()
                for m in msgs:
                    dev.send(m)
                t1 = time.thread_time()
                rx.read(timeout=60)  # done: every message arrived
                return (cpu() - c0) / n, (t1 - t0) / n
            finally:
                dev.end_all()

    async def plain_once() -> tuple[float, float]:
        from mpstore.transports._lan._tls import TlsIdentity

        with Children() as kids:
            rx = kids.start(SCRIPT, "plain_rx", n)
            port = rx.read()["port"]
            ident = TlsIdentity()
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ident.client_context, server_hostname="mpstore"
            )
            msgs = [message(i) for i in range(n)]
            c0, t0 = cpu(), time.thread_time()
            batch: list[bytes] = []
            size = 0
            for m in msgs:  # exactly _plain_tx's loop
                body = json.dumps(m, separators=(",", ":")).encode()
                batch.append(len(body).to_bytes(4, "big"))
                batch.append(body)
                size += 4 + len(body)
                if size >= 65536:
                    writer.write(b"".join(batch))
                    batch.clear()
                    size = 0
                    await writer.drain()
            writer.write(b"".join(batch))
            await writer.drain()
            t1 = time.thread_time()
            rx.read(timeout=60)
            writer.close()
            return (cpu() - c0) / n, (t1 - t0) / n

    print(f"sender CPU per 100-byte message, {n:,} messages, {repeats} interleaved repeats; {load()}")
    mine: list[tuple[float, float]] = []
    plain: list[tuple[float, float]] = []
    for _ in range(repeats):
        mine.append(mp_once())
        plain.append(asyncio.run(plain_once()))
    for name, got in (("mpstore, max_message_rate=None", mine), ("plain asyncio TLS", plain)):
        proc = statistics.median(p for p, _ in got) * 1e6
        thread = statistics.median(t for _, t in got) * 1e6
        print(f"  {name:32} process {proc:5.2f} us   sending thread {thread:5.2f} us  (medians)")
    print(f"end: {load()}")
    return 0


def _verdict(ok: bool, repeats: int) -> str:
    if repeats < 3:
        return "(too few repeats to judge)"
    return "met (median)" if ok else "NOT met (median)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=30_000, help="100-byte messages per run")
    p.add_argument("--rounds", type=int, default=300, help="round trips per run")
    p.add_argument("--edits", type=int, default=5_000, help="store edits in the burst")
    p.add_argument("--latency-edits", type=int, default=200, help="store edits timed one by one")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="2 repeats of small runs")
    p.add_argument("--no-store", action="store_true", help="app messages only")
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="instead of the figures: run mpstore's processes (messages, rate limit off; the store "
        "latency and burst) under py-spy, keep the profiles in DIR and print where the time goes",
    )
    p.add_argument(
        "--sender-cpu",
        action="store_true",
        help="instead of the figures: CPU time per message of the sending process, mpstore vs plain TLS",
    )
    p.add_argument("--netns", action="store_true")
    p.add_argument("--netns-rounds", type=int, default=3)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = p.parse_known_args()
    if args.child:
        child(args.child, rest)
        return 0
    if args.quick:
        args.messages, args.rounds, args.edits, args.latency_edits, args.repeat = 10_000, 100, 2_000, 50, 2
    if args.profile:
        return profile(args.profile, args.messages, args.edits, args.latency_edits)
    if args.sender_cpu:
        return sender_cpu(args.messages, args.repeat)

    import mpstore

    engine = os.environ.get("MPSTORE_ENGINE", "default")
    print(
        f"Python {sys.version.split()[0]}, mpstore {mpstore.__version__}, store engine {engine}; "
        f"{args.repeat} interleaved repeats; every figure: two (or three) separate processes on 127.0.0.1"
    )
    print(f"start: {load()}")
    msg_kinds = ["plain", "mp-default", "mp-off"]
    store_kinds = [] if args.no_store else ["mpstore", "ws-off", "ws-on"]
    if store_kinds:
        try:
            import pycrdt.websocket  # noqa: F401
            import websockets  # noqa: F401
        except ImportError as exc:
            print(f"(pycrdt-websocket comparison skipped: {exc}; pip install -e '.[bench]')")
            store_kinds = ["mpstore"]
    rate = {k: Figure(k, "msg/s") for k in msg_kinds}
    rtt = {k: Figure(k, "s", higher_is_better=False) for k in msg_kinds}
    lat = {k: Figure(k, "s", higher_is_better=False) for k in store_kinds}
    eps = {k: Figure(k, "edits/s") for k in store_kinds}
    loads: list[float] = []
    lost: list[str] = []
    jobs = [("m", k) for k in msg_kinds] + [("s", k) for k in store_kinds]
    for r in range(args.repeat):
        order = jobs[r % len(jobs) :] + jobs[: r % len(jobs)]  # rotated: no config always first
        for what, kind in order:
            if what == "m":
                try:
                    m_rate, m_rtt = messages_run(kind, args.messages, args.rounds)
                except Lost as exc:
                    lost.append(f"repeat {r + 1}: {exc}")
                    print(f"LOST MESSAGES in repeat {r + 1}: {exc}", flush=True)
                    m_rate = m_rtt = float("nan")
                rate[kind].add(m_rate)
                rtt[kind].add(m_rtt)
            else:
                s_lat, s_eps = store_run(kind, args.edits, args.latency_edits)
                lat[kind].add(s_lat)
                eps[kind].add(s_eps)
        loads.append(os.getloadavg()[0])
        print(f"repeat {r + 1}/{args.repeat} done, {load()}", flush=True)
    print()
    print(f"load average (1 min) after each repeat: {', '.join(f'{x:.1f}' for x in loads)}")
    print(f"\n1. {args.messages:,} x 100-byte JSON app messages, sender process -> receiver process")
    print(f"   {'':34}{'msgs/s median [min-max]':>34}{'RTT us median [min-max]':>30}")
    names = {
        "plain": "plain asyncio TLS (baseline)",
        "mp-default": "mpstore, default max_message_rate",
        "mp-off": "mpstore, max_message_rate=None",
    }
    for k in msg_kinds:
        print(f"   {names[k]:34}{rate[k].text():>34}{rtt[k].text(1e6):>30}")
    for k in ("mp-default", "mp-off"):
        text, med = ratio_text(rate[k], rate["plain"])
        rtext, _ = ratio_text(rtt[k], rtt["plain"])
        note = "paced by the limit"
        if k == "mp-off":
            note = f"target >= 0.70x: {_verdict(med >= 0.7, args.repeat)}"
        print(f"   {names[k]} / plain: msgs/s {text} ({note}); RTT {rtext}")
    if store_kinds:
        print(
            f"\n2. replicated store, {args.edits:,}-edit burst of distinct keys; "
            f"one-way edit latency p50 over {args.latency_edits} acknowledged edits"
        )
        print(f"   {'':40}{'edits/s median [min-max]':>30}{'latency p50 ms [min-max]':>30}")
        snames = {
            "mpstore": "mpstore (2 processes, defaults)",
            "ws-off": "pycrdt-websocket, compression off",
            "ws-on": "pycrdt-websocket, compression on",
        }
        for k in store_kinds:
            print(f"   {snames[k]:40}{eps[k].text():>30}{lat[k].text(1e3, ',.2f'):>30}")
        for k in store_kinds[1:]:
            etext, emed = ratio_text(eps["mpstore"], eps[k])
            ltext, lmed = ratio_text(lat["mpstore"], lat[k])
            tgt = k == "ws-off"
            e_note = f" (target >= 15x: {_verdict(emed >= 15, args.repeat)})" if tgt else ""
            l_note = f" (target <= 0.6x: {_verdict(lmed <= 0.6, args.repeat)})" if tgt else ""
            print(f"   mpstore / {snames[k]}: edits/s {etext}{e_note}; latency p50 {ltext}{l_note}")
    if lost:
        print(f"\nruns where messages whose send() returned never arrived ({len(lost)}):")
        for line in lost:
            print(f"  {line}")
    print(f"\nend: {load()}")
    if args.netns:
        netns_figures(args.netns_rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
