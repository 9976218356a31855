"""Runtime.post: calls from other threads run on the core in order, one loop wake-up per burst."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from mpstore._errors import Closed
from mpstore._runtime import Runtime


def test_a_burst_of_posts_costs_one_wake_up_and_keeps_its_order() -> None:
    runtime = Runtime("post-test")
    try:
        wakeups = 0
        original = runtime.loop.call_soon_threadsafe

        def counting(*args: Any) -> Any:
            nonlocal wakeups
            wakeups += 1
            return original(*args)

        runtime.loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        gate = threading.Event()
        seen: list[int] = []
        runtime.post(gate.wait, 10)  # the core is busy while the burst is posted
        for i in range(1000):
            runtime.post(seen.append, i)
        gate.set()
        assert runtime.call(lambda: list(seen), timeout=10) == list(range(1000))
        assert wakeups <= 3, wakeups  # the blocker's, the burst's, call()'s: not one per post
    finally:
        runtime.stop()


def test_a_failing_posted_call_does_not_stop_the_others() -> None:
    runtime = Runtime("post-test")
    try:
        seen: list[str] = []

        def boom() -> None:
            raise RuntimeError("bug in a posted call")

        runtime.post(seen.append, "a")
        runtime.post(boom)
        runtime.post(seen.append, "b")
        assert runtime.call(lambda: list(seen), timeout=10) == ["a", "b"]
    finally:
        runtime.stop()


def test_post_after_stop_raises_closed() -> None:
    runtime = Runtime("post-test")
    runtime.stop()
    with pytest.raises(Closed):
        runtime.post(print)


def test_post_many_hands_a_burst_over_at_once_in_order_with_the_other_posts() -> None:
    runtime = Runtime("post-test")
    try:
        gate = threading.Event()
        seen: list[Any] = []
        calls: list[int] = []

        def many(items: list[int]) -> None:
            calls.append(len(items))
            seen.extend(items)

        runtime.post(gate.wait, 10)  # the core is busy while the burst is posted
        for i in range(300):
            runtime.post_many(many, i)
            if i % 100 == 99:
                runtime.post(seen.append, f"plain {i}")  # splits the batch: order is kept
        runtime.post(runtime.at_batch_end, lambda: seen.append("batch end"))
        runtime.post(seen.append, "last")
        gate.set()
        expected: list[Any] = []
        for i in range(300):
            expected.append(i)
            if i % 100 == 99:
                expected.append(f"plain {i}")
        runtime.call(lambda: None, timeout=10)  # maybe in the burst's batch: before its end
        assert runtime.call(lambda: list(seen), timeout=10) == [*expected, "last", "batch end"]
        assert calls == [100, 100, 100]
    finally:
        runtime.stop()


def test_a_hook_at_the_batch_end_may_add_one_that_runs_in_the_same_batch_end() -> None:
    runtime = Runtime("post-test")
    try:
        seen: list[Any] = []

        def second() -> None:
            seen.append(("second", runtime.in_batch))

        def first() -> None:
            seen.append(("first", runtime.in_batch))
            runtime.at_batch_end(second)

        def posted() -> None:
            runtime.at_batch_end(first)
            runtime.loop.call_soon(seen.append, "next turn")

        runtime.post(posted)
        runtime.call(lambda: None, timeout=10)
        runtime.call(lambda: None, timeout=10)
        assert seen[:3] == [("first", True), ("second", True), "next turn"]
        assert runtime.call(lambda: runtime.in_batch, timeout=10) is True  # inside a posted call
    finally:
        runtime.stop()
