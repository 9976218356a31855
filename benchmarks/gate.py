"""The store's engines as the store uses them: pycrdt behind the causal gate, the pure engine,
and (the baseline) pycrdt without the gate, measured in the same run.

    python benchmarks/gate.py [--ops 5000] [--keys 20000] [--repeats 5]

Figures, each the median (min-max) of ``--repeats`` runs interleaved across engines:
local single-key transactions/s; remote single-key updates applied/s in order; the same with
gaps (each pair swapped, so every other update waits for its predecessor); a snapshot of
``--keys`` keys encoded and applied by a newcomer (s). Ratios are against ungated pycrdt.
Not a timed test: figures vary with the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mpstore.engines import load_engine


class _Ungated:
    """pycrdt directly (what the adapter did before the gate): apply, transact, diff."""

    def __init__(self) -> None:
        import pycrdt

        self.doc: Any = pycrdt.Doc()
        self.map: Any = self.doc.get("mpstore", type=pycrdt.Map)
        self._updates: list[bytes] = []
        self._sub = self.doc.observe(lambda e: self._updates.append(e.update))

    def transact(self, sets: dict[str, str], deletes: list[str]) -> bytes:
        with self.doc.transaction():
            for k, v in sets.items():
                self.map[k] = v
        out = b"".join(self._updates)
        self._updates.clear()
        return out

    def apply_update(self, update: bytes) -> None:
        self.doc.apply_update(update)
        self._updates.clear()

    def encode_diff(self, sv: bytes) -> bytes:
        return bytes(self.doc.get_update(sv))


def _new(engine: str) -> Any:
    return _Ungated() if engine == "pycrdt (no gate)" else load_engine(engine).new_doc()


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(engine: str, ops: int, keys: int, updates: list[bytes], snapshot_src: bytes) -> dict[str, float]:
    doc = _new(engine)
    local = ops / _timed(lambda: [doc.transact({f"k{i % 500}": '"v"'}, []) for i in range(ops)])
    recv = _new(engine)
    in_order = len(updates) / _timed(lambda: [recv.apply_update(u) for u in updates])
    swapped = [updates[i ^ 1] for i in range(len(updates) - len(updates) % 2)]
    recv2 = _new(engine)
    gapped = len(swapped) / _timed(lambda: [recv2.apply_update(u) for u in swapped])
    src = _new(engine)
    src.apply_update(snapshot_src)

    def snapshot() -> None:
        _new(engine).apply_update(src.encode_diff(b"\x00"))

    return {"local/s": local, "in order/s": in_order, "gapped/s": gapped, "snapshot s": _timed(snapshot)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ops", type=int, default=5000)
    ap.add_argument("--keys", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    writer = load_engine("python").new_doc()
    updates = [writer.transact({f"k{i % 500}": f'"{i}"'}, []) for i in range(args.ops)]
    big = load_engine("python").new_doc()
    for start in range(0, args.keys, 1000):
        big.transact({f"k{i}": '"value"' for i in range(start, min(start + 1000, args.keys))}, [])
    snapshot_src = big.encode_diff(b"\x00")
    engines = ["pycrdt (no gate)", "pycrdt", "python"]
    results: dict[str, list[dict[str, float]]] = {e: [] for e in engines}
    print(f"load average before: {os.getloadavg()}; cpus: {os.cpu_count()}")
    for _ in range(args.repeats):
        for engine in engines:
            results[engine].append(measure(engine, args.ops, args.keys, updates, snapshot_src))
    print(f"load average after: {os.getloadavg()}")
    base = {k: statistics.median(r[k] for r in results[engines[0]]) for k in results[engines[0]][0]}
    for engine in engines:
        print(f"\n{engine}")
        for key in base:
            values = [r[key] for r in results[engine]]
            med = statistics.median(values)
            ratio = med / base[key]
            print(f"  {key:12} {med:12.4g}  ({min(values):.4g}-{max(values):.4g})  x{ratio:.2f} of ungated")


if __name__ == "__main__":
    main()
