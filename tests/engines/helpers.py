"""Test helpers: a minimal pycrdt-backed EngineDoc, used as the oracle next to the pure engine."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mpstore import CorruptUpdate
from mpstore.engines.base import ROOT_MAP, EngineDoc


class PycrdtDoc(EngineDoc):
    """The EngineDoc contract on pycrdt (tests only; the store's adapter lives elsewhere)."""

    def __init__(self) -> None:
        import pycrdt

        self._pycrdt = pycrdt
        self.doc: Any = pycrdt.Doc()
        self.map: Any = self.doc.get(ROOT_MAP, type=pycrdt.Map)
        self._updates: list[bytes] = []
        self._sub = self.doc.observe(lambda event: self._updates.append(event.update))

    @property
    def client_id(self) -> int:
        return int(self.doc.client_id)

    def get(self, key: str) -> str | None:
        value = self.map.get(key)
        return value if isinstance(value, str) else None

    def items(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.map.items() if isinstance(v, str)]

    def transact(self, sets: Mapping[str, str], deletes: Iterable[str]) -> bytes:
        self._updates.clear()
        with self.doc.transaction():
            for key in deletes:
                if key in self.map:
                    del self.map[key]
            for key, value in sets.items():
                self.map[key] = value
        out = b"".join(self._updates)
        self._updates.clear()
        return out if out not in (b"", b"\x00\x00") else b""

    def apply_update(self, update: bytes) -> dict[str, str | None]:
        before = dict(self.items())
        try:
            self.doc.apply_update(update)
        except BaseException as exc:  # pyo3 PanicException is a BaseException
            raise CorruptUpdate(str(exc)) from None
        after = dict(self.items())
        return {k: after.get(k) for k in set(before) | set(after) if before.get(k) != after.get(k)}

    def state_vector(self) -> bytes:
        return bytes(self.doc.get_state())

    def encode_diff(self, state_vector: bytes) -> bytes:
        return bytes(self.doc.get_update(state_vector))


def decode_sv(sv: bytes) -> dict[int, int]:
    """A state vector as a dict (order-independent comparison)."""
    from mpstore.engines._python._update import decode_state_vector

    return decode_state_vector(sv)
