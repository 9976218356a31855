"""Identity rules: service types, display names, discovery info, PeerID."""

from __future__ import annotations

import pytest

import mpstore
from mpstore._peer import make_peer, validate_discovery_info, validate_display_name, validate_service_type


@pytest.mark.parametrize("name", ["chat", "a", "my-game", "a1", "1a", "x-1-y", "abcdefghijklmno"])
def test_valid_service_types(name: str) -> None:
    assert validate_service_type(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-chat", "chat-", "my--game", "123", "Chat", "chat_x", "abcdefghijklmnop", "ch at", "ünï", 5, None],
)
def test_invalid_service_types(name: object) -> None:
    with pytest.raises(mpstore.InvalidServiceType) as info:
        validate_service_type(name)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, mpstore.MpstoreError)


def test_service_type_error_explains_the_rule() -> None:
    with pytest.raises(mpstore.InvalidServiceType, match="1-15 characters of a-z"):
        validate_service_type("Bad_Type")


def test_display_name_limits() -> None:
    assert validate_display_name("x" * 63) == "x" * 63
    assert validate_display_name("é" * 31) == "é" * 31  # 62 bytes
    for bad in ["", "x" * 64, "é" * 32, None, 3]:
        with pytest.raises(mpstore.InvalidDisplayName):
            validate_display_name(bad)


def test_discovery_info_rules() -> None:
    assert validate_discovery_info({"team": "red"}) == {"team": "red"}
    assert validate_discovery_info(None) == {}
    assert validate_discovery_info({"k": "v" * 253}) == {"k": "v" * 253}
    for bad in [{"k": "v" * 254}, {"a=b": "c"}, {"": "x"}, {"k": 1}, {1: "v"}, ["k"], {"ké": "v"}]:
        with pytest.raises(mpstore.InvalidDiscoveryInfo):
            validate_discovery_info(bad)


def test_constructor_validates_before_starting_anything() -> None:
    net = mpstore.MemoryNetwork()
    with pytest.raises(mpstore.InvalidServiceType):
        mpstore.MultipeerConnectivity("Ann", "Not_Valid", transport=net)
    with pytest.raises(mpstore.InvalidDisplayName):
        mpstore.MultipeerConnectivity("", "chat", transport=net)
    with pytest.raises(mpstore.InvalidDiscoveryInfo):
        mpstore.MultipeerConnectivity("Ann", "chat", discovery_info={"a=b": "c"}, transport=net)


def test_peer_ids_cannot_be_constructed_by_users() -> None:
    with pytest.raises(TypeError, match="cannot be created"):
        mpstore.PeerID()
    with pytest.raises(TypeError):
        mpstore.PeerID("abc", "Ann")


def test_peer_equality_hash_and_repr() -> None:
    a1 = make_peer("a" * 32, "Ann", {"team": "red"})
    a2 = make_peer("a" * 32, "Ann", {})
    b = make_peer("b" * 32, "Ann", {})
    assert a1 == a2 and hash(a1) == hash(a2)
    assert a1 != b
    assert len({a1, a2, b}) == 2
    assert "Ann" in repr(a1) and "aaaaaaaa" in repr(a1)
    assert a1.discovery_info == {"team": "red"}
    with pytest.raises(TypeError):
        a1.discovery_info["team"] = "blue"  # type: ignore[index]
    with pytest.raises(AttributeError):
        a1.display_name = "Bob"  # type: ignore[misc]
    assert a1 != "a" * 32
