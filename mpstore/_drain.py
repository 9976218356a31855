"""Sans-IO: tell a link whose peer reads slowly from one whose peer stopped reading.

While a link is *held* (over its high-water mark: nothing more is handed to the transport),
its transport's send buffer can only shrink, and it shrinks exactly as fast as the peer reads.
:class:`DrainWatch` samples that buffer (time and sizes passed in) and says when it has not
shrunk at all for ``bound`` seconds: the peer stopped reading, and the link is to be closed as
failed. A slow honest reader shrinks it now and then and is never judged stalled. Transports
that cannot tell their buffer's size (``None``) are judged by the hold alone.
"""

from __future__ import annotations

__all__ = ["DrainWatch"]


class DrainWatch:
    """Progress of one link's send buffer while the link is held (see the module docstring)."""

    def __init__(self, bound: float) -> None:
        if not bound > 0:
            raise ValueError("bound must be > 0 seconds")
        self.bound = bound
        #: Sample the buffer this often while held: a stall is seen within bound * 1.25.
        self.every = bound / 4
        self._since: float | None = None  # the last progress (or the start of the hold)
        self._lowest: int | None = None  # the smallest buffer seen since the hold started
        self._sampled = 0.0

    @property
    def held(self) -> bool:
        """True while the link is held."""
        return self._since is not None

    def update(self, held: bool, buffered: int | None, now: float) -> None:
        """The link is (still) held or not; ``buffered``: bytes its transport has not sent yet."""
        if not held:
            self._since = self._lowest = None
            return
        self._sampled = now
        drained = buffered is not None and (self._lowest is None or buffered < self._lowest)
        if self._since is None or drained:  # a new hold, or progress
            self._since, self._lowest = now, buffered

    def stalled(self, now: float) -> bool:
        """True once the link has been held with no progress for ``bound`` seconds."""
        return self._since is not None and now - self._since >= self.bound

    def idle_for(self, now: float) -> float:
        """Seconds since the last progress of a held link (0 when not held)."""
        return 0.0 if self._since is None else now - self._since

    def next_deadline(self) -> float | None:
        """When to sample again (None while not held)."""
        if self._since is None:
            return None
        return min(self._since + self.bound, self._sampled + self.every)
