"""Files over the LAN transport across network namespaces: integrity, memory, resume, store refs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.netns import NetnsLan, wait_for

pytestmark = pytest.mark.netns

TIMEOUT = 2.0  # peer_timeout of the agents
MIB = 1024 * 1024


def _start(lan: NetnsLan, tmp: Path, n: int) -> None:
    for i in range(n):
        folder = tmp / f"in{i}"
        lan.spawn(i, f"p{i}", "--peer-timeout", str(TIMEOUT), "--file-dir", str(folder))


def _mesh(lan: NetnsLan, n: int) -> None:
    names = {f"p{i}" for i in range(n)}
    wait_for(
        lambda: all(set(lan.agents[i].peer_names()) == names - {f"p{i}"} for i in range(n)),
        25,
        interval=0.2,
        what=f"{n} peers to see each other",
    )


def _state(agent: Any, key: str) -> dict[str, Any]:
    return dict(agent.call("file_state")["files"][key])


def _done(agent: Any, key: str, timeout: float) -> dict[str, Any]:
    wait_for(lambda: _state(agent, key)["state"] in ("done", "failed", "cancelled"), timeout, 0.2, key)
    return _state(agent, key)


@pytest.mark.parametrize("size", [1024, 50 * MIB])
def test_files_arrive_byte_identical_with_bounded_memory(
    netns_lan: Callable[[int], NetnsLan], tmp_path: Path, size: int
) -> None:
    lan = netns_lan(2)
    _start(lan, tmp_path, 2)
    _mesh(lan, 2)
    sender, receiver = lan.agents[0], lan.agents[1]
    src = str(tmp_path / "src.bin")
    digest = sender.call("file_make", path=src, size=size)["sha"]
    before = [a.call("rss")["rss_kib"] for a in (sender, receiver)]
    key = sender.call("file_send", path=src, to="p1")["id"]
    assert _done(sender, key, 120)["state"] == "done"
    wait_for(lambda: receiver.call("file_received")["received"], 10, what="file_received")
    got = receiver.call("file_received")["received"][0]
    assert got["path"] == str(tmp_path / "in1" / "src.bin") and got["from"] == "p0"
    assert receiver.call("sha", path=got["path"])["sha"] == digest
    for agent, start in zip((sender, receiver), before, strict=True):
        peak = agent.call("rss")["peak_kib"]
        # A 50 MiB file held in memory (or a good part of it) would show here.
        assert peak - start < 24 * 1024, (peak, start)


def test_a_cut_link_mid_transfer_resumes_and_completes(
    netns_lan: Callable[[int], NetnsLan], tmp_path: Path
) -> None:
    lan = netns_lan(2)
    _start(lan, tmp_path, 2)
    _mesh(lan, 2)
    sender, receiver = lan.agents[0], lan.agents[1]
    src = str(tmp_path / "src.bin")
    digest = sender.call("file_make", path=src, size=200 * MIB)["sha"]
    key = sender.call("file_send", path=src, to="p1")["id"]
    wait_for(lambda: _state(sender, key)["bytes_done"] > 20 * MIB, 60, 0.05, "20 MiB sent")
    lan.cut(1)
    wait_for(lambda: receiver.peer_names() == [], TIMEOUT + 5, what="p1 alone")
    partial = next(iter(receiver.call("file_state")["files"].values()))
    assert partial["state"] == "active" and 0 < partial["bytes_done"] < 200 * MIB, partial
    time.sleep(0.5)
    lan.restore(1)
    _mesh(lan, 2)
    assert _done(sender, key, 180)["state"] == "done"
    wait_for(lambda: receiver.call("file_received")["received"], 10, what="file_received")
    got = receiver.call("file_received")["received"][0]
    assert receiver.call("sha", path=got["path"])["sha"] == digest
    assert sorted(p.name for p in (tmp_path / "in1").iterdir()) == ["src.bin"]


@pytest.mark.parametrize("side", ["sender", "receiver"])
def test_either_side_cancels_over_the_lan(
    netns_lan: Callable[[int], NetnsLan], tmp_path: Path, side: str
) -> None:
    lan = netns_lan(2)
    _start(lan, tmp_path, 2)
    _mesh(lan, 2)
    sender, receiver = lan.agents[0], lan.agents[1]
    src = str(tmp_path / "src.bin")
    sender.call("file_make", path=src, size=200 * MIB)
    key = sender.call("file_send", path=src, to="p1")["id"]
    wait_for(lambda: receiver.call("file_state")["files"], 10, what="the offer")
    incoming = next(iter(receiver.call("file_state")["files"]))
    wait_for(lambda: _state(receiver, incoming)["bytes_done"] > 0, 30, 0.05, "bytes arriving")
    if side == "receiver":
        receiver.call("file_cancel", id=incoming)
    else:
        sender.call("file_cancel", id=key)
    out = _done(sender, key, 20)
    got = _done(receiver, incoming, 20)
    assert out["state"] == got["state"] == "cancelled", (out, got)
    expected = "cancelled by the receiver" if side == "receiver" else "cancelled by us"
    assert expected in out["error"]
    assert list((tmp_path / "in1").iterdir()) == []


def test_a_late_joiner_fetches_a_store_referenced_file_from_a_peer_other_than_its_author(
    netns_lan: Callable[[int], NetnsLan], tmp_path: Path
) -> None:
    lan = netns_lan(3)
    _start(lan, tmp_path, 2)
    _mesh(lan, 2)
    author, second = lan.agents[0], lan.agents[1]
    src = str(tmp_path / "cat.png")
    digest = author.call("file_make", path=src, size=5 * MIB + 3)["sha"]
    token = author.call("file_share", path=src)["token"]
    author.call("set", store="album", key="cat", value=token)
    wait_for(lambda: second.call("get", store="album", key="cat")["value"] == token, 10, what="token")
    key = second.call("file_fetch", token=token)["id"]
    assert _done(second, key, 60)["state"] == "done"
    author.call("end")
    lan.spawn(2, "p2", "--peer-timeout", str(TIMEOUT), "--file-dir", str(tmp_path / "in2"))
    late = lan.agents[2]
    wait_for(lambda: late.peer_names() == ["p1"], 25, what="p2 joins p1 only")
    wait_for(lambda: late.call("get", store="album", key="cat")["value"] == token, 15, what="token at p2")
    key = late.call("file_fetch", token=late.call("get", store="album", key="cat")["value"])["id"]
    result = _done(late, key, 60)
    assert result["state"] == "done" and result["peer"] == "p1", result
    assert late.call("sha", path=result["path"])["sha"] == digest


@pytest.mark.slow
def test_one_gib_arrives_byte_identical_with_bounded_memory(
    netns_lan: Callable[[int], NetnsLan], tmp_path: Path
) -> None:
    lan = netns_lan(2)
    _start(lan, tmp_path, 2)
    _mesh(lan, 2)
    sender, receiver = lan.agents[0], lan.agents[1]
    src = str(tmp_path / "src.bin")
    digest = sender.call("file_make", path=src, size=1024 * MIB, timeout=120)["sha"]
    before = [a.call("rss")["rss_kib"] for a in (sender, receiver)]
    key = sender.call("file_send", path=src, to="p1", timeout=120)["id"]
    assert _done(sender, key, 600)["state"] == "done"
    wait_for(lambda: receiver.call("file_received")["received"], 10, what="file_received")
    got = receiver.call("file_received")["received"][0]
    assert receiver.call("sha", path=got["path"], timeout=120)["sha"] == digest
    for agent, start in zip((sender, receiver), before, strict=True):
        peak = agent.call("rss")["peak_kib"]
        assert peak - start < 32 * 1024, (peak, start)
