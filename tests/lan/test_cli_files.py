"""``mpstore send`` and ``mpstore receive`` as two processes over TLS on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.files.helpers import make_file, sha_of

pytest.importorskip("zeroconf")
pytest.importorskip("cryptography")

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mpstore(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mpstore", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def test_send_and_receive_a_file_with_progress(tmp_path: Path) -> None:
    src = tmp_path / "holiday photo.jpg"
    digest = make_file(src, 3 * 1024 * 1024 + 7)
    port = _free_port()
    common = ["--host", "127.0.0.1", "--no-discovery", "--plain", "--service", "clifiles"]
    receiver = _mpstore(
        "receive",
        "--dir",
        str(tmp_path / "in"),
        "--count",
        "1",
        "--timeout",
        "60",
        "--port",
        str(port),
        "--name",
        "rx",
        *common,
    )
    try:
        sender = _mpstore(
            "send", str(src), "--to", "rx", "--peer", f"127.0.0.1:{port}", "--name", "tx", *common
        )
        out, _ = sender.communicate(timeout=60)
        assert sender.returncode == 0, out
        assert "holiday photo.jpg -> rx: 100% done" in out and f"sha256 {digest[:16]}" in out
        rx_out, _ = receiver.communicate(timeout=30)
        assert receiver.returncode == 0, rx_out
        assert "sha256 verified" in rx_out
    finally:
        for proc in (receiver,):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert sha_of(tmp_path / "in" / "holiday photo.jpg") == digest


def test_send_without_a_peer_fails_clearly(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("hi")
    sender = _mpstore(
        "send", str(src), "--to", "nobody", "--wait", "1", "--no-discovery", "--host", "127.0.0.1"
    )
    out, _ = sender.communicate(timeout=30)
    assert sender.returncode == 1 and "no peer named 'nobody' found within 1 s" in out
