"""CRDT engines behind one seam: the pure-Python engine by default, pycrdt on request."""

from __future__ import annotations

import importlib
import os

from .._errors import ConfigurationError, EngineUnavailable
from .base import ROOT_MAP, Engine, EngineDoc

__all__ = ["ENGINE_NAMES", "ROOT_MAP", "Engine", "EngineDoc", "load_engine"]

#: Engine names :func:`load_engine` accepts besides ``None``/``'auto'``.
ENGINE_NAMES = ("pycrdt", "python")
# 'auto' prefers the pure engine: it matches JavaScript Yjs on every schedule tested, never
# panics on hostile input, and in the store's use (one small update at a time, change events
# per key) it applies remote updates about 3x faster than pycrdt behind the causal gate, with
# the same memory per key (benchmarks/gate.py, benchmarks/engines.py; docs/ENGINE.md).
_AUTO_ORDER = ("python", "pycrdt")

_INSTALL_HINT = (
    "install pycrdt (`pip install 'mpstore[store]'`, Python >= 3.11 only), or use the pure-Python "
    "engine that every mpstore ships: engine='python', MPSTORE_ENGINE=python, or leave both unset "
    "to choose automatically"
)


def _load(name: str) -> Engine:
    if name == "pycrdt":
        try:
            module = importlib.import_module("mpstore.engines._pycrdt")
        except ImportError as exc:
            raise EngineUnavailable(
                f"the 'pycrdt' store engine cannot be loaded ({exc}); {_INSTALL_HINT}"
            ) from exc
        engine: Engine = module.PycrdtEngine()
        return engine
    if name == "python":
        try:
            module = importlib.import_module("mpstore.engines._python")
        except ImportError as exc:
            raise EngineUnavailable(
                f"the pure-Python store engine failed to import ({exc}): every mpstore ships it, so "
                "this installation is damaged; reinstall it (`pip install --force-reinstall mpstore`)"
            ) from exc
        engine = module.PythonEngine()
        return engine
    raise ConfigurationError(f"unknown store engine {name!r}: use 'auto', 'pycrdt' or 'python'")


def load_engine(name: str | None = None) -> Engine:
    """The CRDT engine ``name`` ('pycrdt', 'python'), or for None/'auto' the best available.

    For auto, the environment variable ``MPSTORE_ENGINE`` picks one; otherwise the pure-Python
    engine (pycrdt if a build lacks it). Raises :class:`mpstore.EngineUnavailable` saying
    what to install when nothing can be loaded.
    """
    if name is None or name == "auto":
        forced = os.environ.get("MPSTORE_ENGINE", "").strip().lower()
        if forced and forced != "auto":
            return _load(forced)
        reasons = []
        for candidate in _AUTO_ORDER:
            try:
                return _load(candidate)
            except EngineUnavailable as exc:
                reasons.append(f"{candidate}: {exc.__cause__ or exc}")
        raise EngineUnavailable(
            "the replicated store needs a CRDT engine and none can be loaded ("
            + "; ".join(reasons)
            + "): install pycrdt with `pip install 'mpstore[store]'` (Python >= 3.11)"
        )
    return _load(name)
