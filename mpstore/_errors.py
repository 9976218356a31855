"""The mpstore error tree.

Every error mpstore raises on purpose derives from :class:`MpstoreError`::

    MpstoreError
    ├── ConfigurationError (ValueError)          a setting is not acceptable (constructor, transport,
    │                                            engine, store name, MemoryNetwork fault settings)
    │   ├── InvalidServiceType                   service_type breaks Apple's/RFC 6335 rule
    │   ├── InvalidDisplayName                   empty, or over 63 UTF-8 bytes
    │   └── InvalidDiscoveryInfo                 not a DNS-SD TXT-compatible str -> str mapping
    ├── InvalidArgument (TypeError)              a message or store value mpstore cannot carry
    │                                            exactly, a store key or to_peer of the wrong type
    ├── NotConnected (LookupError)               send() named a peer that is not connected
    ├── MessageTooLarge (ValueError)             a message over max_message_size
    ├── Closed (RuntimeError)                    the object was ended with end_all()
    ├── Timeout (TimeoutError)                   a blocking call ran out of time
    │   └── SendTimeout                          a reliable send waited too long for a slow peer
    ├── TransportError                           a transport could not do what was asked
    │   ├── TransportUnavailable                 its dependencies or platform are missing
    │   ├── ServiceTypeNotDeclared               iOS refused the service type (error -72008)
    │   └── ServerRefused                        a Yjs server refused us (token, permission)
    ├── ProtocolError                            a peer sent something we cannot accept
    ├── TransferFailed                           a file transfer did not complete
    │   ├── TransferDeclined                     the receiver said no (or had no room)
    │   └── TransferCancelled                    either side cancelled it
    └── StoreError                               the replicated store
        ├── EngineUnavailable (ImportError)      no CRDT engine can be loaded
        ├── CorruptUpdate (ValueError)           a CRDT update or state vector is malformed
        └── PersistError                         saving stores to disk (data_dir) failed
            └── StoreLocked                      another process has the data_dir open

A ``ProtocolError`` never reaches user code from the network: the offending connection is closed
with a logged reason and everything else carries on.
"""

from __future__ import annotations

__all__ = [
    "Closed",
    "ConfigurationError",
    "CorruptUpdate",
    "EngineUnavailable",
    "InvalidArgument",
    "InvalidDiscoveryInfo",
    "InvalidDisplayName",
    "InvalidServiceType",
    "MessageTooLarge",
    "MpstoreError",
    "NotConnected",
    "PersistError",
    "ProtocolError",
    "SendTimeout",
    "ServerRefused",
    "ServiceTypeNotDeclared",
    "StoreError",
    "StoreLocked",
    "Timeout",
    "TransferCancelled",
    "TransferDeclined",
    "TransferFailed",
    "TransportError",
    "TransportUnavailable",
]


class MpstoreError(Exception):
    """The root of every error mpstore raises on purpose."""


class ConfigurationError(MpstoreError, ValueError):
    """A setting is not acceptable: a constructor argument, transport, engine or store name."""


class InvalidServiceType(ConfigurationError):
    """The service type breaks the rule: 1-15 of a-z, 0-9, '-', a letter, no edge or double '-'."""


class InvalidDisplayName(ConfigurationError):
    """The display name is empty or longer than 63 bytes of UTF-8."""


class InvalidDiscoveryInfo(ConfigurationError):
    """The discovery info is not a str -> str mapping that fits DNS-SD TXT records."""


class InvalidArgument(MpstoreError, TypeError):
    """A value mpstore cannot carry exactly, or an argument of the wrong type; nothing was done."""


class NotConnected(MpstoreError, LookupError):
    """A message was addressed to a peer that is not connected (nothing was sent to it; the
    text names any other addressed peers that did get it)."""

    def __init__(self, message: str, peer: object = None) -> None:
        super().__init__(message)
        self.peer = peer


class MessageTooLarge(MpstoreError, ValueError):
    """A message is larger than the configured maximum; nothing was sent."""


class Closed(MpstoreError, RuntimeError):
    """The object was ended with end_all() and can no longer be used."""


class Timeout(MpstoreError, TimeoutError):
    """A blocking call did not complete in time."""


class SendTimeout(Timeout):
    """A reliable send waited longer than its timeout for a slow peer to drain (the text names
    any addressed peers that did get the message)."""


class TransportError(MpstoreError):
    """A transport could not do what was asked."""


class TransportUnavailable(TransportError):
    """The transport's dependencies or platform are not available here."""


class ServiceTypeNotDeclared(TransportError):
    """iOS refused to browse or advertise the service type (NSNetServices error -72008)."""


class ServerRefused(TransportError):
    """A Yjs server refused this client (wrong token, no permission); it is not retried."""


class ProtocolError(MpstoreError):
    """A peer sent bytes that break the protocol; its connection is closed."""


class TransferFailed(MpstoreError):
    """A file transfer did not complete; nothing was shown as received."""


class TransferDeclined(TransferFailed):
    """The receiver declined the file, was busy, or had no room for it."""


class TransferCancelled(TransferFailed):
    """The transfer was cancelled by this side or by the peer."""


class StoreError(MpstoreError):
    """An error of the replicated store."""


class EngineUnavailable(StoreError, ImportError):
    """No CRDT engine can be loaded; the message says what to install."""


class CorruptUpdate(StoreError, ValueError):
    """A CRDT update or state vector is malformed or hostile; nothing was applied."""


class PersistError(StoreError):
    """Saving stores on disk failed (the in-memory stores keep working); the message says why."""


class StoreLocked(PersistError):
    """The data directory is open in another process (or another object of this one)."""
