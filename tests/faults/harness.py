"""Fault injection over the public API on the memory network: a schedule, its run, its checks.

A schedule is a list of operations (writes, batches, partitions, heals, latency, kills, clean
leaves, late joiners, disconnect/rejoin) on 2-8 devices, each on the pycrdt or the pure engine.
After it, the network heals and every live device reconnects; then:

* every live replica is equal;
* every surviving write is present, or superseded: the value a key ends with was written to it
  and is not superseded by a surviving write (one whose author had observed it, directly or
  through a chain of such writes); a key ends absent only if some write deleted it, or if every
  surviving write to it was superseded; a write survives if its author is alive at the end, or
  if a live device observed it;
* so every write of a killed or departed device that reached a live one survives too;
* each live device's sequence of observed changes, replayed from its content when it opened the
  store (empty, unless data arrived before), gives its final content.

What a device "observed" comes from its own change callbacks, which lag behind its document: a
write may look concurrent when it was not, which only makes the check weaker, never wrong.
Used by tests/faults/test_faults.py (a few schedules) and benchmarks/faults.py (~1,000).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import mpstore
from mpstore import MISSING

KEYS = ["a", "b", "c", "d"]
STORE = "s"


class Device(mpstore.MultipeerConnectivity):
    """A quiet device recording its store's observed changes and the values it has seen."""

    def __init__(self, name: str, *, transport: Any, engine: str, peer_timeout: float) -> None:
        self.log: list[dict[str, tuple[Any, Any]]] = []
        self.seen: set[int] = set()
        self.lock = threading.Lock()
        super().__init__(name, "faults", transport=transport, engine=engine, peer_timeout=peer_timeout)
        self.store = self.shared_dict(STORE)
        self.sub = self.store.observe(self._on_change)
        # Data that arrived before the store was opened is its content when opened, without
        # change events: the replay starts here (changes seen twice replay to the same state).
        self.initial = self.store.to_dict()
        self.seen.update(v for v in self.initial.values() if type(v) is int)

    def _on_change(self, change: Any) -> None:
        with self.lock:
            self.log.append(dict(change.changes))
            for _old, new in change.changes.values():
                if type(new) is int:
                    self.seen.add(new)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        pass


@dataclass
class Write:
    """One key written by one transaction: ``value`` is a unique int, or None for a delete."""

    writer: str
    key: str
    value: int | None
    seen: frozenset[int]


@dataclass
class Outcome:
    """A schedule's result: what broke (empty if nothing) and figures."""

    violations: list[str] = field(default_factory=list)
    writes: int = 0
    devices: int = 0
    killed: int = 0
    left: int = 0
    engines: tuple[str, ...] = ()
    converge_s: float = 0.0
    total_s: float = 0.0
    stale_old: int = 0  # observed changes whose "old" side differs from the replayed state
    # issue 10 part 4, counted apart: a device's own key (only it writes it, nobody deletes it)
    # seen vanishing or going back to an older value on another replica, mid-run
    own_regressions: list[str] = field(default_factory=list)


def generate(rng: random.Random, length: int) -> list[tuple[Any, ...]]:
    """A random schedule of ``length`` operations (benchmarks; Hypothesis draws its own)."""
    out: list[tuple[Any, ...]] = []
    table = {  # operation: weight
        "set": 30, "del": 6, "batch": 10, "own": 10, "partition": 6, "heal": 5, "latency": 4,
        "pause": 8, "kill": 3, "leave": 3, "join": 4, "disconnect": 3, "rejoin": 3,
    }  # fmt: skip
    kinds, weights = list(table), list(table.values())
    for _ in range(length):
        kind = rng.choices(kinds, weights)[0]
        if kind in ("set", "del"):
            out.append((kind, rng.randrange(8), rng.choice(KEYS)))
        elif kind == "own":
            out.append((kind, rng.randrange(8)))
        elif kind == "batch":
            out.append(
                (
                    kind,
                    rng.randrange(8),
                    [(rng.choice(KEYS), rng.random() < 0.75) for _ in range(rng.randint(1, 3))],
                )
            )
        elif kind == "partition":
            out.append((kind, rng.randrange(2**16)))
        elif kind == "latency":
            out.append((kind, rng.choice([0.0, 0.002, 0.02])))
        elif kind == "pause":
            out.append((kind, rng.choice([0.0, 0.05, 0.3])))
        elif kind in ("kill", "leave", "disconnect", "rejoin"):
            out.append((kind, rng.randrange(8)))
        elif kind == "join":
            out.append((kind, rng.choice(["python", "pycrdt"])))
        else:
            out.append((kind,))
    return out


def run(
    engines: list[str],
    schedule: list[tuple[Any, ...]],
    *,
    seed: int = 0,
    peer_timeout: float = 0.5,
    settle_timeout: float = 30.0,
) -> Outcome:
    """Run ``schedule`` on ``len(engines)`` devices (engine per device) and check the end state."""
    started = time.monotonic()
    out = Outcome()
    net = mpstore.MemoryNetwork(seed=seed)
    made: list[Device] = []
    alive: list[Device] = []  # live devices (not killed, not ended)
    gone: set[str] = set()
    disconnected: set[Device] = set()
    writes: list[Write] = []
    counter = [0]

    def make(engine: str) -> Device:
        d = Device(f"P{len(made)}", transport=net, engine=engine, peer_timeout=peer_timeout)
        made.append(d)
        alive.append(d)
        return d

    def write(d: Device, ops: list[tuple[str, bool]]) -> None:
        final: dict[str, int | None] = {}
        for key, is_set in ops:
            if is_set:
                counter[0] += 1
                final[key] = counter[0]
            else:
                final[key] = None
        with d.lock:
            seen = frozenset(d.seen)
        s = d.store
        if len(final) == 1:
            ((key, value),) = final.items()
            if value is None:
                s.pop(key, None)
            else:
                s[key] = value
        else:
            with s.batch():
                for key, value in final.items():
                    if value is None:
                        s.pop(key, None)
                    else:
                        s[key] = value
        with d.lock:
            d.seen.update(v for v in final.values() if v is not None)
        for key, value in final.items():
            writes.append(Write(d.my_peer.display_name, key, value, seen))

    try:
        for engine in engines:
            make(engine)
        for op in schedule:
            kind = op[0]
            if kind in ("set", "del"):
                write(alive[op[1] % len(alive)], [(op[2], kind == "set")])
            elif kind == "batch":
                write(alive[op[1] % len(alive)], list(op[2]))
            elif kind == "own":
                d = alive[op[1] % len(alive)]
                write(d, [(own_key(d), True)])
            elif kind == "partition":
                prng = random.Random(op[1])
                groups: list[list[Device]] = [[], []]
                for d in alive:
                    groups[prng.randrange(2)].append(d)
                net.partition(*[g for g in groups if g])
            elif kind == "heal":
                net.heal()
            elif kind == "latency":
                net.set_latency(op[1])
            elif kind == "pause":
                time.sleep(op[1])
            elif kind in ("kill", "leave") and len(alive) > 2:
                victim = alive.pop(op[1] % len(alive))
                gone.add(victim.my_peer.display_name)
                disconnected.discard(victim)
                if kind == "kill":
                    net.kill(victim)
                    out.killed += 1
                else:
                    victim.end_all()
                    out.left += 1
            elif kind == "join" and len(made) < 8:
                make(op[1])
            elif kind == "disconnect":
                d = alive[op[1] % len(alive)]
                if d not in disconnected:
                    d.disconnect()
                    disconnected.add(d)
            elif kind == "rejoin" and disconnected:
                d = sorted(disconnected, key=lambda x: x.my_peer.display_name)[op[1] % len(disconnected)]
                d.start_looking_for_peers()
                disconnected.discard(d)
        # Heal everything and let it settle.
        net.set_latency(0.0)
        net.heal()
        for d in disconnected:
            d.start_looking_for_peers()
        settle_start = time.monotonic()
        deadline = settle_start + settle_timeout
        for d in alive:
            try:
                d.wait_for_peers(len(alive) - 1, timeout=max(0.1, deadline - time.monotonic()))
            except mpstore.Timeout as exc:
                out.violations.append(f"{d.my_peer.display_name} did not reconnect: {exc}")
        final = _settle(alive, deadline)
        out.converge_s = time.monotonic() - settle_start
        if final is None:
            contents = [d.store.to_dict() for d in alive]
            out.violations.append(f"live replicas differ after {settle_timeout} s: {contents}")
            final = contents[0]
        out.violations += _check_writes(writes, final, alive, gone)
        stale, replay_violations, regressions = _check_replays(alive, final, deadline)
        out.stale_old = stale
        out.own_regressions = regressions
        out.violations += replay_violations
        out.writes = len(writes)
        out.devices = len(made)
        out.engines = tuple(sorted({d._node.store.engine_name for d in made if d._node.store is not None}))
        return out
    finally:
        for d in made:
            try:
                d.end_all()
            except Exception:  # cleanup must reach every device
                pass
        out.total_s = time.monotonic() - started


def own_key(d: Device) -> str:
    """The key only ``d`` writes (and nobody deletes)."""
    return f"own-{d.my_peer.display_name}"


def _settle(alive: list[Device], deadline: float, quiet: float = 0.3) -> dict[str, Any] | None:
    """The common content once every live replica is equal and stays so for ``quiet`` s."""
    while time.monotonic() < deadline:
        contents = [d.store.to_dict() for d in alive]
        if all(c == contents[0] for c in contents[1:]):
            time.sleep(quiet)
            again = [d.store.to_dict() for d in alive]
            if again == contents:
                return contents[0]
        else:
            time.sleep(0.02)
    return None


def _check_writes(
    writes: list[Write], final: dict[str, Any], alive: list[Device], gone: set[str]
) -> list[str]:
    observed: set[int] = set()
    for d in alive:
        with d.lock:
            observed |= d.seen
    by_value = {w.value: w for w in writes if w.value is not None}

    def survived(w: Write) -> bool:
        return w.writer not in gone or (w.value is not None and w.value in observed)

    closure_memo: dict[int, frozenset[int]] = {}

    def closure(seen: frozenset[int]) -> set[int]:
        out: set[int] = set()
        stack = list(seen)
        while stack:
            v = stack.pop()
            if v in out:
                continue
            out.add(v)
            if v in closure_memo:
                out |= closure_memo[v]
                continue
            w = by_value.get(v)
            if w is not None:
                stack.extend(w.seen)
        return out

    supersedes: dict[int, list[tuple[Write, bool]]] = {}  # value -> [(later write, sure)]
    for w in writes:
        sure = survived(w) if w.value is not None else w.writer not in gone
        for v in closure(w.seen):
            supersedes.setdefault(v, []).append((w, sure))

    problems: list[str] = []
    for key in sorted({w.key for w in writes} | set(final)):
        sets = [w for w in writes if w.key == key and w.value is not None and survived(w)]

        def later(w: Write, sure_only: bool, key: str = key) -> bool:
            return any(o.key == key and (s or not sure_only) for o, s in supersedes.get(w.value or 0, ()))

        got = final.get(key, MISSING)
        if got is MISSING:
            # Only a delete removes a key. Which writes a delete removed cannot be told from the
            # callbacks (they lag), so any delete of the key, surviving or not, allows it.
            deleted = any(w.key == key and w.value is None for w in writes)
            if sets and not deleted:
                problems.append(f"key {key!r} missing, yet nobody deleted it: {[w.value for w in sets]} lost")
        else:
            w = by_value.get(got) if type(got) is int else None
            if w is None or w.key != key:
                problems.append(f"key {key!r} holds {got!r}, which nobody wrote to it")
            elif later(w, sure_only=True):
                problems.append(f"key {key!r} holds {got!r}, superseded by a surviving write")
    return problems


def _check_replays(
    alive: list[Device], final: dict[str, Any], deadline: float
) -> tuple[int, list[str], list[str]]:
    """Each device's observed changes replayed from empty give ``final`` (callbacks may lag);
    also what each saw of the others' own keys (values only grow there)."""
    regressions: list[str] = []
    problems: list[str] = []
    stale = 0
    for d in alive:
        while True:
            with d.lock:
                log = list(d.log)
            state: dict[str, Any] = dict(d.initial)
            bad_old = 0
            for change in log:
                for key, (old, new) in change.items():
                    if state.get(key, MISSING) != old:
                        bad_old += 1
                    if new is MISSING:
                        state.pop(key, None)
                    else:
                        state[key] = new
            if state == final or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        stale += bad_old
        last: dict[str, int] = {}
        for change in log:
            for key, (_old, new) in change.items():
                if not key.startswith("own-") or key == own_key(d):
                    continue
                if new is MISSING and key in last:
                    regressions.append(f"{d.my_peer.display_name} saw {key} vanish after {last[key]}")
                elif type(new) is int:
                    if key in last and new < last[key]:
                        regressions.append(f"{d.my_peer.display_name} saw {key} go back {last[key]} -> {new}")
                    last[key] = max(new, last.get(key, 0))
        if state != final:
            problems.append(f"{d.my_peer.display_name}: observed changes replay to {state}, final is {final}")
    return stale, problems, regressions
