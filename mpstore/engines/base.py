"""The CRDT engine seam: one document holding one root map of ``str -> str``.

The store keeps its own exact value encoding (JSON text with tags, see ``mpstore/_values.py``),
so an engine only ever stores strings under string keys. Everything here runs on the store's
owner thread (the core thread); engines are not thread-safe.

Wire formats are Yjs's: updates are update-format v1, state vectors are Yjs state vectors, so an
engine built on pycrdt and the pure-Python engine interoperate byte for byte. The root map is
named :data:`ROOT_MAP`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping

__all__ = ["ROOT_MAP", "Engine", "EngineDoc"]

#: The name of the one root ``Y.Map`` every mpstore document uses.
ROOT_MAP = "mpstore"


class EngineDoc(abc.ABC):
    """One CRDT document with a single root map of str -> str."""

    @property
    @abc.abstractmethod
    def client_id(self) -> int:
        """This document instance's Yjs client id: random, fresh per instance, never reused."""

    @abc.abstractmethod
    def get(self, key: str) -> str | None:
        """The current value of ``key``, or None if absent."""

    @abc.abstractmethod
    def items(self) -> list[tuple[str, str]]:
        """All current entries."""

    @abc.abstractmethod
    def transact(self, sets: Mapping[str, str], deletes: Iterable[str]) -> bytes:
        """Apply one local transaction (deletes, then sets) and return its v1 update.

        Return ``b""`` when the transaction changed nothing (deleting only absent keys).
        """

    @abc.abstractmethod
    def apply_update(self, update: bytes) -> dict[str, str | None]:
        """Apply a remote v1 update; return ``{key: new value, or None if now absent}`` for every
        key whose visible value changed (empty for an update already known).

        Raise :class:`mpstore.CorruptUpdate` on malformed input, leaving the document unchanged;
        never let a ``BaseException`` from a native engine escape.
        """

    def deleted_last(self) -> bool:
        """True when the last :meth:`apply_update` added no struct but deleted something not
        deleted before.

        An update can teach a document deletions only (of text beside the store, or of a key
        whose foreign value the store hides): neither the state vector nor a visible key changes,
        yet it is new and must be relayed. (With new structs the state vector tells, and an
        engine may answer False.) The default, False, suits an engine that cannot tell.
        """
        return False

    @abc.abstractmethod
    def state_vector(self) -> bytes:
        """The encoded Yjs state vector."""

    def waiting(self) -> bool:
        """True while this document holds updates it cannot integrate yet (a gap in a sender's
        clocks, a missing origin, a deletion of something not here): something is missing, and a
        sync step 1 to a neighbour brings it. Ask when it turns true, not on every update."""
        return False

    def encode_diff_parts(self, state_vector: bytes, max_bytes: int) -> Iterator[bytes]:
        """:meth:`encode_diff` as several updates of about ``max_bytes`` each, every one
        applicable after those before it (the last carries the delete set), encoded lazily as
        the caller asks for the next: a large snapshot then never blocks either side for long.
        The default is the whole diff in one part."""
        yield self.encode_diff(state_vector)

    @abc.abstractmethod
    def encode_diff(self, state_vector: bytes) -> bytes:
        """A v1 update with everything this document has that ``state_vector`` lacks
        (all of it for an empty vector ``b"\\x00"``). Raise CorruptUpdate on a bad vector."""


class Engine(abc.ABC):
    """A factory of documents; one per implementation ('pycrdt', 'python')."""

    name: str = "engine"

    @abc.abstractmethod
    def new_doc(self) -> EngineDoc:
        """A new empty document with a fresh random client id."""
