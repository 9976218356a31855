"""Group A -> Yjs server -> group B: mpstore's server client against two plain pycrdt clients.

    python benchmarks/yserver.py [--repeats 3] [--latency-edits 60] [--burst 2000]

One real y-websocket server (Node, ``js/y-websocket-server.mjs``) on loopback serves both. Each
run puts a writer and a reader in two separate processes (as two groups would be), on a fresh
document:

* mpstore: a MultipeerConnectivity per process with ``connect_server`` (the reader observes
  its SharedDict; values go through mpstore's value encoding and the store's relay);
* baseline: pycrdt ``Doc`` + ``Provider`` over a ``websockets`` client per process (the
  strongest plain Python client: no relay, no value encoding, no thread hops), writing its burst
  one set per update (``pycrdt``, its default) and in one transaction (``pycrdt-tx``, the best a
  pycrdt app can do for a burst).

Figures: one-way latency (writer's set -> reader's observer, CLOCK_MONOTONIC shared by the
processes; edits 30 ms apart) and replicated edits/s (a burst of sets of distinct keys, each
its own write, until the reader holds every one). Each side runs with its defaults: pycrdt sends
one update per set; mpstore merges the writes queued when its core thread wakes into one
transaction (so a burst travels in a few large updates). Runs alternate mpstore / pycrdt;
medians with min-max.
``--dialect hocuspocus`` measures mpstore alone on Hocuspocus (pycrdt has no Hocuspocus client).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _out(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


# -- workers (one process each) -----------------------------------------------------------------


def mpstore_worker(
    role: str, url: str, dialect: str, room: str, lat: int, burst: int, engine: str | None
) -> None:
    import mpstore

    class Node(mpstore.MultipeerConnectivity):
        def peer_added(self, peer: Any) -> None:
            pass

        def peer_removed(self, peer: Any) -> None:
            pass

    mc = Node(role, "ybench", transport=mpstore.MemoryNetwork(), engine=engine)
    try:
        conn = mc.connect_server(url, "bench", dialect=dialect, document=room)
        conn.wait_synced(30)
        store = mc.shared_dict("bench")
        if role == "reader":
            arrivals: dict[str, float] = {}
            done = threading.Event()

            got: set[str] = set()

            def seen(change: Any) -> None:
                now = time.monotonic()
                for key in change.changes:
                    if key.startswith("lat"):
                        arrivals.setdefault(key[3:], now)
                    elif key.startswith("b"):
                        got.add(key)
                if len(got) == burst and "burst" not in arrivals:
                    arrivals["burst"] = now
                    done.set()

            store.observe(seen)
            _out(ready=1)
            if not done.wait(300):
                raise SystemExit("reader: the burst did not arrive within 300 s")
            _out(arrivals=arrivals)
        else:
            _out(ready=1)
            sys.stdin.readline()
            sent: dict[str, float] = {}
            for i in range(lat):
                sent[str(i)] = time.monotonic()
                store[f"lat{i}"] = i
                time.sleep(0.03)
            time.sleep(0.3)
            sent["burst"] = time.monotonic()
            for i in range(burst):
                store[f"b{i}"] = i
            _out(sent=sent)
            sys.stdin.readline()
    finally:
        mc.end_all()


def pycrdt_worker(role: str, url: str, room: str, lat: int, burst: int, batched: bool) -> None:
    from pycrdt import Doc, Map, Provider
    from websockets.asyncio.client import connect

    class Channel:
        def __init__(self, ws: Any, path: str) -> None:
            self._ws, self.path = ws, path

        def __aiter__(self) -> Channel:
            return self

        async def __anext__(self) -> bytes:
            try:
                data = await self._ws.recv()
            except Exception:
                raise StopAsyncIteration from None
            return bytes(data) if not isinstance(data, str) else data.encode()

        async def send(self, message: bytes) -> None:
            await self._ws.send(message)

        async def recv(self) -> bytes:
            return await self.__anext__()

    async def run() -> None:
        doc = Doc()
        m = doc.get("mpstore", type=Map)
        loop = asyncio.get_running_loop()
        async with (
            connect(f"{url}/{room}", proxy=None, compression=None) as ws,
            Provider(doc, Channel(ws, "/" + room)) as provider,
        ):
            await asyncio.wait_for(provider.synced.wait(), 30)
            if role == "reader":
                arrivals: dict[str, float] = {}
                done = asyncio.Event()

                got: set[str] = set()

                def seen(event: Any) -> None:
                    now = time.monotonic()
                    for key in event.keys:
                        if key.startswith("lat"):
                            arrivals.setdefault(key[3:], now)
                        elif key.startswith("b"):
                            got.add(key)
                    if len(got) == burst and "burst" not in arrivals:
                        arrivals["burst"] = now
                        done.set()

                m.observe(seen)
                _out(ready=1)
                await asyncio.wait_for(done.wait(), 300)
                _out(arrivals=arrivals)
            else:
                _out(ready=1)
                await loop.run_in_executor(None, sys.stdin.readline)
                sent: dict[str, float] = {}
                for i in range(lat):
                    sent[str(i)] = time.monotonic()
                    m[f"lat{i}"] = i
                    await asyncio.sleep(0.03)
                await asyncio.sleep(0.3)
                sent["burst"] = time.monotonic()
                if batched:
                    with doc.transaction():  # the whole burst as one update
                        for i in range(burst):
                            m[f"b{i}"] = i
                else:
                    for i in range(burst):
                        m[f"b{i}"] = i
                        if i % 64 == 63:
                            await asyncio.sleep(0)  # let the provider send, as a live app would
                _out(sent=sent)
                await loop.run_in_executor(None, sys.stdin.readline)

    asyncio.run(run())


# -- the driver ------------------------------------------------------------------------------------


class _Proc:
    def __init__(self, argv: list[str]) -> None:
        self.p = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr, cwd=str(ROOT), text=True
        )

    def line(self) -> dict[str, Any]:
        assert self.p.stdout is not None
        text = self.p.stdout.readline()
        if not text:
            raise RuntimeError(f"worker {self.p.args} ended early")
        return dict(json.loads(text))

    def say(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write("\n")
        self.p.stdin.flush()

    def end(self) -> None:
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def one_run(
    impl: str, url: str, dialect: str, room: str, lat: int, burst: int, engine: str | None
) -> tuple[list[float], float]:
    base = [sys.executable, __file__, "--worker", impl, "--url", url, "--dialect", dialect, "--room", room]
    base += ["--latency-edits", str(lat), "--burst", str(burst)]
    if engine:
        base += ["--engine", engine]
    reader = _Proc([*base, "--role", "reader"])
    writer = _Proc([*base, "--role", "writer"])
    try:
        reader.line()
        writer.line()
        writer.say()
        sent = writer.line()["sent"]
        arrivals = reader.line()["arrivals"]
        writer.say()
    finally:
        for proc in (writer, reader):
            proc.end()
    samples = [arrivals[k] - sent[k] for k in sent if k != "burst" and k in arrivals]
    if len(samples) != lat:
        raise RuntimeError(f"{impl}: {lat - len(samples)} latency edits never arrived")
    return samples, burst / (arrivals["burst"] - sent["burst"])


def _fmt(values: list[float], scale: float = 1.0, unit: str = "") -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):,.1f}{unit} ({min(v):,.1f}-{max(v):,.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-edits", type=int, default=60)
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--dialect", default="y-websocket", choices=["y-websocket", "hocuspocus"])
    ap.add_argument(
        "--engine", default=None, help="mpstore's CRDT engine: python or pycrdt (default: its own)"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--room", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "mpstore":
        mpstore_worker(
            args.role, args.url, args.dialect, args.room, args.latency_edits, args.burst, args.engine
        )
        return
    if args.worker in ("pycrdt", "pycrdt-tx"):
        pycrdt_worker(
            args.role, args.url, args.room, args.latency_edits, args.burst, args.worker == "pycrdt-tx"
        )
        return

    from tests.yserver.servers import NodeServer

    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"yserver-bench-{os.getpid()}.log"
    server = NodeServer(args.dialect, log).start()
    impls = ["mpstore", "pycrdt", "pycrdt-tx"] if args.dialect == "y-websocket" else ["mpstore"]
    results: dict[str, tuple[list[float], list[float]]] = {i: ([], []) for i in impls}
    try:
        print(f"load before: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} CPUs")
        node = subprocess.check_output(["node", "--version"], text=True).strip()
        from mpstore.engines import load_engine

        print(f"{args.dialect} server (Node {node}); mpstore's engine: {load_engine(args.engine).name}")
        for r in range(args.repeats):
            for impl in impls:
                samples, rate = one_run(
                    impl,
                    server.url,
                    args.dialect,
                    f"bench-{impl}-{r}-{os.getpid()}",
                    args.latency_edits,
                    args.burst,
                    args.engine,
                )
                results[impl][0].append(statistics.median(samples))
                results[impl][1].append(rate)
                median_ms = statistics.median(samples) * 1e3
                print(f"  run {r + 1} {impl:9}: latency median {median_ms:.2f} ms, {rate:,.0f} edits/s")
    finally:
        server.kill()
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print(f"\nA -> {args.dialect} server -> B, {args.repeats} runs each (median of runs, min-max):")
    for impl in impls:
        lat, rate = results[impl]
        print(f"  {impl:9} one-way latency {_fmt(lat, 1e3, ' ms')}   edits/s {_fmt(rate)}")
    for base in impls[1:]:
        lat_ratio = statistics.median(results["mpstore"][0]) / statistics.median(results[base][0])
        rate_ratio = statistics.median(results["mpstore"][1]) / statistics.median(results[base][1])
        print(f"  mpstore / {base}: latency x{lat_ratio:.2f}, edits/s x{rate_ratio:.2f}")


if __name__ == "__main__":
    main()
