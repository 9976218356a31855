"""A broadcast with one stalled peer: how soon the healthy peers get it, and when send returns.

Three nodes on a memory network (one process, as the memory network always is): Ann broadcasts,
Bob is healthy, Cat's ``receive`` callback is stuck, so its node stops reading Ann's link
(push-back) while its heartbeats go on, and Ann's link to Cat is held. With ``--lan``: the LAN
transport on loopback, Ann and Bob in this process, Cat a child process (tests.lan.peer_agent)
that is SIGSTOPped (so its socket is not read) once connected, and Ann's link to it filled
with 256 KiB sends until held. Baseline: the same
broadcast in the same kind of group with Cat healthy. The variants alternate round by round,
each in a fresh group. Prints Bob's latency (send start to Bob's ``receive``) and the time send
took, medians with min-max, the stalled/baseline ratio of Bob's latency, and the machine's load.
Before issue 12's fix the stalled variant had no latency to print: send raised SendTimeout
after send_timeout and nothing reached Bob.

    python -m benchmarks.slowpeer [--rounds 5] [--send-timeout 2] [--lan]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
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


@contextlib.contextmanager
def _memory_group(stalled: bool, send_timeout: float) -> Iterator[tuple[_Peer, _Peer]]:
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
        yield ann, bob
    finally:
        release.set()
        for mc in (ann, bob, cat):
            mc.end_all()


@contextlib.contextmanager
def _lan_group(stalled: bool, send_timeout: float) -> Iterator[tuple[_Peer, _Peer]]:
    from mpstore.transports.lan import LanTransport

    def lan(**kw: Any) -> LanTransport:
        return LanTransport(host="127.0.0.1", discovery=False, ip_version="v4", **kw)

    opts: dict[str, Any] = {"peer_timeout": 60.0, "send_timeout": send_timeout}
    ann = _Peer("Ann", "bench", transport=lan(), **opts)
    addr = ann.transport.address  # type: ignore[attr-defined]
    bob = _Peer("Bob", "bench", transport=lan(peers=[addr]), **opts)
    cat = subprocess.Popen(
        [sys.executable, "-m", "tests.lan.peer_agent", "--name", "Cat", "--service", "bench",
         "--host", "127.0.0.1", "--no-discovery", "--static", f"{addr[0]}:{addr[1]}",
         "--peer-timeout", "60", "--send-timeout", str(send_timeout)],
        cwd=Path(__file__).resolve().parents[1], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    stopped = False
    try:
        assert cat.stdout is not None
        json.loads(cat.stdout.readline())
        ann.wait_for_peers(2, timeout=30)
        cat_id = next(p for p in ann.get_peers() if p.display_name == "Cat")
        if stalled:
            os.kill(cat.pid, signal.SIGSTOP)
            stopped = True
            blob = "x" * (256 * 1024)
            for _ in range(400):
                if cat_id.id in ann._node.blocked:
                    break
                try:
                    ann.send(blob, to_peer=cat_id)
                except mpstore.SendTimeout:
                    break
            _until(lambda: cat_id.id in ann._node.blocked, 10)
        yield ann, bob
    finally:
        if stopped:
            os.kill(cat.pid, signal.SIGCONT)
        cat.kill()
        cat.communicate(timeout=30)
        bob.end_all()
        ann.end_all()


def _round(stalled: bool, send_timeout: float, use_lan: bool) -> tuple[float, float, bool]:
    group = _lan_group if use_lan else _memory_group
    with group(stalled, send_timeout) as (ann, bob):
        t0 = time.monotonic()
        ann.send("broadcast")
        took = time.monotonic() - t0
        _until(lambda: "broadcast" in bob.got, 30)
        cut = "Cat" not in [p.display_name for p in ann.get_peers()]
        return bob.got["broadcast"] - t0, took, cut


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:9.1f} ms ({min(values) * 1000:.1f}-{max(values) * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--send-timeout", type=float, default=2.0)
    parser.add_argument("--lan", action="store_true", help="LAN on loopback, Cat a SIGSTOPped process")
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float, bool]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for stalled in (False, True):
            results[stalled].append(_round(stalled, args.send_timeout, args.lan))
    load = os.getloadavg()[0]
    where = "LAN on loopback" if args.lan else "memory network"
    print(f"{where}; load average {load:.1f} on {os.cpu_count()} cores; send_timeout {args.send_timeout} s")
    print(f"{'variant':24} {'Bob got it after':32} {'send returned after':32} Cat cut")
    for stalled, name in ((False, "baseline (all healthy)"), (True, "Cat stalled")):
        rows = results[stalled]
        cut = sum(r[2] for r in rows)
        print(f"{name:24} {_fmt([r[0] for r in rows]):32} {_fmt([r[1] for r in rows]):32} {cut}/{len(rows)}")
    ratio = statistics.median(r[0] for r in results[True]) / statistics.median(r[0] for r in results[False])
    print(f"Bob's latency, stalled/baseline: {ratio:.2f}")


if __name__ == "__main__":
    main()
