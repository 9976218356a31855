"""The pure-Python CRDT engine: a Yjs-compatible document (update format v1) in the stdlib only."""

from __future__ import annotations

from ._doc import PythonDoc, PythonEngine

__all__ = ["PythonDoc", "PythonEngine"]
