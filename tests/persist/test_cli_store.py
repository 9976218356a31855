"""The command line and saved stores: ``mpstore store PATH`` and ``mpstore chat --data-dir``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mpstore
from mpstore.cli import main


def test_store_command_lists_keys_sizes_and_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with mpstore.MultipeerConnectivity("a", transport=mpstore.MemoryNetwork(), data_dir=tmp_path) as a:
        d = a.shared_dict("groceries")
        for i in range(30):
            d[f"item{i % 5}"] = {"qty": i}
            a._runtime.call(lambda: None)  # one transaction (history entry) per write
        a.shared_dict("other")["x"] = b"\x00"
    assert main(["store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mpstore.sqlite3" in out and "2 store(s)" in out
    assert "store 'groceries': 5 keys" in out and "history 30 updates" in out
    assert "store 'other': 1 keys" in out
    assert main(["store", str(tmp_path / "mpstore.sqlite3"), "groceries", "--keys", "2"]) == 0
    out = capsys.readouterr().out
    assert "item0 = {'qty': 25}" in out and "... and 3 more" in out
    assert main(["store", str(tmp_path), "nope"]) == 1
    assert main(["store", str(tmp_path / "missing")]) == 2


def test_store_command_says_when_the_directory_is_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with mpstore.MultipeerConnectivity("a", transport=mpstore.MemoryNetwork(), data_dir=tmp_path) as a:
        a.shared_dict("s")["x"] = 1
        assert main(["store", str(tmp_path)]) == 2
        assert "already open" in capsys.readouterr().err


def test_chat_keeps_its_history_in_a_data_dir(tmp_path: Path) -> None:
    def chat(lines: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "mpstore", "chat", "--name", "ann", "--transport", "memory",
             "--data-dir", str(tmp_path)],
            input=lines, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout

    first = chat("hello\nsecond line\n/quit\n")
    assert "history: empty" in first and "kept in the history" in first
    again = chat("/quit\n")
    assert "[history] ann: hello" in again and "[history] ann: second line" in again
