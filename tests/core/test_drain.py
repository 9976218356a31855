"""The sans-IO drain watch: a held link that makes no progress for its bound is stalled; a slow
one that drains now and then never is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpstore._drain import DrainWatch


def test_a_held_link_that_never_drains_is_stalled_after_the_bound() -> None:
    watch = DrainWatch(10.0)
    watch.update(True, 5000, 100.0)
    assert watch.next_deadline() == 102.5
    for t in (102.5, 105.0, 107.5):
        watch.update(True, 5000, t)
        assert not watch.stalled(t)
    watch.update(True, 5000, 110.0)
    assert watch.stalled(110.0) and watch.idle_for(110.0) == 10.0


def test_progress_restarts_the_clock_and_release_forgets_the_hold() -> None:
    watch = DrainWatch(10.0)
    watch.update(True, 5000, 0.0)
    watch.update(True, 4999, 9.0)  # one byte read: progress
    assert not watch.stalled(18.0) and watch.stalled(19.0)
    watch.update(True, 6000, 12.0)  # more than the lowest seen is no progress
    assert watch.stalled(19.0)
    watch.update(False, 6000, 19.0)
    assert not watch.held and not watch.stalled(100.0) and watch.next_deadline() is None


def test_without_buffer_sizes_the_hold_alone_counts() -> None:
    watch = DrainWatch(2.0)
    watch.update(True, None, 0.0)
    watch.update(True, None, 1.5)
    assert not watch.stalled(1.9) and watch.stalled(2.0)


def test_a_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DrainWatch(0)


@given(st.lists(st.tuples(st.floats(0.01, 3.0), st.integers(0, 10)), min_size=1, max_size=60))
def test_a_reader_that_drains_within_every_bound_is_never_stalled(steps: list[tuple[float, int]]) -> None:
    # Samples come at most `every` apart, and the buffer shrinks by at least one byte at least
    # once per bound: never stalled. (Samples may bring no progress in between.)
    watch = DrainWatch(4.0)
    now, buffered, last_progress = 0.0, 10_000, 0.0
    watch.update(True, buffered, now)
    for gap, read in steps:
        now += min(gap, watch.every)
        if read or now - last_progress >= 3.0:
            buffered -= max(read, 1)
            last_progress = now
        watch.update(True, buffered, now)
        assert not watch.stalled(now)
