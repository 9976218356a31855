"""The Multipeer Connectivity transport (``transport='mc'``): Pythonista's objc_util or pyobjc.

``MCTransport`` is written once on :class:`~mpstore.transports.mc.bridge.Bridge`; the adapter is
chosen here: objc_util inside Pythonista (iOS), pyobjc on macOS, else ``TransportUnavailable``.
"""

from __future__ import annotations

import importlib.util
import sys

from ..._errors import TransportUnavailable
from .._factory import in_pythonista as _factory_in_pythonista
from .bridge import Bridge
from .transport import MCTransport

__all__ = ["MCTransport", "in_pythonista", "make_bridge"]


def in_pythonista() -> bool:
    """True inside Pythonista (iOS), where objc_util is the bridge to ObjC."""
    if _factory_in_pythonista():
        return True
    try:
        return importlib.util.find_spec("objc_util") is not None
    except (ImportError, ValueError):
        return False


def make_bridge() -> Bridge:
    """The bridge for this platform, or ``TransportUnavailable`` saying what is missing."""
    if in_pythonista():
        from ._objc_util import ObjCUtilBridge

        bridge: Bridge = ObjCUtilBridge()
        return bridge
    if sys.platform == "darwin":
        try:
            from ._pyobjc import PyObjCBridge
        except ImportError as e:
            raise TransportUnavailable(
                "transport='mc' on macOS needs pyobjc: pip install 'mpstore[macos]' "
                f"(pyobjc-framework-MultipeerConnectivity); import failed: {e}"
            ) from e
        return PyObjCBridge()
    raise TransportUnavailable(
        "transport='mc' (Apple Multipeer Connectivity) runs in Pythonista on iOS or with pyobjc "
        f"on macOS, not on {sys.platform!r}; use transport='lan' or 'memory' here"
    )
