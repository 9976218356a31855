"""``mpstore demo``: simulated devices share a scoreboard through partitions and a late join.

Everything runs in this process on one :class:`~mpstore.MemoryNetwork` (no network needed).
Each device scores points for itself and argues about who is the "mvp"; one device joins late
and receives the board as a snapshot; the network splits in two and heals. The demo ends by
itself with a verdict: exit code 0 when every replica is equal and no point was lost, else 1.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from ._peer import PeerID
from ._store import SharedDict
from ._wrapper import MultipeerConnectivity
from .transports.memory import MemoryNetwork

__all__ = ["run_demo"]

NAMES = ["Ann", "Bob", "Cat", "Dan", "Eve", "Fay", "Gus", "Hal"]
STORE = "scoreboard"
LEGEND = (
    "Each row is one device's own replica of the shared scoreboard. A column per player holds\n"
    "that player's score as this replica sees it; 'mvp' is one key that every device sets to\n"
    "its own name now and then (concurrent writes to one key: all replicas end with the same\n"
    "winner); 'peers' is how many peers the device is connected to. When every row is the same,\n"
    "the replicas agree."
)


class _Device(MultipeerConnectivity):
    """A quiet simulated device that counts what it saw."""

    def __init__(self, name: str, network: MemoryNetwork) -> None:
        self.changes = 0
        super().__init__(name, "mpstore-demo", transport=network, peer_timeout=1.0)

    def peer_added(self, peer: PeerID) -> None:
        pass

    def peer_removed(self, peer: PeerID) -> None:
        pass

    def receive(self, message: Any, from_peer: PeerID) -> None:
        pass

    def store_changed(self, store: Any, change: Any) -> None:
        self.changes += 1


class _Demo:
    def __init__(self, devices: int, seconds: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.network = MemoryNetwork(seed=seed)
        self.names = NAMES[:devices]
        self.seconds = seconds
        self.devices: list[_Device] = []
        self.scored: dict[str, int] = {}
        self.phase = "starting"
        self.events: list[str] = []
        self.history: list[str] = []
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def log(self, text: str) -> None:
        with self.lock:
            self.events.append(f"{time.monotonic() - self.started:5.1f}s  {text}")
            self.history.append(self.events[-1])
            del self.events[:-6]

    def add(self, name: str) -> _Device:
        device = _Device(name, self.network)
        self.devices.append(device)
        self.scored[name] = 0
        thread = threading.Thread(target=self._play, args=(device,), name=f"demo-{name}")
        self.threads.append(thread)
        thread.start()
        return device

    def _play(self, device: _Device) -> None:
        me = device.my_peer.display_name
        board = device.shared_dict(STORE)
        rng = random.Random(self.rng.random())
        while not self.stop.wait(rng.uniform(0.03, 0.15)):
            n = self.scored[me] + 1
            with board.batch():  # one transaction: one update on the wire
                board[me] = board.get(me, 0) + 1
                board[f"hit/{me}/{n}"] = {"at": round(time.monotonic() - self.started, 3)}
                if rng.random() < 0.2:
                    board["mvp"] = me
            self.scored[me] = n

    def board(self, device: _Device) -> SharedDict:
        board: SharedDict = device.shared_dict(STORE)
        return board

    def equal(self) -> bool:
        boards = [self.board(d).to_dict() for d in self.devices]
        return all(b == boards[0] for b in boards)

    def lost_points(self) -> dict[str, int]:
        board = self.board(self.devices[0]).to_dict()
        lost = {}
        for name, count in self.scored.items():
            hits = sum(1 for i in range(1, count + 1) if f"hit/{name}/{i}" in board)
            if board.get(name, 0) != count or hits != count:
                lost[name] = count - min(board.get(name, 0), hits)
        return lost

    def run(self, show: Any) -> int:
        first, late = self.names[:-1], self.names[-1]
        t = self.seconds
        for name in first:
            self.add(name)
        self.phase = f"{len(first)} devices scoring at once"
        self.log(self.phase)
        show()
        self._sleep(0.25 * t, show)

        keys = len(self.board(self.devices[0]))
        joined = time.monotonic()
        newcomer = self.add(late)
        self.board(newcomer).wait_for(lambda s: len(s) >= keys, timeout=5)
        self.phase = f"{late} joined late"
        self.log(
            f"{late} joined late: snapshot of {keys} keys in {(time.monotonic() - joined) * 1000:.0f} ms"
        )
        self._sleep(0.15 * t, show)

        half = len(self.devices) // 2
        left, right = self.devices[:half], self.devices[half:]
        self.network.partition(left, right)
        names = [[d.my_peer.display_name for d in g] for g in (left, right)]
        self.phase = f"partition: {', '.join(names[0])} | {', '.join(names[1])}"
        self.log(self.phase + " (both sides keep scoring)")
        self._sleep(0.3 * t, show)

        self.network.heal()
        self.phase = "healed: replicas merge"
        self.log(self.phase)
        self._sleep(0.15 * t, show)

        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        self.phase = "scoring stopped: waiting for every replica to agree"
        self.log(self.phase)
        deadline = time.monotonic() + max(3.0, 0.15 * t)
        while not (self.equal() and not self.lost_points()) and time.monotonic() < deadline:
            show()
            time.sleep(0.05)
        ok = self.equal() and not self.lost_points()
        total = sum(self.scored.values())
        if ok:
            self.phase = (
                f"VERDICT: all {len(self.devices)} replicas are equal; {total} points scored, none lost"
            )
        else:
            self.phase = (
                f"VERDICT: replicas differ or points were lost "
                f"(equal={self.equal()}, lost={self.lost_points()})"
            )
        show()
        return 0 if ok else 1

    def _sleep(self, seconds: float, show: Any) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            show()
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        for device in self.devices:
            device.end_all()

    # -- rendering

    def rows(self) -> list[list[str]]:
        out = []
        for d in self.devices:
            board = self.board(d).to_dict()
            peers = len(d.get_peers())
            cells = [d.my_peer.display_name, str(peers)]
            cells += [str(board.get(n, "")) for n in self.names]
            cells.append(str(board.get("mvp", "")))
            out.append(cells)
        return out

    def header(self) -> list[str]:
        return ["device", "peers", *self.names, "mvp"]


def _rich_view(demo: _Demo) -> tuple[Any, Any]:
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    def render() -> Any:
        table = Table(title=f"mpstore demo: shared '{STORE}'")
        for i, col in enumerate(demo.header()):
            table.add_column(col, justify="left" if i == 0 else "right")
        rows = demo.rows()
        for row in rows:
            style = None if row[2:] == rows[0][2:] else "yellow"
            table.add_row(*row, style=style)
        with demo.lock:
            log = "\n".join(demo.events)
        return Group(Text(LEGEND, style="dim"), table, Text(demo.phase, style="bold"), Text(log, style="dim"))

    live = Live(render(), refresh_per_second=10, transient=False)
    return live, lambda: live.update(render())


def run_demo(argv: Sequence[str] | None = None) -> int:
    """Run the scoreboard demo; return 0 if every replica ended equal with no point lost."""
    parser = argparse.ArgumentParser(prog="mpstore demo", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=5, help="3 to 8 devices (default 5)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length (default 10)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--plain", action="store_true", help="plain text instead of a live table")
    args = parser.parse_args(argv)
    if not 3 <= args.devices <= len(NAMES):
        parser.error(f"--devices must be between 3 and {len(NAMES)}")
    if not 2 <= args.seconds <= 14:
        parser.error("--seconds must be between 2 and 14")
    demo = _Demo(args.devices, args.seconds, args.seed if args.seed is not None else time.time_ns())
    live: Any = None
    if not args.plain:
        try:
            live, show = _rich_view(demo)
        except ImportError:
            live = None
    if live is None:
        printed = [0]

        def show() -> None:
            with demo.lock:
                new = demo.history[printed[0] :]
                printed[0] += len(new)
            for line in new:
                print(line, flush=True)

    try:
        if live is not None:
            with live:
                code = demo.run(show)
        else:
            code = demo.run(show)
            show()
            print(LEGEND)
            widths = [
                max(len(r[i]) for r in [demo.header(), *demo.rows()]) for i in range(len(demo.header()))
            ]
            for row in [demo.header(), *demo.rows()]:
                print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
            print(demo.phase)
    finally:
        demo.close()
    if live is not None:
        if not live.console.is_terminal:
            print()  # rich leaves a redirected output mid-line after the last render
        print(demo.phase)
    return code
