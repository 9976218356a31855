"""Helpers for file-transfer tests: big random files made and hashed without holding them."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import mpstore


def make_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path`` in 1 MiB blocks; return their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            part = os.urandom(min(left, 1024 * 1024))
            f.write(part)
            digest.update(part)
            left -= len(part)
    return digest.hexdigest()


def sha_of(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


class FilePeer(mpstore.MultipeerConnectivity):
    """Records offered and received files; ``accept`` decides (True, False or a folder)."""

    def __init__(self, *args: Any, accept: Any = None, **kwargs: Any) -> None:
        self.offered: list[mpstore.FileTransfer] = []
        self.received: list[mpstore.FileTransfer] = []
        self.accept = accept
        self._lock = threading.Lock()
        kwargs.setdefault("peer_timeout", 1.0)
        super().__init__(*args, **kwargs)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        pass

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        pass

    def accept_file(self, transfer: mpstore.FileTransfer, from_peer: mpstore.PeerID) -> Any:
        with self._lock:
            self.offered.append(transfer)
        if self.accept is None:
            return super().accept_file(transfer, from_peer)
        return self.accept

    def file_received(self, transfer: mpstore.FileTransfer, from_peer: mpstore.PeerID) -> None:
        with self._lock:
            self.received.append(transfer)


def files_in(folder: Path) -> list[str]:
    """Every entry under ``folder`` (recursively), hidden ones included, relative."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


__all__ = ["FilePeer", "files_in", "make_file", "os", "sha_of"]
