"""Benchmark of saved stores (data_dir) against the same store without persistence, same run.

    python benchmarks/persist.py [--writes 20000] [--repeats 5] [--open 100000,1000000] [--engine pycrdt]

Figures:

* writes/s through MultipeerConnectivity on a MemoryNetwork (one node, the real core thread),
  for the store in memory only (baseline), with ``data_dir`` (default durability: committed
  within 50 ms) and with ``durable=True`` (each write on disk before it returns). Each run ends
  with ``flush()``, so every write is applied (and, when saved, on disk) before the clock stops.
  Two patterns: a burst (writes as fast as the caller makes them; the core merges queued writes
  into one transaction) and one transaction per write (the caller waits for each write to be
  applied, which is also what ``durable=True`` does). Ratios are persistent / memory-only.
* open time of a saved store of N keys: ``MultipeerConnectivity(data_dir=...)`` plus
  ``shared_dict(name)`` until its content is readable, against a late joiner receiving the same
  store from a peer over the MemoryNetwork (what a device restarting without a data_dir does),
  and against loading the same snapshot bytes into a bare engine document.

Configurations and repeats are interleaved; medians with min-max; the load average is printed.
Loopback only: the memory network, no sockets.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mpstore  # noqa: E402
from mpstore.engines import load_engine  # noqa: E402


class Quiet(mpstore.MultipeerConnectivity):
    def peer_added(self, peer: Any) -> None:
        pass

    def peer_removed(self, peer: Any) -> None:
        pass


def _mc(engine: str, **kwargs: Any) -> Quiet:
    kwargs.setdefault("transport", mpstore.MemoryNetwork())
    return Quiet("bench", "bench", engine=engine, **kwargs)


def writes_per_second(engine: str, config: str, writes: int, per_write: bool, tmp: Path) -> float:
    """One run: ``writes`` sets to 1000 keys, ended by flush(); returns sets per second."""
    data_dir = None if config == "memory" else tmp / f"w-{time.monotonic_ns()}"
    mc = _mc(engine, data_dir=data_dir, durable=config == "durable")
    try:
        d = mc.shared_dict("s")
        d["warm"] = 0
        d.flush()
        gc.collect()
        start = time.perf_counter()
        if per_write and config != "durable":
            call = mc._runtime.call
            for i in range(writes):
                d[f"k{i % 1000}"] = i
                call(_nothing)  # wait until applied: one transaction per write
        else:
            for i in range(writes):
                d[f"k{i % 1000}"] = i
        d.flush()
        return writes / (time.perf_counter() - start)
    finally:
        mc.end_all()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)


def _nothing() -> None:
    pass


def build(engine: str, keys: int, data_dir: Path) -> int:
    """Save a store of ``keys`` keys in ``data_dir``; return its snapshot size in bytes."""
    mc = _mc(engine, data_dir=data_dir)
    try:
        d = mc.shared_dict("big")
        chunk = 10_000
        for base in range(0, keys, chunk):
            d.update({f"key{i}": {"n": i, "name": f"item {i}"} for i in range(base, min(keys, base + chunk))})
        d.flush()
        size: int = mc._runtime.call(lambda: len(mc._node.store.docsync.docs["big"].encode_diff(b"\x00")))  # type: ignore[union-attr]
        return size
    finally:
        mc.end_all()


def open_saved(engine: str, keys: int, data_dir: Path) -> float:
    gc.collect()
    start = time.perf_counter()
    mc = _mc(engine, data_dir=data_dir)
    try:
        d = mc.shared_dict("big")
        took = time.perf_counter() - start
        assert len(d) == keys, (len(d), keys)
        return took
    finally:
        mc.end_all()


def open_from_peer(engine: str, keys: int, data_dir: Path) -> float:
    """A late joiner without a data_dir: the whole store comes from a peer that has it."""
    net = mpstore.MemoryNetwork()
    holder = _mc(engine, data_dir=data_dir, transport=net)
    try:
        holder.shared_dict("big")
        gc.collect()
        start = time.perf_counter()
        joiner = _mc(engine, transport=net)
        try:
            d = joiner.shared_dict("big")
            d.wait_for(lambda s: len(s) == keys, timeout=600)
            return time.perf_counter() - start
        finally:
            joiner.end_all()
    finally:
        holder.end_all()


def engine_load(engine: str, data_dir: Path) -> float:
    """The engine alone: apply the saved snapshot to a bare document."""
    import sqlite3

    con = sqlite3.connect(data_dir / "mpstore.sqlite3")
    blobs = [b for (b,) in con.execute("SELECT snapshot FROM stores WHERE snapshot IS NOT NULL")]
    blobs += [b for (b,) in con.execute("SELECT data FROM updates ORDER BY store, seq")]
    con.close()
    gc.collect()
    start = time.perf_counter()
    doc = load_engine(engine).new_doc()
    for b in blobs:
        doc.apply_update(b)
    doc.items()
    return time.perf_counter() - start


def _fmt(values: list[float], unit: str = "", scale: float = 1.0) -> str:
    med = statistics.median(values) * scale
    return f"{med:,.0f}{unit} ({min(values) * scale:,.0f}-{max(values) * scale:,.0f})"


def _ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writes", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--open", default="100000,1000000", help="key counts for the open-time figures")
    p.add_argument("--open-repeats", type=int, default=3)
    p.add_argument("--engine", default=os.environ.get("MPSTORE_ENGINE") or "pycrdt")
    args = p.parse_args()
    engine = args.engine
    print(
        f"mpstore {mpstore.__version__}, engine {engine}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
    )
    with tempfile.TemporaryDirectory(prefix="mpstore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for per_write in (False, True) if args.repeats > 0 else ():
            configs = ["memory", "data_dir", "durable"]
            results: dict[str, list[float]] = {c: [] for c in configs}
            for _ in range(args.repeats):
                for c in configs:
                    n = args.writes if c != "durable" else max(200, args.writes // 20)
                    results[c].append(writes_per_second(engine, c, n, per_write, tmp))
            pattern = "one transaction per write" if per_write else "burst (queued writes merge)"
            print(
                f"\nwrites/s, {pattern}, {args.writes} sets to 1000 keys "
                f"(durable: {max(200, args.writes // 20)}), median (min-max) of {args.repeats}:"
            )
            for c in configs:
                ratio = _ratio(results[c], results["memory"])
                print(f"  {c:9} {_fmt(results[c], ' /s')}   ratio to memory-only {ratio}")
        print(f"load average {os.getloadavg()[0]:.2f}")
        for keys in [int(k) for k in args.open.split(",") if k]:
            data_dir = tmp / f"open-{keys}"
            t0 = time.perf_counter()
            size = build(engine, keys, data_dir)
            built = time.perf_counter() - t0
            file_size = sum(f.stat().st_size for f in data_dir.iterdir())
            saved: list[float] = []
            peer: list[float] = []
            bare: list[float] = []
            for _ in range(args.open_repeats):
                saved.append(open_saved(engine, keys, data_dir))
                peer.append(open_from_peer(engine, keys, data_dir))
                bare.append(engine_load(engine, data_dir))
            print(
                f"\nopen a saved store of {keys:,} keys (snapshot {size / 1e6:.1f} MB, "
                f"file {file_size / 1e6:.1f} MB, built in {built:.1f} s), "
                f"median (min-max) of {args.open_repeats}:"
            )
            print(f"  from data_dir          {_fmt(saved, ' ms', 1000)}")
            print(
                f"  from a peer (no disk)  {_fmt(peer, ' ms', 1000)}   "
                f"ratio data_dir/peer {_ratio(saved, peer)}"
            )
            print(
                f"  engine alone           {_fmt(bare, ' ms', 1000)}   "
                f"ratio data_dir/engine {_ratio(saved, bare)}"
            )
            shutil.rmtree(data_dir, ignore_errors=True)
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
