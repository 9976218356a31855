"""The store's two engine adapters, measured side by side, with pycrdt used directly for context.

    python benchmarks/engines.py                  # 3 interleaved repeats (~2-3 min loaded)
    python benchmarks/engines.py --quick          # small and fast, for development
    python benchmarks/engines.py --profile        # cProfile of both adapters' hot paths

Columns:

- ``python``: the pure-Python engine exactly as the store uses it
  (``mpstore.engines.load_engine("python").new_doc()``);
- ``pycrdt adapter``: mpstore's pycrdt engine as the store uses it
  (``load_engine("pycrdt").new_doc()``: the causal gate, exact-content check, change reporting);
- ``pycrdt direct``: a bare ``pycrdt.Doc`` with one ``Map`` and a transaction observer that
  collects the update bytes: no gate, no change report. It does less than either adapter and is
  shown for context only (what the adapter's safety and bookkeeping cost).

Operations, the same for all three:

1. local sets/s: one key per transaction, the v1 update produced (1,000 distinct keys cycled);
2. local batched sets/s: 100 keys per transaction (the store merges the writes queued at each
   core wake-up into one transaction);
3. applied updates/s: single-key updates from another replica applied in order; the adapters
   report the changed keys' new values, direct pycrdt only applies;
4. a ``--keys``-key snapshot: encode s, bytes, apply s (the adapters report every key's value;
   for direct pycrdt, apply alone and apply + reading every value are both given);
5. memory per key: resident-set growth after applying the snapshot (made by the parent, the same
   bytes for all three) in a fresh child process.

Each repeat measures all three in turn (order rotated per repeat); figures are medians with
[min-max]; ratios are medians of the per-repeat ratios. Not a timed test.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

KINDS = ("python", "pycrdt", "direct")
LABELS = {"python": "python", "pycrdt": "pycrdt adapter", "direct": "pycrdt direct"}


class _Direct:
    """pycrdt used directly: a Doc, its Map, the update bytes of each transaction."""

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

    def items(self) -> list[tuple[str, str]]:
        return list(self.map.items())


def _new(kind: str) -> Any:
    if kind == "direct":
        return _Direct()
    from mpstore.engines import load_engine

    return load_engine(kind).new_doc()


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _build(kind: str, keys: int, batch: int = 1000) -> Any:
    doc = _new(kind)
    for i in range(0, keys, batch):
        doc.transact({f"key-{j:07d}": f'"value {j}"' for j in range(i, min(keys, i + batch))}, [])
    return doc


def measure(kind: str, ops: int, keys: int) -> dict[str, float]:
    """All time figures for one engine (column)."""
    out: dict[str, float] = {}
    doc = _new(kind)
    names = [f"k{i % 1000}" for i in range(ops)]
    out["local sets/s"] = ops / _timed(lambda: [doc.transact({k: "v"}, []) for k in names])
    doc = _new(kind)
    batches = [{f"b{(i + j) % 1000}": f"v{i}" for j in range(100)} for i in range(0, ops, 100)]
    out["local batched sets/s (100/txn)"] = (100 * len(batches)) / _timed(
        lambda: [doc.transact(b, []) for b in batches]
    )
    src = _new(kind)
    updates = [src.transact({k: f"v{i}"}, []) for i, k in enumerate(names)]
    dst = _new(kind)
    out["applied updates/s"] = ops / _timed(lambda: [dst.apply_update(u) for u in updates])
    big = _build(kind, keys)
    snap: list[bytes] = []
    out["snapshot encode s"] = _timed(lambda: snap.append(big.encode_diff(b"\x00")))
    out["snapshot bytes"] = float(len(snap[0]))
    big = None  # freed before the apply is timed
    fresh = _new(kind)
    out["snapshot apply s"] = _timed(lambda: fresh.apply_update(snap[0]))
    if kind == "direct":
        out["snapshot apply + read all s"] = out["snapshot apply s"] + _timed(fresh.items)
    else:  # the adapters' apply already returns every key's value
        out["snapshot apply + read all s"] = out["snapshot apply s"]
    return out


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(kind: str, keys: int, path: str) -> None:
    """Run in a child: print resident bytes per key after applying the snapshot in ``path``.

    The snapshot is made by the parent: building it here would free a whole document just
    before the measure, whose memory the allocator then reuses (and hides)."""
    with open(path, "rb") as f:
        snap = f.read()
    _new(kind).transact({"warm": "up"}, [])  # imports and first-use caches before the measure
    gc.collect()
    before = _rss()
    doc = _new(kind)
    doc.apply_update(snap)
    gc.collect()
    after = _rss()
    print(f"{(after - before) / keys:.1f}")
    del doc


def _memory(kind: str, keys: int, path: str) -> float:
    res = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--memory-child",
            kind,
            "--keys",
            str(keys),
            "--snapshot",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return float(res.stdout.split()[-1])


def profile(keys: int, ops: int) -> None:
    """cProfile of both adapters: single-key sets, applied updates, snapshot apply."""
    names = [f"k{i % 1000}" for i in range(ops)]
    for kind in ("python", "pycrdt"):
        snap = _build(kind, keys).encode_diff(b"\x00")
        src = _new(kind)
        updates = [src.transact({f"k{i % 1000}": f"v{i}"}, []) for i in range(ops)]
        doc = _new(kind)
        dst = _new(kind)
        jobs: list[tuple[str, Callable[[], object]]] = [
            (f"{ops} local sets", lambda doc=doc, ks=names: [doc.transact({k: "v"}, []) for k in ks]),
            (f"{ops} applied updates", lambda dst=dst, ups=updates: [dst.apply_update(u) for u in ups]),
            (f"{keys}-key snapshot apply", lambda kind=kind, snap=snap: _new(kind).apply_update(snap)),
        ]
        for label, fn in jobs:
            prof = cProfile.Profile()
            prof.runcall(fn)
            print(f"--- cProfile, {LABELS[kind]}: {label} ---")
            pstats.Stats(prof).sort_stats("tottime").print_stats(10)


def _fmt(name: str, xs: list[float]) -> str:
    if not xs:
        return "-"
    spec = ",.0f" if "/s" in name or "bytes" in name or "memory" in name else ".3f"
    return f"{statistics.median(xs):{spec}} [{min(xs):{spec}}-{max(xs):{spec}}]"


def _ratio(name: str, a: list[float], b: list[float]) -> str:
    """Cost of a relative to b (rates: b/a; times and sizes: a/b; < 1: a is faster or smaller)."""
    higher = "/s" in name
    rs = [(y / x if higher else x / y) for x, y in zip(a, b, strict=True) if x and y]
    if not rs:
        return "-"
    return f"{statistics.median(rs):.2f}x [{min(rs):.2f}-{max(rs):.2f}]"


def main() -> None:
    """Run everything and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--ops", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="--keys 20000 --ops 5000 --repeat 2")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--memory-child", choices=KINDS)
    ap.add_argument("--snapshot", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.keys, args.snapshot)
        return
    if args.quick:
        args.keys, args.ops, args.repeat = 20_000, 5_000, 2
    if args.profile:
        profile(min(args.keys, 20_000), min(args.ops, 5_000))
        return
    import pycrdt

    one, five, fifteen = os.getloadavg()
    print(
        f"Python {sys.version.split()[0]}, pycrdt {getattr(pycrdt, '__version__', '?')}; "
        f"{args.ops} single-key operations, {args.keys}-key snapshot, {args.repeat} interleaved repeats"
    )
    print(f"start: load {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min), {os.cpu_count()} cpus")
    figs: dict[str, dict[str, list[float]]] = {k: {} for k in KINDS}
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".yupdate", delete=False) as tmp:
        tmp.write(_build("direct", args.keys).encode_diff(b"\x00"))  # same bytes for every engine
    snap_path = tmp.name
    for r in range(args.repeat):
        order = KINDS[r % 3 :] + KINDS[: r % 3]
        for kind in order:
            for name, value in measure(kind, args.ops, args.keys).items():
                figs[kind].setdefault(name, []).append(value)
        for kind in order:
            figs[kind].setdefault("memory/key (RSS) B", []).append(_memory(kind, args.keys, snap_path))
        print(f"repeat {r + 1}/{args.repeat}: load {os.getloadavg()[0]:.2f}", flush=True)
    os.unlink(snap_path)
    names = list(figs["python"])
    w = 32
    print(f"\n{'figure':{w}}" + "".join(f"{LABELS[k]:>28}" for k in KINDS))
    for name in names:
        print(f"{name:{w}}" + "".join(f"{_fmt(name, figs[k][name]):>28}" for k in KINDS))
    head = "cost ratio (< 1: first is better)"
    print(f"\n{head:{w}}{'python / pycrdt adapter':>30}{'adapter / direct':>26}")
    for name in names:
        py, ad, di = figs["python"][name], figs["pycrdt"][name], figs["direct"][name]
        print(f"{name:{w}}{_ratio(name, py, ad):>30}{_ratio(name, ad, di):>26}")
    print(
        "\n(applied updates: the adapters also report each changed key's value; direct pycrdt only"
        " applies. Snapshot apply: the adapters report every value; direct pycrdt's is given with"
        " and without reading them back.)"
    )
    one, five, fifteen = os.getloadavg()
    print(f"end: load {one:.2f} / {five:.2f} / {fifteen:.2f}")


if __name__ == "__main__":
    main()
