"""A broadcast with one stalled peer: how soon the healthy peers get it, and when send returns.

Three nodes on a memory network (one process, as the memory network always is): Ann broadcasts,
Bob is healthy, Cat's ``receive`` callback is stuck, so its node stops reading Ann's link
(push-back) while its heartbeats go on, and Ann's link to Cat is held. Baseline: the same
broadcast in the same kind of group with Cat healthy. The variants alternate round by round,
each in a fresh group. Prints Bob's latency (send start to Bob's ``receive``) and the time send
took, medians with min-max, the stalled/baseline ratio of Bob's latency, and the machine's load.
Before issue 12's fix the stalled variant had no latency to print: send raised SendTimeout
after send_timeout and nothing reached Bob.

    python -m benchmarks.slowpeer [--rounds 5] [--send-timeout 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from typing import Any

import mpstore
from mpstore._core import APP_QUEUE_LIMIT


class _Peer(mpstore.MultipeerConnectivity):
    def __init__(self, *args: Any, stuck: threading.Event | None = None, **kw: Any) -> None:
        self.got: dict[Any, float] = {}
        self.removed: list[str] = []
        self._stuck = stuck
        super().__init__(*args, **kw)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        self.removed.append(peer.display_name)

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        if self._stuck is not None:
            self._stuck.wait(120)
        if isinstance(message, str):
            self.got[message] = time.monotonic()


def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.005)


def _round(stalled: bool, send_timeout: float) -> tuple[float, float, bool]:
    net = mpstore.MemoryNetwork()
    opts: dict[str, Any] = {"transport": net, "peer_timeout": 60.0, "send_timeout": send_timeout}
    release = threading.Event()
    ann = _Peer("Ann", "bench", **opts)
    bob = _Peer("Bob", "bench", **opts)
    cat = _Peer("Cat", "bench", stuck=release if stalled else None, **opts)
    try:
        for mc in (ann, bob, cat):
            mc.wait_for_peers(2, timeout=30)
        cat_id = next(p for p in ann.get_peers() if p.display_name == "Cat")
        if stalled:
            for i in range(APP_QUEUE_LIMIT + 50):
                if cat_id.id in ann._node.blocked:
                    break
                ann.send({"fill": i}, to_peer=cat_id)
            _until(lambda: cat_id.id in ann._node.blocked, 10)
        t0 = time.monotonic()
        ann.send("broadcast")
        took = time.monotonic() - t0
        _until(lambda: "broadcast" in bob.got, 30)
        return bob.got["broadcast"] - t0, took, "Cat" in ann.removed or cat_id not in ann.get_peers()
    finally:
        release.set()
        for mc in (ann, bob, cat):
            mc.end_all()


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:9.1f} ms ({min(values) * 1000:.1f}-{max(values) * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--send-timeout", type=float, default=2.0)
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float, bool]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for stalled in (False, True):
            results[stalled].append(_round(stalled, args.send_timeout))
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores; send_timeout {args.send_timeout} s")
    print(f"{'variant':24} {'Bob got it after':32} {'send returned after':32} Cat cut")
    for stalled, name in ((False, "baseline (all healthy)"), (True, "Cat stalled")):
        rows = results[stalled]
        cut = sum(r[2] for r in rows)
        print(f"{name:24} {_fmt([r[0] for r in rows]):32} {_fmt([r[1] for r in rows]):32} {cut}/{len(rows)}")
    ratio = statistics.median(r[0] for r in results[True]) / statistics.median(r[0] for r in results[False])
    print(f"Bob's latency, stalled/baseline: {ratio:.2f}")


if __name__ == "__main__":
    main()
