"""Deletion sets held with their update until its structs are integrated (both engines)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

from ._update import DeleteSet

__all__ = ["HeldDeletes"]


class HeldDeletes:
    """Deletion sets each waiting until some clocks are integrated (its update's structs).

    Deletions travel with their update: held while the update's structs wait, so that a writer's
    key never shows its old value deleted without its new one (Yjs applies them at once, and the
    key vanishes until the gap fills). Each set waits in a heap on one clock it still needs, so a
    release costs O(log n) per set, not a scan of all of them.
    """

    __slots__ = ("_count", "_heaps", "_seq")

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, int, DeleteSet, dict[int, int]]]] = {}
        self._seq = 0
        self._count = 0

    def __bool__(self) -> bool:
        return self._count > 0

    def add(self, ds: DeleteSet, need: dict[int, int]) -> None:
        """Hold ``ds`` until every client's state reaches ``need[client]`` (not empty)."""
        client, end = next(iter(need.items()))
        self._seq += 1
        heapq.heappush(self._heaps.setdefault(client, []), (end, self._seq, ds, need))
        self._count += 1

    def release(self, state: Callable[[int], int]) -> list[DeleteSet]:
        """The sets whose clocks have all been integrated (``state(client)``), removed here."""
        out: list[DeleteSet] = []
        for client in list(self._heaps):
            heap = self._heaps[client]
            have = state(client)
            while heap and heap[0][0] <= have:
                _end, seq, ds, need = heapq.heappop(heap)
                unmet = next(((c, e) for c, e in need.items() if state(c) < e), None)
                if unmet is None:
                    out.append(ds)
                    self._count -= 1
                else:
                    heapq.heappush(self._heaps.setdefault(unmet[0], []), (unmet[1], seq, ds, need))
            if not heap:
                del self._heaps[client]
        return out

    def __iter__(self) -> Iterator[DeleteSet]:
        for heap in self._heaps.values():
            for _end, _seq, ds, _need in heap:
                yield ds
