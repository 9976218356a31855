"""mpstore: find peers nearby and share data with them, without a server."""

from __future__ import annotations

from ._errors import (
    Closed,
    ConfigurationError,
    CorruptUpdate,
    EngineUnavailable,
    InvalidDiscoveryInfo,
    InvalidDisplayName,
    InvalidServiceType,
    MessageTooLarge,
    MpstoreError,
    NotConnected,
    ProtocolError,
    SendTimeout,
    ServiceTypeNotDeclared,
    StoreError,
    Timeout,
    TransportError,
    TransportUnavailable,
)

__version__ = "0.1.0"

__all__ = [
    "Closed",
    "ConfigurationError",
    "CorruptUpdate",
    "EngineUnavailable",
    "InvalidDiscoveryInfo",
    "InvalidDisplayName",
    "InvalidServiceType",
    "MessageTooLarge",
    "MpstoreError",
    "NotConnected",
    "ProtocolError",
    "SendTimeout",
    "ServiceTypeNotDeclared",
    "StoreError",
    "Timeout",
    "TransportError",
    "TransportUnavailable",
    "__version__",
]
