"""Checks that only mean something under tools/pythonista_profile.sh (skipped elsewhere)."""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("MPSTORE_PYTHONISTA_PROFILE") != "1",
    reason="runs in the Pythonista profile only (tools/pythonista_profile.sh)",
)


def test_python_is_3_10() -> None:
    assert sys.version_info[:2] == (3, 10)


@pytest.mark.parametrize("name", ["pycrdt", "zeroconf", "cryptography"])
def test_native_dependencies_are_unimportable(name: str) -> None:
    with pytest.raises(ImportError):
        importlib.import_module(name)


def test_mpstore_and_its_transports_load_nothing_compiled() -> None:
    import mpstore
    import mpstore.transports.mc
    import mpstore.transports.memory

    stdlib = os.path.realpath(sysconfig.get_path("stdlib"))
    compiled = []
    for name, module in list(sys.modules.items()):
        origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
        tool = name.split(".")[0] in ("hypothesis", "_hypothesis_ftz_detector")
        native = origin.endswith((".so", ".pyd"))
        if native and not tool and not os.path.realpath(origin).startswith(stdlib):
            compiled.append(name)
    assert compiled == []
    assert mpstore.transports.memory.MemoryTransport is not None
    assert mpstore.transports.mc.MCTransport.max_peers == 8
