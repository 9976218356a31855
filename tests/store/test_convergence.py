"""Hypothesis: random edits, batches, partitions, kills, late joins and interleavings on the
fake network; after healing, every replica is equal and no write is lost unless a later or
concurrent write to its key replaced it."""

from __future__ import annotations

import contextlib
import importlib
import os
import random
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_fakes import FakeNet, Node

from mpstore._docsync import Reader
from mpstore._values import MISSING

# Seeded client ids make a failing example replay the same (both engines draw them here).
_ID_HOOKS = []
for _module in ("mpstore.engines._pycrdt", "mpstore.engines._python._doc"):
    with contextlib.suppress(ImportError):
        _ID_HOOKS.append(importlib.import_module(_module))

KEYS = ["a", "b", "c", "d"]


def state_vector(node: Node) -> dict[int, int]:
    sv = node.core(lambda: node.manager.docsync.doc("s").state_vector())
    r = Reader(sv)
    return {r.read_var_uint(): r.read_var_uint() for _ in range(r.read_var_uint())}


@dataclass
class Write:
    key: str
    value: Any  # MISSING for a delete
    item: tuple[int, int] | None  # (client, clock) of the Yjs item a set created
    replaced_by: list[Write] = field(default_factory=list)


class Model:
    """Which writes a node had integrated when it wrote: those are replaced by its write."""

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.counter = 0

    def value(self) -> int:
        self.counter += 1
        return self.counter

    def write(self, node: Node, ops: list[tuple[str, Any]]) -> None:
        """Apply ``ops`` ([(key, value or MISSING)]) as one transaction on ``node``."""
        sv = state_vector(node)
        final: dict[str, Any] = {}
        for key, value in ops:
            final[key] = value
        store = node.store()
        with store.batch():
            for key, value in final.items():
                if value is MISSING:
                    store.pop(key, None)
                else:
                    store[key] = value
        client = node.core(lambda: node.manager.docsync.doc("s").client_id)
        clock = sv.get(client, 0)
        # The engine creates one item per set, in the order of the batch's sets.
        for key, value in final.items():
            if value is MISSING:
                new = Write(key, MISSING, None)
            else:
                new = Write(key, value, (client, clock))
                clock += 1
            for w in self.writes:
                if w.key == key and w.item is not None and sv.get(w.item[0], 0) > w.item[1]:
                    w.replaced_by.append(new)
            self.writes.append(new)

    def check(self, final: dict[str, Any], survivors_sv: dict[int, int]) -> None:
        def survived(w: Write) -> bool:  # a set not lost with a killed node
            return w.item is not None and survivors_sv.get(w.item[0], 0) > w.item[1]

        for key in KEYS:
            sets = [w for w in self.writes if w.key == key and survived(w)]
            # A write seen by a surviving later set is replaced; one replaced only by deletes
            # (whose survival we do not track) may still show.
            frontier = {w.value for w in sets if not any(survived(r) for r in w.replaced_by)}
            deleted = any(w.key == key and w.value is MISSING for w in self.writes)
            got = final.get(key, MISSING)
            if got is MISSING:
                assert not frontier or deleted, (key, frontier)
            else:
                assert got in frontier, (key, got, frontier)


ops = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 7), st.sampled_from(KEYS)),
    st.tuples(st.just("del"), st.integers(0, 7), st.sampled_from(KEYS)),
    st.tuples(
        st.just("batch"),
        st.integers(0, 7),
        st.lists(st.tuples(st.sampled_from(KEYS), st.booleans()), min_size=1, max_size=4),
    ),
    st.tuples(st.just("connect"), st.integers(0, 7), st.integers(0, 7)),
    st.tuples(st.just("disconnect"), st.integers(0, 7), st.integers(0, 7)),
    st.tuples(st.just("deliver"), st.integers(1, 30)),
    st.tuples(st.just("kill"), st.integers(0, 7)),
    st.tuples(st.just("join"), st.booleans()),
)


@settings(
    max_examples=int(os.environ.get("STORE_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    n=st.integers(2, 5),
    seed=st.integers(0, 2**32),
    schedule=st.lists(ops, max_size=40),
    heal_seed=st.integers(0, 2**32),
)
def test_random_schedules_converge_and_lose_nothing(
    n: int, seed: int, schedule: list[tuple[Any, ...]], heal_seed: int
) -> None:
    ids = random.Random(seed)
    with contextlib.ExitStack() as stack:
        for module in _ID_HOOKS:
            stack.enter_context(
                mock.patch.object(module, "_fresh_client_id", lambda: ids.getrandbits(32) or 1)
            )
        run_schedule(n, seed, schedule, heal_seed)


def run_schedule(n: int, seed: int, schedule: list[tuple[Any, ...]], heal_seed: int) -> None:
    net = FakeNet(seed)
    alive = [net.add(f"P{i}") for i in range(n)]
    model = Model()
    for op in schedule:
        kind = op[0]
        if kind in ("set", "del"):
            node = alive[op[1] % len(alive)]
            model.write(node, [(op[2], model.value() if kind == "set" else MISSING)])
        elif kind == "batch":
            node = alive[op[1] % len(alive)]
            model.write(node, [(k, model.value() if s else MISSING) for k, s in op[2]])
        elif kind == "connect":
            net.connect(alive[op[1] % len(alive)], alive[op[2] % len(alive)])
        elif kind == "disconnect":
            net.disconnect(alive[op[1] % len(alive)], alive[op[2] % len(alive)])
        elif kind == "deliver":
            for _ in range(op[1]):
                if not net.step():
                    break
        elif kind == "kill" and len(alive) > 2:
            victim = alive.pop(op[1] % len(alive))
            net.kill(victim)
        elif kind == "join" and len(net.nodes) < 8:
            newcomer = net.add(f"P{len(alive)}")
            alive.append(newcomer)
            if op[1]:
                net.connect(newcomer, alive[0])
    # Heal: a random spanning tree over the survivors, on top of the links that are up.
    rng = random.Random(heal_seed)
    for i in range(1, len(alive)):
        net.connect(alive[i], alive[rng.randrange(i)])
    net.pump()
    finals = [node.store().to_dict() for node in alive]
    for other in finals[1:]:
        assert other == finals[0]
    svs = [state_vector(node) for node in alive]
    for other in svs[1:]:
        assert other == svs[0]
    model.check(finals[0], svs[0])


@pytest.mark.parametrize("seed", range(6))
def test_long_random_schedules(seed: int) -> None:
    """Longer schedules than Hypothesis favours: 8 peers, 300 operations."""
    rng = random.Random(seed)
    schedule: list[tuple[Any, ...]] = []
    for _ in range(300):
        kind = rng.choices(
            ["set", "del", "batch", "connect", "disconnect", "deliver", "kill", "join"],
            weights=[30, 8, 10, 15, 8, 20, 2, 3],
        )[0]
        if kind in ("set", "del"):
            schedule.append((kind, rng.randrange(8), rng.choice(KEYS)))
        elif kind == "batch":
            ops = [(rng.choice(KEYS), rng.random() < 0.7) for _ in range(rng.randint(1, 4))]
            schedule.append((kind, rng.randrange(8), ops))
        elif kind in ("connect", "disconnect"):
            schedule.append((kind, rng.randrange(8), rng.randrange(8)))
        elif kind == "deliver":
            schedule.append((kind, rng.randint(1, 60)))
        elif kind == "kill":
            schedule.append((kind, rng.randrange(8)))
        else:
            schedule.append((kind, rng.random() < 0.5))
    ids = random.Random(seed)
    with contextlib.ExitStack() as stack:
        for module in _ID_HOOKS:
            stack.enter_context(
                mock.patch.object(module, "_fresh_client_id", lambda: ids.getrandbits(32) or 1)
            )
        run_schedule(6, seed, schedule, seed + 1)
