"""Real Yjs servers for tests: the pinned Node packages in js/, started by PID, on loopback or in
a network namespace, always stopped (SIGKILL if need be) by the test that started them."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js"
SCRIPTS = {"y-websocket": JS / "y-websocket-server.mjs", "hocuspocus": JS / "hocuspocus-server.mjs"}
DIALECTS = tuple(SCRIPTS)


def node_unavailable() -> str | None:
    """Why the Node servers cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    for package in ("@y/websocket-server", "@hocuspocus/server", "yjs"):
        if not (JS / "node_modules" / package / "package.json").exists():
            return f"js/node_modules lacks {package}: run (cd js && npm ci)"
    return None


def require_node() -> None:
    """Skip without node, except in CI (where it must be there)."""
    why = node_unavailable()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Yjs server tests: {why}")
        pytest.skip(why)


class NodeServer:
    """One Yjs server process (``dialect``), restartable on the same port with the same data."""

    def __init__(
        self,
        dialect: str,
        log_path: Path,
        *,
        host: str = "127.0.0.1",
        token: str | None = None,
        data_dir: Path | None = None,
        namespace: str | None = None,
        debounce_ms: int | None = None,
    ) -> None:
        self.dialect = dialect
        self.host = host
        self.token = token
        self.data_dir = data_dir
        self.namespace = namespace
        self.debounce_ms = debounce_ms
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """The ws:// URL to give connect_server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> NodeServer:
        """Start the process (on the port of the previous run, if any) and wait until it listens."""
        assert self.proc is None or self.proc.poll() is not None
        env = dict(os.environ, HOST=self.host, PORT=str(self.port))
        env.pop("TOKEN", None)
        env.pop("DATA_DIR", None)
        env.pop("YPERSISTENCE", None)
        env.pop("DEBOUNCE", None)
        if self.debounce_ms is not None:
            env["DEBOUNCE"] = str(self.debounce_ms)
        if self.token is not None:
            env["TOKEN"] = self.token
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            env["DATA_DIR" if self.dialect == "hocuspocus" else "YPERSISTENCE"] = str(self.data_dir)
        argv = ["node", str(SCRIPTS[self.dialect])]
        if self.namespace is not None:
            argv = ["ip", "netns", "exec", self.namespace, *argv]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it; closed below
        try:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, cwd=str(JS), env=env)
        finally:
            log.close()
        lines: queue.Queue[bytes] = queue.Queue()
        proc = self.proc

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(b"")

        threading.Thread(target=read, name=f"{self.dialect}-stdout", daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:  # skip what the server logs before it listens
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError(
                    f"{self.dialect} server did not start in {timeout} s: {self.tail()}"
                ) from None
            if not line:
                self.kill()
                raise AssertionError(f"{self.dialect} server exited: {self.tail()}")
            if line.startswith(b'{"listening"'):
                break
        self.port = int(json.loads(line)["listening"])
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL the server (by PID): no chance to save anything."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()

    def restart(self) -> None:
        """Kill and start again on the same port with the same data."""
        self.kill()
        self.start()

    def tail(self, n: int = 3000) -> str:
        """The end of the server's stderr."""
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        return ""


@contextlib.contextmanager
def running(dialect: str, tmp_path: Path, **kwargs: object) -> Iterator[NodeServer]:
    """A started server, killed at the end even on failure."""
    require_node()
    server = NodeServer(dialect, tmp_path / f"{dialect}-server.log", **kwargs)  # type: ignore[arg-type]
    try:
        yield server.start()
    finally:
        server.kill()


class CutProxy:
    """A TCP relay on loopback in front of a server whose connections can be cut (a network drop
    while the server stays up). Threads are daemons and end with close()."""

    def __init__(self, target_port: int) -> None:
        import socket

        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="cut-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        """The ws:// URL to give connect_server."""
        return f"ws://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst), name="cut-proxy-pump", daemon=True
                ).start()

    @staticmethod
    def _pump(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.close()

    def cut(self) -> None:
        """Drop every connection now (both directions, no close handshake)."""
        import socket

        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        """Stop accepting and drop everything."""
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
