"""CRDT engines behind one seam: pycrdt when importable, else the pure-Python engine."""
