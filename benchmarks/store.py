"""The replicated store against pycrdt used directly, measured in the same run, repeats interleaved.

    python benchmarks/store.py                  # core figures, 5 interleaved repeats
    python benchmarks/store.py --scaling        # + cost per edit with 2/4/8/16 peers
    python benchmarks/store.py --joiners        # + late joiners of 1k..1M keys (separate processes)
    python benchmarks/store.py --quick          # 2 repeats, small sizes (for development)

Every figure is printed as the median of the repeats with [min-max]; mpstore and its baseline
run alternately in each repeat, and each ratio is the median of the per-repeat ratios. The load
average is printed before and after. mpstore is driven only through its public API
(``MultipeerConnectivity``, ``shared_dict``, ``flush``, ``wait_for``).

Figures (issue 11's targets in brackets):

1. local sets/s: ``d[k] = v`` in a loop, the clock stopped after ``d.flush()`` (a barrier: every
   write is applied). Baseline: pycrdt ``Map`` sets, one transaction each, with the update bytes
   produced (a transaction observer taking ``event.update``), as the store must. [>= 0.5x]
2. replicated sets/s, 2 peers on the memory network: the clock stops when the other replica has
   every key (``wait_for``). Baseline: two pycrdt Docs, each update applied to the other at once
   (no network, no copies: a ceiling, not a peer). [>= 50,000/s]
3. late joiner of --keys keys on the memory network: time from creating the joiner to it holding
   every key. Two baselines, both named: (A) pycrdt encode + apply; (B) encode + apply + read
   every value (``Map.to_py()``), which is what a joiner must do to show the data. The goal is
   stated against (B). [<= 1.5x (B)]
4. memory per key: RSS growth per key in a fresh process, pycrdt Doc vs a store. [<= 1.5x]
5. --scaling: one writer, N peers (2, 4, 8, 16): edits/s until every replica holds every edit,
   and (edits/s x peers) relative to 2 peers [>= 0.8 at 8]. Memory network (all peers in this
   process, sharing the CPU: the ideal is linear total work), in a full mesh and in a line
   (partial mesh: edits relayed); and LAN processes on loopback (one process per peer, TLS, full
   mesh).
6. --joiners: 1k, 10k, 100k, 1M keys (--max-keys): a joiner process over the LAN on loopback;
   its time and peak RSS, next to a pycrdt process doing encode + apply + read of the same data;
   whether any link dropped while the snapshot moved. [1M: joiner peak RSS < 2 GB]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._procs import free_ports  # noqa: E402


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min), {os.cpu_count()} cpus"


def _peak_rss() -> int:
    """This process's peak RSS (VmHWM; ru_maxrss would report the parent's after fork+exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _timed(fn: Callable[[], None]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class _Row:
    """One figure: per-repeat values of mpstore and its baseline."""

    def __init__(self, name: str, unit: str, higher_is_better: bool, baseline: str) -> None:
        self.name, self.unit, self.higher, self.baseline = name, unit, higher_is_better, baseline
        self.ours: list[float] = []
        self.base: list[float] = []

    def add(self, ours: float, base: float | None = None) -> None:
        self.ours.append(ours)
        if base is not None:
            self.base.append(base)

    def line(self) -> str:
        def fmt(xs: list[float]) -> str:
            if not xs:
                return "-"
            return f"{statistics.median(xs):,.3g} [{min(xs):,.3g}-{max(xs):,.3g}]"

        ratio = ""
        if self.base:
            ratios = [o / b for o, b in zip(self.ours, self.base, strict=True)]
            ratio = f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        return f"{self.name:44} {fmt(self.ours):>30} {fmt(self.base):>30} {ratio:>20}  {self.unit}"


def _print(rows: list[_Row]) -> None:
    print(f"{'figure':44} {'mpstore median [min-max]':>30} {'baseline':>30} {'ratio':>20}")
    for row in rows:
        print(row.line())
        if row.base:
            print(f"{'':44}   baseline: {row.baseline}")


# -- pycrdt directly ---------------------------------------------------------------------------


def pycrdt_local(n: int) -> float:
    from pycrdt import Doc, Map

    doc: Any = Doc()
    m: Any = doc.get("mpstore", type=Map)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))

    def run() -> None:
        for i in range(n):
            with doc.transaction():
                m[f"k{i}"] = "1"

    rate = n / _timed(run)
    assert len(updates) == n
    return rate


def pycrdt_replicated(n: int) -> float:
    from pycrdt import Doc, Map

    a: Any = Doc()
    b: Any = Doc()
    ma: Any = a.get("mpstore", type=Map)
    mb: Any = b.get("mpstore", type=Map)
    a.observe(lambda event: b.apply_update(event.update))

    def run() -> None:
        for i in range(n):
            ma[f"k{i}"] = "1"
        assert len(mb) == n

    return n / _timed(run)


def _pycrdt_source(keys: int) -> Any:
    from pycrdt import Doc, Map

    a: Any = Doc()
    ma: Any = a.get("mpstore", type=Map)
    with a.transaction():
        for i in range(keys):
            ma[f"key{i}"] = str(i)
    return a


def pycrdt_join(source: Any, keys: int, read: bool) -> float:
    from pycrdt import Doc, Map

    def run() -> None:
        b: Any = Doc()
        mb: Any = b.get("mpstore", type=Map)
        b.apply_update(source.get_update())
        if read:
            assert len(mb.to_py()) == keys

    return _timed(run)


# -- mpstore through the public API ----------------------------------------------------------------


def _device(name: str, transport: Any, **kwargs: Any) -> Any:
    import mpstore

    class Device(mpstore.MultipeerConnectivity):
        def peer_added(self, peer: Any) -> None:
            pass

        def peer_removed(self, peer: Any) -> None:
            self.dropped = getattr(self, "dropped", 0) + 1

    return Device(name, "bench", transport=transport, **kwargs)


def mpstore_local(n: int) -> float:
    import mpstore

    a = _device("A", mpstore.MemoryNetwork())
    try:
        s = a.shared_dict("s")

        def run() -> None:
            for i in range(n):
                s[f"k{i}"] = 1
            s.flush()  # barrier: every write applied

        return n / _timed(run)
    finally:
        a.end_all()


def mpstore_replicated(n: int) -> float:
    import mpstore

    net = mpstore.MemoryNetwork()
    a, b = _device("A", net), _device("B", net)
    try:
        a.wait_for_peers(1, timeout=10)
        b.wait_for_peers(1, timeout=10)
        sa, sb = a.shared_dict("s"), b.shared_dict("s")

        def run() -> None:
            for i in range(n):
                sa[f"k{i}"] = 1
            sb.wait_for(lambda s: len(s) == n, timeout=300)

        return n / _timed(run)
    finally:
        a.end_all()
        b.end_all()


def mpstore_join(keys: int) -> float:
    import mpstore

    net = mpstore.MemoryNetwork()
    a = _device("A", net)
    b: Any = None
    try:
        s = a.shared_dict("s")
        s.update({f"key{i}": str(i) for i in range(keys)})
        s.flush()

        def run() -> None:
            nonlocal b
            b = _device("B", net)
            b.shared_dict("s").wait_for(lambda d: len(d) == keys, timeout=600)

        return _timed(run)
    finally:
        a.end_all()
        if b is not None:
            b.end_all()


def _child_memory(kind: str, keys: int) -> None:
    if kind == "pycrdt":
        from pycrdt import Doc, Map

        before = _rss()
        a: Any = Doc()
        ma: Any = a.get("mpstore", type=Map)
        with a.transaction():
            for i in range(keys):
                ma[f"key{i}"] = str(i)
        print(json.dumps((_rss() - before) / keys))
        return
    import mpstore

    node = _device("A", mpstore.MemoryNetwork())
    s = node.shared_dict("s")
    s["warm"] = "0"
    s.flush()
    before = _rss()
    for start in range(0, keys, 10_000):  # as an app fills a store: many writes, not one dict
        s.update({f"key{i}": str(i) for i in range(start, min(keys, start + 10_000))})
    s.flush()
    print(json.dumps((_rss() - before) / keys))
    os._exit(0)  # the number is out; skip the teardown


def _run_child(*args: str, timeout: float = 900) -> Any:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- scaling: one writer, N peers ----------------------------------------------------------------


def memory_scaling(peers: int, edits: int, line: bool) -> float:
    """Edits/s until every replica holds every edit (one writer), on the memory network."""
    import mpstore

    net = mpstore.MemoryNetwork()
    devs = [_device(f"P{i}", net, max_peers=max(8, peers), peer_timeout=30.0) for i in range(peers)]
    try:
        for d in devs:
            d.wait_for_peers(peers - 1, timeout=120)
        if line:  # a line: each peer reaches only its neighbours, so edits are relayed
            groups = [[devs[i], devs[i + 1]] for i in range(peers - 1)]
            _line(net, devs, groups)
        stores = [d.shared_dict("s") for d in devs]
        stores[0]["warm"] = 0
        for s in stores:
            s.wait_for(lambda s: "warm" in s, timeout=60)

        def run() -> None:
            w = stores[0]
            for i in range(edits):
                w[f"k{i}"] = i
            for s in stores[1:]:
                s.wait_for(lambda s: len(s) == edits + 1, timeout=600)

        return edits / _timed(run)
    finally:
        for d in devs:
            d.end_all()


def _line(net: Any, devs: list[Any], groups: list[list[Any]]) -> None:
    """Cut every link except those between neighbours in the list (refuse the others)."""
    names = [d.my_peer.display_name for d in devs]
    for i, d in enumerate(devs):
        allowed = {names[j] for j in (i - 1, i + 1) if 0 <= j < len(devs)}
        d.accept_peer = lambda peer, allowed=allowed: peer.display_name in allowed
    for d in devs:
        d.disconnect()
    for d in devs:
        d.start_looking_for_peers()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(len(d.get_peers()) == (1 if i in (0, len(devs) - 1) else 2) for i, d in enumerate(devs)):
            return
        time.sleep(0.05)
    raise RuntimeError("the line did not form")


def _lan_peer(index: int, ports: list[int], edits: int, writer: bool, ready_file: str) -> None:
    """A LAN peer process: full mesh with the others; prints when it holds every edit."""
    from mpstore.transports.lan import LanTransport

    others = [("127.0.0.1", p) for j, p in enumerate(ports) if j != index]
    transport = LanTransport(
        host="127.0.0.1", port=ports[index], peers=others, discovery=False, ip_version="v4"
    )
    d = _device(f"P{index}", transport, max_peers=max(8, len(ports)), peer_timeout=30.0)
    d.wait_for_peers(len(ports) - 1, timeout=180)
    s = d.shared_dict("s")
    with open(ready_file, "a") as f:
        f.write(f"{index}\n")
    if writer:
        while True:  # wait until everyone is connected to everyone
            with open(ready_file) as f:
                if len(f.read().split()) == len(ports):
                    break
            time.sleep(0.05)
        time.sleep(0.5)
        start = time.monotonic()
        for i in range(edits):
            s[f"k{i}"] = i
        s.flush()
        print(json.dumps({"start": start}), flush=True)
    else:
        s.wait_for(lambda s: len(s) == edits, timeout=600)
        print(json.dumps({"done": time.monotonic()}), flush=True)
    time.sleep(1.0)  # let the others finish before goodbyes
    d.end_all()


def lan_scaling(peers: int, edits: int) -> float:
    import tempfile

    ports = free_ports(peers)
    with tempfile.NamedTemporaryFile(delete=False) as tmp:
        ready = tmp.name
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                "lan_peer",
                str(i),
                ",".join(map(str, ports)),
                str(edits),
                "1" if i == 0 else "0",
                ready,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for i in range(peers)
    ]
    try:
        outs = [json.loads(p.communicate(timeout=900)[0].strip().splitlines()[-1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        os.unlink(ready)
    start = outs[0]["start"]
    done = max(o["done"] for o in outs[1:])
    return float(edits / (done - start))


# -- late joiners over the LAN, separate processes --------------------------------------------------


def _joiner(port: int, keys: int) -> None:
    from mpstore.transports.lan import LanTransport

    start = time.monotonic()
    transport = LanTransport(host="127.0.0.1", peers=[("127.0.0.1", port)], discovery=False, ip_version="v4")
    d = _device("joiner", transport)
    d.dropped = 0
    s = d.shared_dict("s")
    s.wait_for(lambda s: len(s) == keys, timeout=1800)
    took = time.monotonic() - start
    peak = _peak_rss()
    print(json.dumps({"seconds": took, "peak_rss": peak, "dropped": d.dropped}), flush=True)
    sys.stdin.read()  # the source reads its own drop count, then closes our stdin
    os._exit(0)


def _pycrdt_joiner_child(keys: int, path: str | None = None) -> None:
    """pycrdt encode + apply + read in a fresh process (the update comes from a file, so the
    peak RSS is the joiner's alone)."""
    if path is None:
        update = _pycrdt_source(keys).get_update()
    else:
        start = time.perf_counter()
        with open(path, "rb") as f:
            update = f.read()
    gc.collect()
    from pycrdt import Doc, Map

    start = time.perf_counter()
    b: Any = Doc()
    mb: Any = b.get("mpstore", type=Map)
    b.apply_update(update)
    assert len(mb.to_py()) == keys
    took = time.perf_counter() - start
    print(json.dumps({"seconds": took, "peak_rss": _peak_rss()}), flush=True)


def pycrdt_joiner(keys: int) -> dict[str, Any]:
    """The baseline joiner: encode here (timed), apply + read in a fresh process (timed there)."""
    import tempfile

    source = _pycrdt_source(keys)
    start = time.perf_counter()
    update = source.get_update()
    encode = time.perf_counter() - start
    del source
    with tempfile.NamedTemporaryFile(delete=False) as tmp:
        tmp.write(update)
    del update
    try:
        out: dict[str, Any] = _run_child("pycrdt_joiner", str(keys), tmp.name, timeout=1800)
    finally:
        os.unlink(tmp.name)
    out["seconds"] += encode
    return out


def lan_joiner(keys: int) -> dict[str, Any]:
    from mpstore.transports.lan import LanTransport

    (port,) = free_ports(1)
    transport = LanTransport(host="127.0.0.1", port=port, discovery=False, ip_version="v4")
    src = _device("source", transport)
    src.dropped = 0
    try:
        s = src.shared_dict("s")
        for start in range(0, keys, 100_000):
            s.update({f"key{i}": str(i) for i in range(start, min(keys, start + 100_000))})
        s.flush()
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", "joiner", str(port), str(keys)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            out: dict[str, Any] = json.loads(child.stdout.readline())
            out["source_dropped"] = src.dropped  # read while the joiner is still connected
            child.stdin.close()
            child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
        return out
    finally:
        src.end_all()


# -- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sets", type=int, default=20_000)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--edits", type=int, default=5_000, help="edits per scaling run")
    p.add_argument("--scaling", action="store_true")
    p.add_argument("--lan-peers", default="2,4,8,16")
    p.add_argument("--joiners", action="store_true")
    p.add_argument("--max-keys", type=int, default=1_000_000)
    p.add_argument("--min-keys", type=int, default=1_000, help="first --joiners size (x10 up to --max-keys)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--skip-core", action="store_true", help="skip figures 1-4")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "memory":
            _child_memory(rest[0], int(rest[1]))
        elif kind == "lan_peer":
            _lan_peer(
                int(rest[0]), [int(x) for x in rest[1].split(",")], int(rest[2]), rest[3] == "1", rest[4]
            )
        elif kind == "joiner":
            _joiner(int(rest[0]), int(rest[1]))
        elif kind == "pycrdt_joiner":
            _pycrdt_joiner_child(int(rest[0]), rest[1] if len(rest) > 1 else None)
        return 0
    if args.quick:
        args.repeats, args.sets, args.keys, args.edits = 2, 5_000, 20_000, 1_000

    import pycrdt

    from mpstore.engines import load_engine

    print(
        f"python {sys.version.split()[0]}, pycrdt {pycrdt.__version__}, "
        f"mpstore's engine: {load_engine().name} (MPSTORE_ENGINE picks it)"
    )
    print("before:", _load())
    local = _Row(
        "local sets/s (after flush barrier)",
        "sets/s",
        True,
        "pycrdt Map set, one transaction each, update bytes produced",
    )
    repl = _Row(
        "replicated sets/s, 2 peers, memory",
        "sets/s",
        True,
        "two pycrdt Docs, updates applied directly (a ceiling)",
    )
    join_a = _Row(f"late joiner {args.keys:,} keys vs (A)", "s", False, "(A) pycrdt encode + apply")
    join_b = _Row(
        f"late joiner {args.keys:,} keys vs (B)",
        "s",
        False,
        "(B) pycrdt encode + apply + read every value (the goal's baseline)",
    )
    mem = _Row(f"memory per key ({args.keys:,} keys)", "bytes of RSS", False, "pycrdt Doc")
    source = _pycrdt_source(args.keys) if not args.skip_core else None
    for _ in range(0 if args.skip_core else args.repeats):
        local.add(mpstore_local(args.sets), pycrdt_local(args.sets))
        repl.add(mpstore_replicated(args.sets), pycrdt_replicated(args.sets))
        ours = mpstore_join(args.keys)
        join_a.add(ours, pycrdt_join(source, args.keys, read=False))
        join_b.add(ours, pycrdt_join(source, args.keys, read=True))
    del source
    for _ in range(0 if args.skip_core else min(3, args.repeats)):
        mem.add(
            _run_child("memory", "mpstore", str(args.keys)), _run_child("memory", "pycrdt", str(args.keys))
        )
    _print([local, repl, join_a, join_b, mem])
    print("after:", _load())

    if args.scaling:
        print()
        print(f"scaling: one writer, {args.edits:,} edits, edits/s until every replica has them all")
        print(
            f"{'setting':34} {'peers':>5} {'edits/s median [min-max]':>30} {'x peers':>10} {'vs 2 peers':>10}"
        )
        settings: list[tuple[str, list[int], Callable[[int], float]]] = [
            ("memory, full mesh", [2, 4, 8, 16], lambda n: memory_scaling(n, args.edits, line=False)),
            (
                "memory, line (partial mesh)",
                [2, 4, 8, 16],
                lambda n: memory_scaling(n, args.edits, line=True),
            ),
            (
                "LAN processes, full mesh",
                [int(x) for x in args.lan_peers.split(",")],
                lambda n: lan_scaling(n, args.edits),
            ),
        ]
        for label, counts, fn in settings:
            first: float | None = None
            for n in counts:
                rates = [fn(n) for _ in range(max(1, min(3, args.repeats)))]
                med = statistics.median(rates)
                total = med * n
                first = total if first is None else first
                print(
                    f"{label:34} {n:5} {med:>14,.0f} [{min(rates):,.0f}-{max(rates):,.0f}] "
                    f"{total:10,.0f} {total / first:10.2f}"
                )
        print("after scaling:", _load())

    if args.joiners:
        print()
        print("late joiner over the LAN (separate processes): seconds and the joiner's peak RSS")
        print(
            f"{'keys':>9} {'mpstore s':>10} {'peak RSS':>10} {'links dropped':>14} "
            f"{'pycrdt e+a+r s':>15} {'pycrdt peak RSS':>16} {'time ratio':>10}"
        )
        keys = args.min_keys
        while keys <= args.max_keys:
            joined = lan_joiner(keys)
            base = pycrdt_joiner(keys)
            print(
                f"{keys:9,} {joined['seconds']:10.2f} {joined['peak_rss'] / 1e6:9,.0f}M "
                f"{joined['dropped'] + joined['source_dropped']:14} {base['seconds']:15.2f} "
                f"{base['peak_rss'] / 1e6:15,.0f}M {joined['seconds'] / base['seconds']:10.1f}"
            )
            keys *= 10
        print("after joiners:", _load())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
