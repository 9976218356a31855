"""Bad addresses on the command line and in LanTransport: one clear error, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mpstore

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("peer", ["127.0.0.1:99999", "127.0.0.1:0", "nonsense"])
def test_chat_peer_with_a_bad_port_is_one_line_and_status_2(peer: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mpstore", "chat", "--name", "a", "--transport", "lan",
         "--no-discovery", "--peer", peer],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "--peer" in done.stderr


def test_lan_transport_refuses_a_static_peer_port_out_of_range() -> None:
    pytest.importorskip("cryptography")
    from mpstore.transports.lan import LanTransport

    with pytest.raises(mpstore.ConfigurationError):
        LanTransport(peers=[("127.0.0.1", 70000)], discovery=False)


def test_receive_into_a_file_is_one_line_and_status_2(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    done = subprocess.run(
        [sys.executable, "-m", "mpstore", "receive", "--dir", str(not_a_folder), "--no-discovery",
         "--host", "127.0.0.1"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["receive", "--timeout", "-1"],
        ["receive", "--count", "-2"],
        ["receive", "--timeout", "nan"],
        ["send", "README.md", "--wait", "-1"],
        ["send", "README.md", "--peer", "127.0.0.1:0"],
        ["receive", "--peer", "127.0.0.1:70000"],
    ],
)
def test_file_commands_refuse_negative_numbers_and_bad_ports(argv: list[str]) -> None:
    """Before: `receive --timeout -1` ran and reported '0 file(s) received in -1 s'."""
    done = subprocess.run(
        [sys.executable, "-m", "mpstore", *argv, "--no-discovery", "--host", "127.0.0.1"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "receiving into" not in done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith(f"mpstore {argv[0]}: error: argument --")


def test_send_a_folder_says_it_is_not_a_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mpstore", "send", str(tmp_path), "--no-discovery", "--wait", "0"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2 and "not a file" in done.stderr, done.stderr
