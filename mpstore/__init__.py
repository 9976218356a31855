"""mpstore: find peers nearby and share data with them, without a server.

import mpstore

class Chat(mpstore.MultipeerConnectivity):
    def receive(self, message, from_peer):
        print(from_peer.display_name, 'says', message)

mc = Chat(display_name='Ann', service_type='chat')
"""

from __future__ import annotations

from ._auth import new_secret
from ._errors import (
    Closed,
    ConfigurationError,
    CorruptUpdate,
    EngineUnavailable,
    InvalidArgument,
    InvalidDiscoveryInfo,
    InvalidDisplayName,
    InvalidServiceType,
    MessageTooLarge,
    MpstoreError,
    NotConnected,
    PersistError,
    ProtocolError,
    SendTimeout,
    ServerRefused,
    ServiceTypeNotDeclared,
    StoreError,
    StoreLocked,
    Timeout,
    TransferCancelled,
    TransferDeclined,
    TransferFailed,
    TransportError,
    TransportUnavailable,
)
from ._filenode import FileLimits, FileTransfer
from ._files import TOKEN_TAG
from ._latest import LatestWins
from ._peer import PeerID
from ._presence_node import Presence
from ._store import SharedDict, StoreChange, Subscription
from ._values import MISSING
from ._wrapper import MultipeerCommunications, MultipeerConnectivity
from .transports.base import Transport
from .transports.lan import LanTransport
from .transports.mc import MCTransport
from .transports.memory import MemoryNetwork

__version__ = "0.1.0"

#: The key that marks a dict as a file token (see MultipeerConnectivity.share_file).
FILE_TOKEN_KEY = TOKEN_TAG

__all__ = [
    "FILE_TOKEN_KEY",
    "MISSING",
    "Closed",
    "ConfigurationError",
    "CorruptUpdate",
    "EngineUnavailable",
    "FileLimits",
    "FileTransfer",
    "InvalidArgument",
    "InvalidDiscoveryInfo",
    "InvalidDisplayName",
    "InvalidServiceType",
    "LanTransport",
    "LatestWins",
    "MCTransport",
    "MemoryNetwork",
    "MessageTooLarge",
    "MpstoreError",
    "MultipeerCommunications",
    "MultipeerConnectivity",
    "NotConnected",
    "PeerID",
    "PersistError",
    "Presence",
    "ProtocolError",
    "SendTimeout",
    "ServerRefused",
    "ServiceTypeNotDeclared",
    "SharedDict",
    "StoreChange",
    "StoreError",
    "StoreLocked",
    "Subscription",
    "Timeout",
    "TransferCancelled",
    "TransferDeclined",
    "TransferFailed",
    "Transport",
    "TransportError",
    "TransportUnavailable",
    "__version__",
    "new_secret",
]
