"""Benchmark of the replicated store against pycrdt used directly, measured in the same run.

    python benchmarks/store.py [--keys 100000] [--sets 20000]

Figures: local sets/s, replicated sets/s between two peers, late-joiner snapshot time for
``--keys`` keys, memory per key. Each ratio is mpstore / pycrdt (for rates: the fraction of
pycrdt's rate; for times and memory: how many times pycrdt's). pycrdt is measured directly: one
Doc, or two Docs with each update applied to the other at once (no network). mpstore is
measured twice: through MultipeerConnectivity on a MemoryNetwork (the real core: a thread hop
per write, session framing, the in-memory transport), and over the tests' fake core (store
layers only: inline core, messages pumped by hand).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "store")]


def _rate(n: int, fn: Callable[[], None]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def _seconds(fn: Callable[[], None]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- pycrdt directly ---------------------------------------------------------------------------


def pycrdt_local(n: int) -> float:
    from pycrdt import Doc, Map

    doc: Any = Doc()
    m: Any = doc.get("mpstore", type=Map)

    def run() -> None:
        for i in range(n):
            m[f"k{i}"] = "1"

    return _rate(n, run)


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

    return _rate(n, run)


def pycrdt_snapshot(keys: int) -> float:
    from pycrdt import Doc, Map

    a: Any = Doc()
    ma: Any = a.get("mpstore", type=Map)
    with a.transaction():
        for i in range(keys):
            ma[f"key{i}"] = str(i)

    def run() -> None:
        b: Any = Doc()
        mb: Any = b.get("mpstore", type=Map)
        b.apply_update(a.get_update())
        assert len(dict(mb)) == keys

    return _seconds(run)


def pycrdt_memory(keys: int) -> None:
    from pycrdt import Doc, Map

    before = _rss()
    a: Any = Doc()
    ma: Any = a.get("mpstore", type=Map)
    with a.transaction():
        for i in range(keys):
            ma[f"key{i}"] = str(i)
    print(json.dumps((_rss() - before) / keys))


# -- mpstore -------------------------------------------------------------------------------------


def mpstore_local(n: int) -> float:
    from store_fakes import FakeNet

    net = FakeNet()
    s = net.add("A").store()

    def run() -> None:
        for i in range(n):
            s[f"k{i}"] = 1

    return _rate(n, run)


def mpstore_replicated(n: int) -> float:
    from store_fakes import FakeNet

    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    net.connect(a, b)
    net.pump()
    sa, sb = a.store(), b.store()

    def run() -> None:
        for i in range(n):
            sa[f"k{i}"] = 1
            net.step()
        net.pump()
        assert len(sb) == n

    return _rate(n, run)


def mpstore_snapshot(keys: int) -> float:
    from store_fakes import FakeNet

    net = FakeNet()
    a, b = net.add("A"), net.add("B")
    a.store().update({f"key{i}": i for i in range(keys)})
    sb = b.store()

    def run() -> None:
        net.connect(a, b)
        net.pump()
        assert len(sb) == keys

    return _seconds(run)


def mpstore_memory(keys: int) -> None:
    from store_fakes import FakeNet

    net = FakeNet()
    node = net.add("A")
    node.store()["warm"] = 0
    before = _rss()
    node.store().update({f"key{i}": i for i in range(keys)})
    print(json.dumps((_rss() - before) / keys))


def _quiet_device(name: str, net: Any) -> Any:
    import mpstore

    class Device(mpstore.MultipeerConnectivity):
        def peer_added(self, peer: Any) -> None:
            pass

        def peer_removed(self, peer: Any) -> None:
            pass

    return Device(name, "bench", transport=net)


def memnet_local(n: int) -> float:
    import mpstore

    a = _quiet_device("A", mpstore.MemoryNetwork())
    try:
        s = a.shared_dict("s")

        def run() -> None:
            for i in range(n):
                s[f"k{i}"] = 1

        return _rate(n, run)
    finally:
        a.end_all()


def memnet_replicated(n: int) -> float:
    import mpstore

    net = mpstore.MemoryNetwork()
    a, b = _quiet_device("A", net), _quiet_device("B", net)
    try:
        a.wait_for_peers(1, timeout=10)
        sa, sb = a.shared_dict("s"), b.shared_dict("s")

        def run() -> None:
            for i in range(n):
                sa[f"k{i}"] = 1
            sb.wait_for(lambda s: len(s) == n, timeout=120)

        return _rate(n, run)
    finally:
        a.end_all()
        b.end_all()


def memnet_snapshot(keys: int) -> float:
    import mpstore

    net = mpstore.MemoryNetwork()
    a = _quiet_device("A", net)
    b: Any = None
    try:
        a.shared_dict("s").update({f"key{i}": i for i in range(keys)})
        a.shared_dict("s").setdefault("key0")  # synchronous: the update above is applied by now

        def run() -> None:
            nonlocal b
            b = _quiet_device("B", net)
            b.shared_dict("s").wait_for(lambda s: len(s) == keys, timeout=120)

        return _seconds(run)
    finally:
        a.end_all()
        if b is not None:
            b.end_all()


def _rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _in_subprocess(fn: str, keys: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", fn, "--keys", str(keys)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--sets", type=int, default=20_000)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        {"pycrdt_memory": pycrdt_memory, "mpstore_memory": mpstore_memory}[args.child](args.keys)
        return 0

    import pycrdt

    from mpstore.engines import load_engine

    print(
        f"python {sys.version.split()[0]}, pycrdt {pycrdt.__version__}, {os.cpu_count()} cpus; "
        f"mpstore's engine: {load_engine().name} (MPSTORE_ENGINE picks it)"
    )
    rows = []
    base = pycrdt_local(args.sets)
    for label, fn in (("memory network", memnet_local), ("fake core", mpstore_local)):
        ours = fn(args.sets)
        rows.append((f"local sets/s, {label}", base, ours, ours / base, "x pycrdt's rate"))
    base = pycrdt_replicated(args.sets)
    for label, fn in (("memory network", memnet_replicated), ("fake core", mpstore_replicated)):
        ours = fn(args.sets)
        rows.append((f"replicated sets/s, {label}", base, ours, ours / base, "x pycrdt's rate"))
    base = pycrdt_snapshot(args.keys)
    for label, fn in (("memory network", memnet_snapshot), ("fake core", mpstore_snapshot)):
        ours = fn(args.keys)
        name = f"late joiner, {args.keys} keys (s), {label}"
        rows.append((name, base, ours, ours / base, "x pycrdt's time"))
    base = _in_subprocess("pycrdt_memory", args.keys)
    ours = _in_subprocess("mpstore_memory", args.keys)
    rows.append(("memory per key (bytes of RSS)", base, ours, ours / base, "x pycrdt's"))
    print(f"{'figure':48} {'pycrdt':>12} {'mpstore':>12} {'ratio':>8}")
    for name, b, o, r, unit in rows:
        print(f"{name:48} {b:12,.2f} {o:12,.2f} {r:8.3f}  {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
