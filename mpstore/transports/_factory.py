"""Turn the ``transport=`` argument into a Transport instance."""

from __future__ import annotations

import os
import sys
from typing import Any

from .._errors import ConfigurationError, TransportUnavailable
from .base import Transport
from .memory import MemoryNetwork, MemoryTransport

__all__ = ["in_pythonista", "make_transport"]


def in_pythonista() -> bool:
    """True when running inside Pythonista on iOS/iPadOS."""
    if sys.platform == "ios":
        return True
    executable = sys.executable or ""
    return "Pythonista" in executable or "pythonista" in sys.modules or "objc_util" in sys.modules


def make_transport(spec: Any) -> Transport:
    """'auto' | 'memory' | 'lan' | 'mc' | a MemoryNetwork | a Transport instance.

    'auto' takes the MPSTORE_TRANSPORT environment variable if set, else 'mc' inside
    Pythonista and 'lan' everywhere else.
    """
    if isinstance(spec, Transport):
        return spec
    if isinstance(spec, MemoryNetwork):
        return MemoryTransport(spec)
    if spec == "memory":
        return MemoryTransport(MemoryNetwork.default())
    if spec == "lan":
        return _lan()
    if spec == "mc":
        return _mc()
    if spec == "auto":
        chosen = os.environ.get("MPSTORE_TRANSPORT", "").strip()
        if chosen and chosen != "auto":
            return make_transport(chosen)
        if in_pythonista():
            return _mc()
        return _lan()
    raise ConfigurationError(
        f"unknown transport {spec!r}: use 'auto', 'memory', 'lan', 'mc', "
        "a MemoryNetwork or a Transport instance"
    )


def _lan() -> Transport:
    try:
        from .lan import LanTransport  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise TransportUnavailable(
            f"the LAN transport is not available ({exc}); install it with "
            "pip install 'mpstore[lan]', or use transport='memory' for a local test"
        ) from exc
    transport: Transport = LanTransport()
    return transport


def _mc() -> Transport:
    try:
        from .mc import MCTransport  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise TransportUnavailable(f"the Multipeer Connectivity transport is not available ({exc})") from exc
    transport: Transport = MCTransport()
    return transport
