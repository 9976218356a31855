"""Pure-Python engine vs pycrdt, measured in the same run; prints figures and ratios.

    python benchmarks/engines.py [--keys 100000] [--ops 20000] [--profile]

Local sets/s (one key per transaction, the v1 update produced), applied updates/s (single-key
updates from another replica), a snapshot of ``--keys`` keys encoded and applied, and memory per
key (resident-set growth in a fresh child process for both engines; tracemalloc for the pure one).
Not a timed test: figures vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mpstore.engines._python import PythonDoc


class _PycrdtDoc:
    """What the store needs from pycrdt: a transaction's update, apply, full state."""

    def __init__(self) -> None:
        import pycrdt

        self.doc: Any = pycrdt.Doc()
        self.map: Any = self.doc.get("mpstore", type=pycrdt.Map)
        self._updates: list[bytes] = []
        self._sub = self.doc.observe(lambda e: self._updates.append(e.update))

    def transact(self, sets: dict[str, str], deletes: list[str]) -> bytes:
        with self.doc.transaction():
            for k in deletes:
                if k in self.map:
                    del self.map[k]
            for k, v in sets.items():
                self.map[k] = v
        out = b"".join(self._updates)
        self._updates.clear()
        return out

    def apply_update(self, update: bytes) -> None:
        self.doc.apply_update(update)

    def encode_diff(self, sv: bytes) -> bytes:
        return bytes(self.doc.get_update(sv))

    def count(self) -> int:
        return len(self.map)


def _new(engine: str) -> Any:
    return PythonDoc() if engine == "python" else _PycrdtDoc()


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _build(engine: str, keys: int, batch: int = 1000) -> Any:
    doc = _new(engine)
    for i in range(0, keys, batch):
        doc.transact({f"key-{j:06d}": f'"value {j}"' for j in range(i, min(keys, i + batch))}, [])
    return doc


def measure(engine: str, ops: int, keys: int) -> dict[str, float]:
    """All time figures for one engine."""
    out: dict[str, float] = {}
    doc = _new(engine)
    key_names = [f"k{i % 1000}" for i in range(ops)]
    out["local sets/s"] = ops / _timed(lambda: [doc.transact({k: "v"}, []) for k in key_names])
    src = _new(engine)
    updates = [src.transact({k: f"v{i}"}, []) for i, k in enumerate(key_names)]
    dst = _new(engine)
    out["applied updates/s"] = ops / _timed(lambda: [dst.apply_update(u) for u in updates])
    big = _build(engine, keys)
    snap: list[bytes] = []
    out["snapshot encode s"] = _timed(lambda: snap.append(big.encode_diff(b"\x00")))
    out["snapshot bytes"] = float(len(snap[0]))
    fresh = _new(engine)
    out["snapshot apply s"] = _timed(lambda: fresh.apply_update(snap[0]))
    return out


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(engine: str, keys: int) -> None:
    """Run in a child: print resident bytes per key after applying a snapshot of ``keys`` keys."""
    snap = _build(engine, keys).encode_diff(b"\x00")
    gc.collect()
    before = _rss()
    doc = _new(engine)
    doc.apply_update(snap)
    gc.collect()
    after = _rss()
    traced = 0.0
    if engine == "python":
        tracemalloc.start()
        doc2 = _new(engine)
        doc2.apply_update(snap)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] / keys
        tracemalloc.stop()
    print(f"{(after - before) / keys:.1f} {traced:.1f}")


def _memory(engine: str, keys: int) -> tuple[float, float]:
    res = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory-child", engine, "--keys", str(keys)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    rss, traced = res.stdout.split()
    return float(rss), float(traced)


def profile(keys: int) -> None:
    """cProfile of the pure engine's snapshot apply and single-key sets."""
    snap = _build("python", keys).encode_diff(b"\x00")
    for label, fn in (
        ("snapshot apply", lambda: PythonDoc().apply_update(snap)),
        ("20000 local sets", lambda: [PythonDoc().transact({"k": "v"}, []) for _ in range(20000)]),
    ):
        prof = cProfile.Profile()
        prof.runcall(fn)
        print(f"--- cProfile: {label} ---")
        pstats.Stats(prof).sort_stats("tottime").print_stats(8)


def main() -> None:
    """Run everything and print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--ops", type=int, default=20_000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--memory-child", choices=["python", "pycrdt"])
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.keys)
        return
    if args.profile:
        profile(args.keys)
        return
    import pycrdt

    version = getattr(pycrdt, "__version__", "?")
    print(f"Python {sys.version.split()[0]}, pycrdt {version}")
    print(f"{args.ops} single-key operations, {args.keys}-key snapshot")
    py = measure("python", args.ops, args.keys)
    rs = measure("pycrdt", args.ops, args.keys)
    py["memory/key RSS"], py["memory/key tracemalloc"] = _memory("python", args.keys)
    rs["memory/key RSS"], rs["memory/key tracemalloc"] = _memory("pycrdt", args.keys)
    rs["memory/key tracemalloc"] = float("nan")  # Rust allocations are invisible to tracemalloc
    print(f"{'figure':<26}{'python':>14}{'pycrdt':>14}{'python worse by':>18}")
    for name in py:
        a, b = py[name], rs[name]
        rate = name.endswith("/s")  # higher is better for rates, lower for times and sizes
        ratio = (b / a if rate else a / b) if a and b else float("nan")
        print(f"{name:<26}{a:>14,.3f}{b:>14,.3f}{ratio:>17.2f}x")


if __name__ == "__main__":
    main()
