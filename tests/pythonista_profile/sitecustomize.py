"""The Pythonista profile: make compiled third-party packages unimportable, from startup.

Pythonista 3.4 runs Python 3.10 and installs pure-Python packages only. Put this directory first
on PYTHONPATH and Python imports this module at startup (``sitecustomize``); from then on any
module whose spec points at an extension module (``.so``/``.pyd``) outside the standard library
raises ImportError, and so do pycrdt, zeroconf and cryptography by name (not on Pythonista).
The test tools themselves (pytest, hypothesis: recent hypothesis ships a compiled helper) are
exempt: they do not run on the device.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import sysconfig

BLOCKED_NAMES = ("pycrdt", "zeroconf", "cryptography", "_cffi_backend", "pyo3_runtime")
TEST_TOOLS = ("hypothesis", "_hypothesis_ftz_detector", "pytest", "_pytest", "pluggy")
_EXTENSIONS = (*importlib.machinery.EXTENSION_SUFFIXES, ".so", ".pyd")
_STDLIB = tuple(
    os.path.realpath(p) + os.sep
    for p in {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")}
    if p
)


def _stdlib(origin: str) -> bool:
    real = os.path.realpath(origin)
    return real.startswith(_STDLIB) and "site-packages" not in real


class PythonistaProfile(importlib.abc.MetaPathFinder):
    """Refuse what Pythonista could not install."""

    blocked: list[str] = []

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        top = fullname.split(".")[0]
        if top in TEST_TOOLS:
            return None
        if top in BLOCKED_NAMES:
            self.blocked.append(fullname)
            raise ModuleNotFoundError(f"{fullname} is not available in the Pythonista profile", name=fullname)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)  # type: ignore[call-arg]
            if spec is None:
                continue
            origin = spec.origin or ""
            if origin.endswith(_EXTENSIONS) and not _stdlib(origin):
                self.blocked.append(fullname)
                raise ModuleNotFoundError(
                    f"{fullname} is a compiled extension ({origin}): not importable in the Pythonista profile"
                )
            return None
        return None


if not any(isinstance(f, PythonistaProfile) for f in sys.meta_path):
    sys.meta_path.insert(0, PythonistaProfile())
    os.environ["MPSTORE_PYTHONISTA_PROFILE"] = "1"
