"""A standalone atheris fuzz target over every decoder that takes peer bytes (not run by pytest).

    pip install atheris
    python tests/fuzz/atheris_target.py tests/fuzz/corpus -runs=500000

The first input byte picks the target (see ``TARGETS`` in ``tests/fuzz/harness.py``), the rest
is its input. Any exception escaping a driver, an AssertionError from a broken invariant
included, is reported as a crash. See tests/fuzz/README.md.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.setrecursionlimit(10_000)
logging.disable(logging.CRITICAL)  # rejected input is logged; millions of lines would slow us

with atheris.instrument_imports():
    import mpstore  # noqa: F401
    from mpstore import _auth, _core, _peer, _session, _wire  # noqa: F401
    from mpstore.transports._lan import _framing  # noqa: F401

    try:  # the store, when present
        from mpstore import _docsync, _store, _values  # noqa: F401
        from mpstore.engines import _python  # noqa: F401
    except ImportError:
        pass

from tests.fuzz import harness  # noqa: E402


def main() -> None:
    """Run libFuzzer with the command line's options."""
    atheris.Setup(sys.argv, harness.dispatch)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
