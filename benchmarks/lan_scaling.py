"""LAN scaling curves: peers as separate processes, and message sizes, on loopback.

    python benchmarks/lan_scaling.py              # both curves, 3 interleaved repeats (~5 min loaded)
    python benchmarks/lan_scaling.py --quick      # small and fast, for development
    python benchmarks/lan_scaling.py --peers-only | --sizes-only

1. Peers 2, 4, 8, 16, each its own OS process with a LanTransport on 127.0.0.1 (TLS 1.3, static
   addresses, no multicast; device k dials the devices started before it, so they form a full
   mesh), defaults otherwise (``max_peers`` raised to the count). One writer writes ``--edits``
   distinct keys to one store; edits/s is from its first write to the moment the last replica's
   observer has seen every key (one machine-wide monotonic clock). "x peers" is edits/s times
   the number of peers (the delivery work done per second: on 2 shared cores the ideal is that
   this stays flat), and "vs 2" its ratio to 2 peers.
2. Message sizes 100 B to 16 MiB, two processes (sender -> receiver), app messages whose JSON is
   exactly that size (a dict at 100 B, a string above): mpstore with ``max_message_rate=None``
   (the default 5,000/s caps small messages: see ``lan.py``) against the plain asyncio TLS
   baseline of ``lan.py`` (length-prefixed frames, batched writes, buffered reads). msgs/s and
   MB/s (10**6 bytes of JSON per second).

Repeats are interleaved (configurations rotated each repeat); medians with [min-max]; load printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._procs import Children, Figure, free_ports, load, now, ratio_text, say  # noqa: E402

SCRIPT = str(Path(__file__).resolve())
SIZES = (100, 1024, 16 * 1024, 256 * 1024, 1024 * 1024, 16 * 1024 * 1024)


def _size_name(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size // (1024 * 1024)} MiB"
    if size >= 1024:
        return f"{size // 1024} KiB"
    return f"{size} B"


# -- child: one peer of the mesh ----------------------------------------------------------------------


def _peer(index: int, ports: list[int], edits: int) -> None:
    import mpstore
    from mpstore.transports.lan import LanTransport

    class Device(mpstore.MultipeerConnectivity):
        def peer_added(self, peer: Any) -> None:
            pass

        def peer_removed(self, peer: Any) -> None:
            pass

        def receive(self, message: Any, from_peer: Any) -> None:
            pass

    n = len(ports)
    dial = [("127.0.0.1", p) for p in ports[:index]]
    transport = LanTransport(
        host="127.0.0.1", port=ports[index], peers=dial, discovery=False, ip_version="v4"
    )
    dev = Device(f"P{index}", "bench", transport=transport, max_peers=max(8, n), peer_timeout=30.0)
    d = dev.shared_dict("scale")
    count = [0]
    lock = threading.Lock()

    def on_change(change: Any) -> None:
        t = now()
        with lock:
            count[0] += len(change.changes)
            if count[0] == edits:
                say(done=t)

    sub = d.observe(on_change) if index else None
    say(port=ports[index])
    dev.wait_for_peers(n - 1, timeout=300)
    say(ready=True)
    sys.stdin.readline()  # go (every peer is connected to every other)
    if index == 0:
        t0 = now()
        for i in range(edits):
            d[f"k{i}"] = i
        say(start=t0)
    sys.stdin.readline()  # end
    if sub is not None:
        sub.cancel()
    dev.end_all()


def peers_run(n: int, edits: int) -> float:
    """Edits/s seen on all n replicas (n processes, full mesh, one writer)."""
    ports = free_ports(n)
    with Children() as kids:
        procs = []
        for i in range(n):
            procs.append(kids.start(SCRIPT, "peer", i, ",".join(map(str, ports)), edits))
            procs[-1].read(timeout=120)  # listening before the next dials it
        for p in procs:
            p.read(timeout=300)  # ready: all n-1 peers connected
        time.sleep(0.5)  # let the stores' sync handshakes settle
        for p in procs:
            p.tell(cmd="go")
        start = procs[0].read(timeout=600)["start"]
        done = max(p.read(timeout=600)["done"] for p in procs[1:])
        for p in procs:
            p.tell(cmd="end")
    return edits / (done - start)


def _count(size: int, volume: int, most: int) -> int:
    return max(4, min(most, volume // size))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", default="2,4,8,16")
    p.add_argument("--edits", type=int, default=5_000)
    p.add_argument("--volume", type=int, default=64 * 1024 * 1024, help="bytes per size per run (max)")
    p.add_argument("--messages", type=int, default=30_000, help="most messages per size per run")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--peers-only", action="store_true")
    p.add_argument("--sizes-only", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = p.parse_known_args()
    if args.child:
        if args.child != "peer":
            raise SystemExit(f"unknown role {args.child}")
        _peer(int(rest[0]), [int(x) for x in rest[1].split(",")], int(rest[2]))
        return 0
    if args.quick:
        args.peers, args.edits, args.volume, args.messages, args.repeat = "2,4,8", 2_000, 16 << 20, 10_000, 1
    peer_counts = [int(x) for x in args.peers.split(",")]
    from benchmarks.lan import messages_run

    print(f"Python {sys.version.split()[0]}, store engine {os.environ.get('MPSTORE_ENGINE', 'default')}")
    print(f"start: {load()}; {args.repeat} interleaved repeats")
    scale = {n: Figure(f"{n} peers", "edits/s") for n in peer_counts}
    sizes = {(k, s): Figure(f"{k} {s}", "msg/s") for k in ("plain", "mp-off") for s in SIZES}
    loads = []
    for r in range(args.repeat):
        if not args.sizes_only:
            order = peer_counts[r % len(peer_counts) :] + peer_counts[: r % len(peer_counts)]
            for n in order:
                scale[n].add(peers_run(n, args.edits))
                print(f"  repeat {r + 1}: {n} peers done, {load()}", flush=True)
        if not args.peers_only:
            jobs = [(k, s) for s in SIZES for k in ("plain", "mp-off")]
            if r % 2:
                jobs.reverse()
            for kind, size in jobs:
                count = _count(size, args.volume, args.messages)
                sizes[kind, size].add(messages_run(kind, count, 0, size)[0])
            print(f"  repeat {r + 1}: sizes done, {load()}", flush=True)
        loads.append(os.getloadavg()[0])
    print(f"\nload average (1 min) after each repeat: {', '.join(f'{x:.1f}' for x in loads)}")
    if not args.sizes_only:
        base = scale[peer_counts[0]]
        print(f"\n1. one writer, {args.edits:,} distinct-key edits, every peer its own process, full mesh")
        print(f"   {'peers':>5}{'edits/s on all replicas':>36}{'x peers':>12}{'vs 2 peers':>24}")
        for n in peer_counts:
            work = Figure("", "")
            work.values = [v * n for v in scale[n].values]
            two = Figure("", "")
            two.values = [v * peer_counts[0] for v in base.values]
            text, _ = ratio_text(work, two)
            print(f"   {n:>5}{scale[n].text():>36}{work.median:>12,.0f}{text:>24}")
    if not args.peers_only:
        print("\n2. app messages by size, sender -> receiver process (mpstore: max_message_rate=None)")
        print(
            f"   {'size':>7}{'msgs':>7}{'plain TLS msgs/s':>28}{'mpstore msgs/s':>28}"
            f"{'plain MB/s':>12}{'mpstore MB/s':>14}{'mpstore / plain':>22}"
        )
        for size in SIZES:
            pl, mp = sizes["plain", size], sizes["mp-off", size]
            text, _ = ratio_text(mp, pl)
            fmt = ",.0f" if size < 1 << 20 else ",.1f"
            print(
                f"   {_size_name(size):>7}{_count(size, args.volume, args.messages):>7}"
                f"{pl.text(fmt=fmt):>28}{mp.text(fmt=fmt):>28}"
                f"{pl.median * size / 1e6:>12,.1f}{mp.median * size / 1e6:>14,.1f}{text:>22}"
            )
    print(f"\nend: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
