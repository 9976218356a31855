"""``mpstore demo --processes``: devices as separate OS processes over real TLS on 127.0.0.1.

The parent starts each device as ``python -m mpstore._demo_lan --device ...``; device k dials
the devices before it at static addresses (no multicast on loopback). Every device sends one
message to all, and, when the replicated store is available, writes its own key to a shared
dict. Each device reports what it saw as one JSON line; the parent prints a verdict and exits
0 only if every device saw every peer, every message and (if any) every key.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from ._errors import MpstoreError
from ._peer import PeerID
from ._wrapper import MultipeerConnectivity

__all__ = ["run_processes"]

_SERVICE = "mpstore-demo"


class _Device(MultipeerConnectivity):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.got: list[tuple[str, Any]] = []
        self.cond = threading.Condition()
        super().__init__(*args, **kwargs)

    def peer_added(self, peer: PeerID) -> None:
        pass

    def peer_removed(self, peer: PeerID) -> None:
        pass

    def receive(self, message: Any, from_peer: PeerID) -> None:
        with self.cond:
            self.got.append((from_peer.display_name, message))
            self.cond.notify_all()


def _device(args: argparse.Namespace) -> int:
    from .transports.lan import LanTransport

    peers = [("127.0.0.1", int(p)) for p in args.dial]
    transport = LanTransport(host="127.0.0.1", peers=peers, discovery=False, ip_version="v4")
    mc = _Device(args.name, _SERVICE, transport=transport, peer_timeout=3.0)
    report: dict[str, Any] = {"name": args.name}
    try:
        print(json.dumps({"port": transport.address[1]}), flush=True)
        deadline = time.monotonic() + args.timeout
        mc.wait_for_peers(args.count - 1, timeout=args.timeout)
        report["peers"] = sorted(p.display_name for p in mc.get_peers())
        store: Any = None
        try:
            store = mc.shared_dict("demo")
        except MpstoreError:
            report["store"] = "unavailable"
        if store is not None:
            store[args.name] = f"hello from {args.name}"
        mc.send({"from": args.name, "text": "hello"})
        with mc.cond:
            mc.cond.wait_for(
                lambda: len(mc.got) >= args.count - 1, timeout=max(0.1, deadline - time.monotonic())
            )
            report["messages"] = len(mc.got)
        if store is not None:
            while len(store) < args.count and time.monotonic() < deadline:
                time.sleep(0.02)
            report["store"] = len(store)
        # Stay until the parent says everyone is done, so nobody leaves before the others finished.
        print(json.dumps(report), flush=True)
        sys.stdin.readline()
    finally:
        mc.end_all()
    return 0


def run_processes(argv: Sequence[str] = ()) -> int:
    """Run the multi-process demo; print a verdict; 0 on success."""
    p = argparse.ArgumentParser(prog="mpstore demo --processes")
    p.add_argument("--devices", type=int, default=3, help="number of device processes (2-8)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds before giving up")
    args = p.parse_args(list(argv))
    n = max(2, min(8, args.devices))
    procs: list[subprocess.Popen[str]] = []
    ports: list[str] = []
    t0 = time.monotonic()
    try:
        for k in range(n):
            cmd = [sys.executable, "-m", "mpstore._demo_lan", "--device", "--name", f"device-{k}"]
            cmd += [
                "--count",
                str(n),
                "--timeout",
                str(args.timeout),
                *[arg for q in ports for arg in ("--dial", q)],
            ]
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
            procs.append(proc)
            assert proc.stdout is not None
            first = proc.stdout.readline()
            if not first:
                print(f"FAIL: device-{k} did not start")
                return 1
            ports.append(str(json.loads(first)["port"]))
            print(f"device-{k}: pid {proc.pid}, TLS on 127.0.0.1:{ports[-1]}")
        reports = []
        for k, proc in enumerate(procs):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            reports.append(json.loads(line) if line else {"name": f"device-{k}", "error": "exited"})
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("done\n")
            proc.stdin.flush()
        for proc in procs:
            proc.wait(timeout=10)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"FAIL: {exc!r}")
        return 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
    ok = True
    for k, rep in enumerate(reports):
        others = sorted(f"device-{j}" for j in range(n) if j != k)
        good = rep.get("peers") == others and rep.get("messages") == n - 1
        good = good and rep.get("store") in (n, "unavailable")
        ok = ok and good
        print(f"{'ok  ' if good else 'FAIL'} {json.dumps(rep)}")
    took = time.monotonic() - t0
    print(f"{'OK' if ok else 'FAIL'}: {n} processes over TLS on 127.0.0.1 in {took:.1f} s")
    return 0 if ok else 1


def _main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", action="store_true")
    p.add_argument("--name", default="device")
    p.add_argument("--count", type=int, default=2)
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--dial", action="append", default=[])
    args, rest = p.parse_known_args()
    if args.device:
        return _device(args)
    return run_processes(rest)


if __name__ == "__main__":
    sys.exit(_main())
