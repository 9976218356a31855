"""Issue 10 part 5: random fault schedules over the public API on the memory network, pure,
pycrdt and mixed replicas; nothing lost, nothing diverges (the checks: harness.py). The long run
(~1,000 schedules) is benchmarks/faults.py."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .harness import KEYS, run

ENGINES = st.sampled_from(["python", "pycrdt"])

ops = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 7), st.sampled_from(KEYS)),
    st.tuples(st.just("del"), st.integers(0, 7), st.sampled_from(KEYS)),
    st.tuples(
        st.just("batch"),
        st.integers(0, 7),
        st.lists(st.tuples(st.sampled_from(KEYS), st.booleans()), min_size=1, max_size=3),
    ),
    st.tuples(st.just("partition"), st.integers(0, 2**16)),
    st.tuples(st.just("heal")),
    st.tuples(st.just("latency"), st.sampled_from([0.0, 0.002, 0.02])),
    st.tuples(st.just("pause"), st.sampled_from([0.0, 0.05, 0.3])),
    st.tuples(st.just("kill"), st.integers(0, 7)),
    st.tuples(st.just("leave"), st.integers(0, 7)),
    st.tuples(st.just("join"), ENGINES),
    st.tuples(st.just("disconnect"), st.integers(0, 7)),
    st.tuples(st.just("rejoin"), st.integers(0, 7)),
)


@settings(
    max_examples=int(os.environ.get("FAULT_EXAMPLES", "10")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    engines=st.lists(ENGINES, min_size=2, max_size=5),
    schedule=st.lists(ops, max_size=25),
    seed=st.integers(0, 2**16),
)
def test_fault_schedules_lose_nothing(engines: list[str], schedule: list[tuple[Any, ...]], seed: int) -> None:
    outcome = run(engines, schedule, seed=seed)
    assert not outcome.violations, outcome.violations
    # issue 10 part 4: a key only its writer writes never vanishes or goes back elsewhere
    assert not outcome.own_regressions, outcome.own_regressions
