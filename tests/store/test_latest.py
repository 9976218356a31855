"""LatestWins: wall-clock last-writer-wins over a SharedDict, converging under partitions."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from test_store_memory import devices, wait_equal

import mpstore
from mpstore import MISSING, LatestWins


class FakeClock:
    """A settable wall clock shared by the test's devices (each may be offset)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.now = 1_000.0
        self.offset = offset

    def __call__(self) -> float:
        return self.now + self.offset


def views(devs: list[Any], clocks: list[FakeClock]) -> list[LatestWins]:
    return [LatestWins(d.shared_dict("s"), clock=c) for d, c in zip(devs, clocks, strict=False)]


def settle(devs: list[Any]) -> None:
    wait_equal(devs, "s", timeout=20)


def test_a_concurrent_write_that_is_later_in_wall_clock_time_wins_on_every_replica() -> None:
    # Plain SharedDict: the winner of concurrent writes follows Yjs client ids. Across four
    # partitions with the later write made alternately by A and B, LatestWins must always
    # pick the later one; a client-id rule would be wrong in about half the rounds.
    with devices() as make:
        a, b = make("A"), make("B")
        a.wait_for_peers(1, timeout=5)
        clock = FakeClock()
        va, vb = views([a, b], [clock, clock])
        for round_, (first, second) in enumerate(itertools.islice(itertools.cycle([(va, vb), (vb, va)]), 4)):
            make.network.partition([a], [b])  # type: ignore[attr-defined]
            for dev in (a, b):
                dev.wait_for_peers(0, timeout=10)  # type: ignore[attr-defined]
            clock.now += 1
            first["k"] = f"early {round_}"
            clock.now += 1
            second["k"] = f"late {round_}"
            make.network.heal()  # type: ignore[attr-defined]
            a.wait_for_peers(1, timeout=10)
            settle([a, b])
            assert va["k"] == vb["k"] == f"late {round_}"
            # Only the winner's slot may remain once a device writes again; here both exist.
            assert len([s for s in a.shared_dict("s") if s.startswith("k@")]) <= 2


def test_a_write_made_after_seeing_another_wins_even_with_a_clock_behind() -> None:
    with devices() as make:
        a, b = make("A"), make("B")
        a.wait_for_peers(1, timeout=5)
        va, vb = views([a, b], [FakeClock(), FakeClock(offset=-3600.0)])  # B is an hour behind
        va["mode"] = "from A"
        vb.wait_for(lambda v: v.get("mode") == "from A", timeout=10)
        seen = vb.stamp("mode")
        assert seen == (1_000.0, a.my_peer.id)
        vb["mode"] = "from B, later"
        va.wait_for(lambda v: v.get("mode") == "from B, later", timeout=10)
        settle([a, b])
        assert va["mode"] == vb["mode"] == "from B, later"
        stamp = va.stamp("mode")
        assert stamp is not None and stamp[1] == b.my_peer.id
        assert stamp[0] > seen[0]  # stamped above what B saw, though B's clock says an hour ago
        # B's write removed A's dominated slot: one slot per key once writes are seen.
        assert [s for s in a.shared_dict("s") if s.startswith("mode@")] == [f"mode@{b.my_peer.id}"]


def test_delete_wins_over_an_older_concurrent_write_and_loses_to_a_newer_one() -> None:
    with devices() as make:
        a, b = make("A"), make("B")
        a.wait_for_peers(1, timeout=5)
        clock = FakeClock()
        va, vb = views([a, b], [clock, clock])
        va["x"] = 1
        vb.wait_for(lambda v: "x" in v, timeout=10)
        make.network.partition([a], [b])  # type: ignore[attr-defined]
        a.wait_for_peers(0, timeout=10)  # type: ignore[attr-defined]
        clock.now += 1
        vb["x"] = 2  # older
        clock.now += 1
        del va["x"]  # newer
        assert "x" not in va and va.get("x") is None
        make.network.heal()  # type: ignore[attr-defined]
        a.wait_for_peers(1, timeout=10)
        settle([a, b])
        assert "x" not in va and "x" not in vb and len(va) == len(vb) == 0
        with pytest.raises(KeyError):
            del vb["x"]
        # A write made after the delete brings the key back everywhere.
        clock.now += 1
        vb["x"] = 3
        settle([a, b])
        assert va.to_dict() == vb.to_dict() == {"x": 3}


def test_values_come_back_exactly_and_the_mapping_api_works() -> None:
    with devices() as make:
        a, b = make("A"), make("B")
        a.wait_for_peers(1, timeout=5)
        va, vb = views([a, b], [FakeClock(), FakeClock()])
        value = {
            "bytes": b"\x00\xff",
            "list": [1, 2.5, None, {"$x": 1}],
            "big": 2**70,
            "neg0": -0.0,
            "s": "é",
        }
        va["v"] = value
        va["name@with@ats"] = [1, "two"]
        vb.wait_for(lambda v: len(v) == 2, timeout=10)
        got = vb["v"]
        assert got == value and type(got["bytes"]) is bytes
        assert str(got["neg0"]) == "-0.0" and got["big"] == 2**70
        assert sorted(vb) == ["name@with@ats", "v"] and vb["name@with@ats"] == [1, "two"]
        assert vb.to_dict() == {"v": value, "name@with@ats": [1, "two"]}
        with pytest.raises(mpstore.InvalidArgument):
            vb[1] = "x"  # type: ignore[index]
        with pytest.raises(mpstore.InvalidArgument):
            LatestWins({})  # type: ignore[arg-type]
        # Foreign keys and malformed slots in the same store are ignored, not fatal.
        a.shared_dict("s")["plain key"] = 1
        a.shared_dict("s")["bad@" + "0" * 32] = {"t": "soon", "v": 1}
        a.shared_dict("s")["nan@" + "1" * 32] = {"t": float("inf"), "v": 1}
        assert sorted(va) == ["name@with@ats", "v"]


def test_observe_reports_winner_changes_only() -> None:
    with devices() as make:
        a, b = make("A"), make("B")
        a.wait_for_peers(1, timeout=5)
        clock = FakeClock()
        va, vb = views([a, b], [clock, clock])
        reports: queue.Queue[dict[str, tuple[Any, Any]]] = queue.Queue()
        sub = vb.observe(lambda change: reports.put(dict(change.changes)))

        def step(write: Callable[[], None], expect: dict[str, tuple[Any, Any]]) -> None:
            clock.now += 1
            write()
            assert reports.get(timeout=10) == expect

        step(lambda: va.__setitem__("k", "one"), {"k": (MISSING, "one")})
        step(lambda: va.__setitem__("k", "two"), {"k": ("one", "two")})
        # B overwrites: its write also removes A's slot, which is bookkeeping, not a change.
        step(lambda: vb.__setitem__("k", "three"), {"k": ("two", "three")})
        step(lambda: va.__delitem__("k"), {"k": ("three", MISSING)})
        step(lambda: va.__setitem__("end", True), {"end": (MISSING, True)})
        sub.cancel()
        time.sleep(0.2)
        assert reports.empty()


def test_threads_writing_one_key_leave_one_winner() -> None:
    with devices() as make:
        a, b = make("A"), make("B")
        a.wait_for_peers(1, timeout=5)
        va, vb = LatestWins(a.shared_dict("s")), LatestWins(b.shared_dict("s"))
        stop = time.monotonic() + 1.0

        def writer(v: LatestWins, tag: str) -> None:
            i = 0
            while time.monotonic() < stop and i < 500:
                v["k"] = f"{tag}{i}"
                i += 1

        ts = [threading.Thread(target=writer, args=(v, t)) for v, t in ((va, "a"), (vb, "b"), (va, "c"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=30)
        settle([a, b])
        assert va["k"] == vb["k"] and va.stamp("k") == vb.stamp("k")
        assert len([s for s in a.shared_dict("s") if s.startswith("k@")]) <= 2
