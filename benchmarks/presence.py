"""Presence between two LAN peers in separate processes, next to baselines from the same run.

    python benchmarks/presence.py [--rounds 200] [--repeat 3] [--flood 2]

Two processes on loopback (LAN transport, TLS, static addresses, no mDNS): this one and a
responder it starts (and stops, by PID). Figures:

1. Latency of one update (p50, one way = round trip / 2): we set our presence to {"ping": i},
   the responder's presence_changed sets its own to {"pong": i}, we wait for it. Baselines, in
   the same rounds, interleaved: a reliable app message echoed (mc.send, the floor presence
   sits on) and a shared_dict key written and answered (what one would do without presence).
   Rounds are 60 ms apart so the 20/s throttle never holds a ping back.
2. Updates per second delivered during ``--flood`` seconds of presence.set() (each one the
   latest state; the throttle keeps at most 20 a second per peer, the latest always arriving),
   from a sender that calls as fast as it can and from one at 60 calls a second (a pointer),
   against unreliable app messages of the same JSON at the same pace (what one would send
   without presence).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import mpstore
from mpstore.transports.lan import LanTransport

SERVICE = "presbench"


class Responder(mpstore.MultipeerConnectivity):
    """The other process: answers pings three ways and counts what arrives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.presence_seen = 0
        self.app_seen = 0
        self.quit = threading.Event()
        super().__init__(*args, **kwargs)
        self.board = self.shared_dict("bench")
        self.board.observe(self._changed)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        self.quit.set()

    def presence_changed(self, peer: mpstore.PeerID, state: Any) -> None:
        self.presence_seen += 1
        if isinstance(state, dict) and "ping" in state:
            self.presence.set({"pong": state["ping"]})

    def _changed(self, change: Any) -> None:
        if change.from_peer is not None and "ping" in change.changes:
            self.board["pong"] = change.changes["ping"][1]

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        if isinstance(message, dict) and "ping" in message:
            self.send({"pong": message["ping"]}, to_peer=from_peer)
        elif message == "count":
            self.send({"presence": self.presence_seen, "app": self.app_seen}, to_peer=from_peer)
        elif message == "quit":
            self.quit.set()
        else:
            self.app_seen += 1


def responder(address: str) -> int:
    host, port = address.rsplit(":", 1)
    transport = LanTransport(host="127.0.0.1", discovery=False, peers=[(host, int(port))])
    mc = Responder("R", SERVICE, transport=transport, max_message_rate=None)
    try:
        mc.quit.wait(300)  # bounded: the parent stops us long before
    finally:
        mc.end_all()
    return 0


class Main(mpstore.MultipeerConnectivity):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.inbox: list[Any] = []
        self.cond = threading.Condition()
        self.pong: Any = None
        super().__init__(*args, **kwargs)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        pass

    def presence_changed(self, peer: mpstore.PeerID, state: Any) -> None:
        with self.cond:
            if isinstance(state, dict) and "pong" in state:
                self.pong = ("presence", state["pong"])
            self.cond.notify_all()

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        with self.cond:
            if isinstance(message, dict) and "pong" in message:
                self.pong = ("app", message["pong"])
            else:
                self.inbox.append(message)
            self.cond.notify_all()

    def store_pong(self, change: Any) -> None:
        if "pong" in change.changes:
            with self.cond:
                self.pong = ("store", change.changes["pong"][1])
                self.cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no answer from the responder")
                self.cond.wait(remaining)

    def ask(self, question: str) -> Any:
        with self.cond:
            self.inbox.clear()
        self.send(question)
        self.wait_for(lambda: bool(self.inbox))
        return self.inbox.pop(0)


def latency(mc: Main, board: Any, rounds: int, repeat: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"presence": [], "app": [], "store": []}
    seq = 0
    for _ in range(repeat):
        for _ in range(rounds):
            for how in ("presence", "app", "store"):
                seq += 1
                t0 = time.perf_counter()
                if how == "presence":
                    mc.presence.set({"ping": seq})
                elif how == "app":
                    mc.send({"ping": seq})
                else:
                    board["ping"] = seq
                mc.wait_for(lambda want=(how, seq): mc.pong == want)
                samples[how].append((time.perf_counter() - t0) / 2)
                time.sleep(0.06)
    return samples


def flood(mc: Main, seconds: float, how: str, pace: float | None) -> tuple[int, float]:
    before = mc.ask("count")
    sent = 0
    state = {"x": 0, "pad": "p" * 60}
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        state["x"] = sent
        if how == "app":
            mc.send(state, reliable=False)
        else:
            mc.presence.set(state)
        sent += 1
        if pace is not None:
            time.sleep(max(0.0, t0 + sent / pace - time.perf_counter()))
    elapsed = time.perf_counter() - t0
    time.sleep(0.5)  # let the last ones land
    after = mc.ask("count")
    key = "app" if how == "app" else "presence"
    delivered = after[key] - before[key]
    return delivered, delivered / elapsed


def fmt(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values) * 1e3:6.2f} ms  "
        f"(min {min(values) * 1e3:.2f}, max {max(values) * 1e3:.2f}, n={len(values)})"
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--flood", type=float, default=2.0)
    p.add_argument("--responder", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.responder:
        return responder(args.responder)

    print(f"load average before: {os.getloadavg()}  cpus: {os.cpu_count()}")
    transport = LanTransport(host="127.0.0.1", discovery=False, ip_version="v4")
    mc = Main("M", SERVICE, transport=transport, max_message_rate=None)
    host, port = transport.address
    child = subprocess.Popen([sys.executable, __file__, "--responder", f"{host}:{port}"])
    try:
        mc.wait_for_peers(1, timeout=30)
        board = mc.shared_dict("bench")
        board.observe(mc.store_pong)
        time.sleep(0.5)
        samples = latency(mc, board, args.rounds, args.repeat)
        base = statistics.median(samples["app"])
        print("one update, one way (round trip / 2), separate processes, LAN transport on loopback:")
        for how in ("presence", "app", "store"):
            ratio = statistics.median(samples[how]) / base
            print(f"  {how:9s} {fmt(samples[how])}   x{ratio:.2f} of the app message")
        print(f"updates delivered during a {args.flood:g} s flood (each state ~80 bytes of JSON):")
        rows: list[tuple[str, str, float]] = []
        for _ in range(args.repeat):
            for pace, label in ((None, "as fast as possible"), (60.0, "60 calls/s")):
                for how in ("presence", "app"):
                    rows.append((label, how, flood(mc, args.flood, how, pace)[1]))
        for label in ("as fast as possible", "60 calls/s"):
            app = statistics.median([r for lab, how, r in rows if lab == label and how == "app"])
            for how in ("presence", "app"):
                rates = [r for lab, h, r in rows if lab == label and h == how]
                mid = statistics.median(rates)
                print(
                    f"  {label:19s} {how:9s} {mid:9.1f}/s delivered "
                    f"(min {min(rates):.1f}, max {max(rates):.1f})   x{mid / app:.4f} of app"
                )
        mc.send("quit")
        time.sleep(0.2)
    finally:
        mc.end_all()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
