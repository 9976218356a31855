"""Peer identity: the opaque PeerID handed to users, and the rules names and info must follow."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ._errors import InvalidArgument, InvalidDiscoveryInfo, InvalidDisplayName, InvalidServiceType

__all__ = [
    "PeerID",
    "make_peer",
    "new_peer_id",
    "validate_discovery_info",
    "validate_display_name",
    "validate_service_type",
]

_SERVICE_TYPE = re.compile(r"^(?=.*[a-z])[a-z0-9](?:-?[a-z0-9])*$")
_PEER_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_DISPLAY_NAME_BYTES = 63
MAX_TXT_ENTRY_BYTES = 255
MAX_DISCOVERY_INFO_BYTES = 1300


def new_peer_id() -> str:
    """A fresh random 128-bit peer id, as 32 lowercase hex digits."""
    return secrets.token_hex(16)


def is_peer_id(value: object) -> bool:
    """True if ``value`` has the form of a peer id."""
    return isinstance(value, str) and _PEER_ID.match(value) is not None


def validate_service_type(service_type: object) -> str:
    """Return ``service_type`` if it follows Apple's rule (RFC 6335), else raise InvalidServiceType."""
    if not isinstance(service_type, str):
        raise InvalidServiceType(f"service_type must be a str, not {type(service_type).__name__}")
    if not 1 <= len(service_type) <= 15 or not _SERVICE_TYPE.match(service_type):
        raise InvalidServiceType(
            f"invalid service_type {service_type!r}: use 1-15 characters of a-z, 0-9 and '-', "
            "with at least one letter, no hyphen at either end and no two hyphens in a row "
            "(for example 'chat' or 'my-game')"
        )
    return service_type


def validate_display_name(display_name: object) -> str:
    """Return ``display_name`` if non-empty and at most 63 UTF-8 bytes, else raise InvalidDisplayName."""
    if not isinstance(display_name, str):
        raise InvalidDisplayName(f"display_name must be a str, not {type(display_name).__name__}")
    if not display_name:
        raise InvalidDisplayName("display_name must not be empty")
    size = len(display_name.encode("utf-8", "surrogatepass"))
    if size > MAX_DISPLAY_NAME_BYTES:
        raise InvalidDisplayName(
            f"display_name {display_name!r} is {size} bytes of UTF-8; the limit is {MAX_DISPLAY_NAME_BYTES}"
        )
    try:
        display_name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidDisplayName("display_name must be valid Unicode text") from None
    return display_name


def validate_discovery_info(info: object) -> dict[str, str]:
    """Return a copy of ``info`` if it fits DNS-SD TXT records, else raise InvalidDiscoveryInfo."""
    if info is None:
        return {}
    if not isinstance(info, Mapping):
        raise InvalidDiscoveryInfo(
            f"discovery_info must be a mapping of str to str, not {type(info).__name__}"
        )
    result: dict[str, str] = {}
    total = 0
    for key, value in info.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidDiscoveryInfo(f"discovery_info keys and values must be str, got {key!r}: {value!r}")
        if not key or "=" in key:
            raise InvalidDiscoveryInfo(
                f"discovery_info key {key!r} must be non-empty and must not contain '='"
            )
        if not key.isascii() or not key.isprintable():
            raise InvalidDiscoveryInfo(
                f"discovery_info key {key!r} must be printable ASCII (DNS-SD TXT keys)"
            )
        try:
            size = len(key.encode("utf-8")) + 1 + len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidDiscoveryInfo(f"discovery_info {key!r} is not valid Unicode") from None
        if size > MAX_TXT_ENTRY_BYTES:
            raise InvalidDiscoveryInfo(
                f"discovery_info entry {key!r} is {size} bytes as key=value; "
                f"the limit is {MAX_TXT_ENTRY_BYTES}"
            )
        total += size + 1
        result[key] = value
    if total > MAX_DISCOVERY_INFO_BYTES:
        raise InvalidDiscoveryInfo(
            f"discovery_info is {total} bytes in all; keep it under {MAX_DISCOVERY_INFO_BYTES}"
        )
    return result


class PeerID:
    """A peer in the session: ``display_name``, ``discovery_info`` and a stable random ``id``.

    Peers are equal and hashable by ``id`` (two peers may share a display name). They are made
    by mpstore only; use the ones passed to callbacks or returned by ``get_peers()``.
    """

    __slots__ = ("_discovery_info", "_display_name", "_id")

    _id: str
    _display_name: str
    _discovery_info: Mapping[str, str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise InvalidArgument(
            "PeerID objects cannot be created directly; use the peers mpstore gives you "
            "(my_peer, get_peers(), and the callbacks' arguments)"
        )

    @property
    def id(self) -> str:
        """This peer's stable random id (32 hex digits)."""
        return self._id

    @property
    def display_name(self) -> str:
        """The display name the peer chose (not unique)."""
        return self._display_name

    @property
    def discovery_info(self) -> Mapping[str, str]:
        """The peer's discovery info, read-only."""
        return self._discovery_info

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PeerID):
            return self._id == other._id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("mpstore.PeerID", self._id))

    def __repr__(self) -> str:
        return f"<PeerID {self._display_name!r} {self._id[:8]}>"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PeerID is read-only")

    def __reduce__(self) -> Any:
        raise InvalidArgument("PeerID cannot be pickled; send peer.id instead")


def make_peer(peer_id: str, display_name: str, discovery_info: Mapping[str, str]) -> PeerID:
    """Build a PeerID (mpstore-internal)."""
    peer = object.__new__(PeerID)
    object.__setattr__(peer, "_id", peer_id)
    object.__setattr__(peer, "_display_name", display_name)
    object.__setattr__(peer, "_discovery_info", MappingProxyType(dict(discovery_info)))
    return peer
