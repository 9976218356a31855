"""``mpstore demo --processes``: the scoreboard demo with every device in its own OS process.

The devices talk over real TLS on 127.0.0.1 with static addresses (no multicast on loopback):
device k dials the devices started before it. They score points into the shared scoreboard as in
``mpstore demo`` (one batch per point: the score, a ``hit/<name>/<n>`` record, sometimes "mvp"),
one device joins late and receives the board as a snapshot, another leaves the session and
rejoins while everyone keeps scoring. The parent drives each device over a pipe (JSON lines),
then checks every replica: exit code 0 when all are equal and no point was lost, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from ._demo import LEGEND, NAMES, STORE
from ._peer import PeerID
from ._wrapper import MultipeerConnectivity

__all__ = ["run_processes"]

_SERVICE = "mpstore-demo"


class _Device(MultipeerConnectivity):
    """A quiet device: no printing from callbacks (stdout is the pipe to the parent)."""

    def peer_added(self, peer: PeerID) -> None:
        pass

    def peer_removed(self, peer: PeerID) -> None:
        pass

    def receive(self, message: Any, from_peer: PeerID) -> None:
        pass


def _say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _device(args: argparse.Namespace) -> int:
    from .transports.lan import LanTransport

    peers = [("127.0.0.1", int(p)) for p in args.dial]
    transport = LanTransport(host="127.0.0.1", peers=peers, discovery=False, ip_version="v4")
    mc = _Device(args.name, _SERVICE, transport=transport, peer_timeout=2.0)
    board = mc.shared_dict(STORE)
    scored = [0]
    stop = threading.Event()
    rng = random.Random(args.name)

    def play() -> None:
        me = args.name
        while not stop.wait(rng.uniform(0.03, 0.15)):
            n = scored[0] + 1
            with board.batch():
                board[me] = board.get(me, 0) + 1
                board[f"hit/{me}/{n}"] = {"at": round(time.time(), 3)}
                if rng.random() < 0.2:
                    board["mvp"] = me
            scored[0] = n

    player = threading.Thread(target=play, name="demo-player", daemon=True)
    try:
        _say(port=transport.address[1], pid=os.getpid())
        for line in sys.stdin:
            cmd = json.loads(line)
            what = cmd["cmd"]
            if what == "wait":
                t0 = time.monotonic()
                mc.wait_for_peers(cmd["peers"], timeout=cmd["timeout"])
                keys = int(cmd.get("keys", 0))
                board.wait_for(lambda s, keys=keys: len(s) >= keys, timeout=cmd["timeout"])
                _say(ms=round((time.monotonic() - t0) * 1000), keys=len(board))
            elif what == "score":
                player.start()
                _say()
            elif what == "leave":
                mc.disconnect()
                _say()
            elif what == "rejoin":
                mc.start_looking_for_peers()
                _say()
            elif what == "stop":
                stop.set()
                player.join(5)
                _say(scored=scored[0])
            elif what == "board":
                _say(board=board.to_dict(), peers=len(mc.get_peers()))
            elif what == "end":
                break
    finally:
        stop.set()
        mc.end_all()
    return 0


class _Proc:
    def __init__(self, name: str, dial: list[int]) -> None:
        cmd = [sys.executable, "-m", "mpstore._demo_lan", "--device", "--name", name]
        for port in dial:
            cmd += ["--dial", str(port)]
        self.name = name
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ)
        )
        self.port = int(self.read()["port"])

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} exited (status {self.proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "end"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=5)


def run_processes(argv: Sequence[str] = ()) -> int:
    """Run the multi-process scoreboard demo; print a verdict; 0 on success."""
    p = argparse.ArgumentParser(prog="mpstore demo --processes")
    p.add_argument("--devices", type=int, default=4, help="3 to 8 device processes (default 4)")
    p.add_argument("--seconds", type=float, default=8.0, help="length of the scoring, 2 to 14 (default 8)")
    args = p.parse_args(list(argv))
    if not 3 <= args.devices <= len(NAMES):
        p.error(f"--devices must be between 3 and {len(NAMES)}")
    if not 2 <= args.seconds <= 14:
        p.error("--seconds must be between 2 and 14")
    n, t = args.devices, args.seconds
    names = NAMES[:n]
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"{time.monotonic() - t0:5.1f}s  {text}", flush=True)

    procs: list[_Proc] = []
    try:
        for name in names[:-1]:
            procs.append(_Proc(name, [q.port for q in procs]))
            say(f"{name}: pid {procs[-1].proc.pid}, TLS on 127.0.0.1:{procs[-1].port}")
        for proc in procs:
            proc.ask("wait", peers=n - 2, timeout=15)
        for proc in procs:
            proc.ask("score")
        say(f"{n - 1} processes scoring at once")
        time.sleep(0.3 * t)

        keys = len(procs[0].ask("board")["board"])
        late = _Proc(names[-1], [q.port for q in procs])
        procs.append(late)
        got = late.ask("wait", peers=n - 1, keys=keys, timeout=15)
        late.ask("score")
        say(f"{late.name} joined late: snapshot of {got['keys']} keys in {got['ms']} ms")
        time.sleep(0.2 * t)

        leaver = procs[-2]
        leaver.ask("leave")
        say(f"{leaver.name} left the session (keeps scoring alone)")
        time.sleep(0.25 * t)
        leaver.ask("rejoin")
        say(f"{leaver.name} rejoined: replicas merge")
        time.sleep(0.25 * t)

        scored = {proc.name: int(proc.ask("stop")["scored"]) for proc in procs}
        say("scoring stopped: waiting for every replica to agree")
        deadline = time.monotonic() + 15
        while True:
            boards = [proc.ask("board")["board"] for proc in procs]
            equal = all(b == boards[0] for b in boards)
            lost = _lost(boards[0], scored)
            if (equal and not lost) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        print(LEGEND)
        print(f"{'device':8}" + "".join(f"{m:>6}" for m in names) + "   mvp")
        for proc, board in zip(procs, boards, strict=True):
            row = "".join(f"{board.get(m, ''):>6}" for m in names)
            print(f"{proc.name:8}{row}   {board.get('mvp', '')}")
        total = sum(scored.values())
        if equal and not lost:
            say(f"VERDICT: all {n} replicas (processes) are equal; {total} points scored, none lost")
            return 0
        say(f"VERDICT: replicas differ or points were lost (equal={equal}, lost={lost})")
        return 1
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        say(f"VERDICT: the demo failed: {exc!r}")
        return 1
    finally:
        for proc in procs:
            proc.close()


def _lost(board: dict[str, Any], scored: dict[str, int]) -> dict[str, int]:
    lost = {}
    for name, count in scored.items():
        hits = sum(1 for i in range(1, count + 1) if f"hit/{name}/{i}" in board)
        if board.get(name, 0) != count or hits != count:
            lost[name] = count - min(board.get(name, 0), hits)
    return lost


def _main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", action="store_true")
    p.add_argument("--name", default="device")
    p.add_argument("--dial", action="append", default=[])
    args, rest = p.parse_known_args()
    try:
        if args.device:
            return _device(args)
        return run_processes(rest)
    except KeyboardInterrupt:  # Ctrl-C reaches every device process: leave quietly
        return 130


if __name__ == "__main__":
    sys.exit(_main())
