"""Two groups of peers and a server, in network namespaces: a route from each group to the
server, none between the groups.

Namespace ``<tag>-srv`` holds two bridges, ``bra`` (198.18.1.1/24) and ``brb`` (198.18.2.1/24),
with IP forwarding off; each peer namespace ``<tag>-a<i>`` / ``<tag>-b<i>`` has one veth into its
group's bridge (198.18.1.<i+2> or 198.18.2.<i+2>) and a multicast route, so mDNS finds the peers of
its own group only. Everything is removed by close(), even after failures; processes by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.netns import PREFIX, _ip, _kill_in_namespace

ROOT = Path(__file__).resolve().parents[2]


class Agent:
    """One tests.yserver.agent process in a namespace, driven with JSON lines."""

    def __init__(self, namespace: str, name: str, log_path: Path, secret: str | None) -> None:
        self.name = name
        self.log_path = log_path
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        argv = ["ip", "netns", "exec", namespace, sys.executable, "-m", "tests.yserver.agent", "--name", name]
        if secret:
            argv += ["--secret", secret]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=str(ROOT), env=env
            )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, name=f"agent-{name}-reader", daemon=True).start()
        self._expect("ready", 30)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def _expect(self, kind: str, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"agent {self.name}: no {kind!r} within {timeout} s: {self.tail()}"
            ) from None
        if not line:
            raise AssertionError(f"agent {self.name} exited: {self.tail()}")
        reply = json.loads(line)
        assert reply.get("kind") == kind, reply
        return dict(reply)

    def call(self, cmd: str, timeout: float = 20.0, **args: Any) -> dict[str, Any]:
        """One command and its reply (AssertionError if it failed)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        self.proc.stdin.flush()
        reply = self._expect("reply", timeout)
        if "error" in reply:
            raise AssertionError(f"agent {self.name}: {cmd} failed: {reply['error']}")
        return reply

    def tail(self, n: int = 3000) -> str:
        """The end of the agent's log."""
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        return ""

    def close(self) -> None:
        """Ask it to end; SIGKILL (by PID) if it does not."""
        if self.proc.poll() is None:
            try:
                self.call("end", timeout=10)
                self.proc.wait(timeout=10)
            except (AssertionError, OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()


class TwoGroups:
    """Namespaces for ``per_group`` peers in each of groups a and b, and a server namespace."""

    GROUPS = {"a": "198.18.1", "b": "198.18.2"}

    def __init__(self, per_group: int, log_dir: Path) -> None:
        self.tag = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.per_group = per_group
        self.log_dir = log_dir
        self.agents: list[Agent] = []
        self._created: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    @property
    def server_ns(self) -> str:
        """The server's namespace."""
        return f"{self.tag}-srv"

    def namespace(self, group: str, i: int) -> str:
        """Peer namespace ``i`` of ``group``."""
        return f"{self.tag}-{group}{i}"

    def server_address(self, group: str) -> str:
        """The server's address as seen from ``group``."""
        return f"{self.GROUPS[group]}.1"

    def address(self, group: str, i: int) -> str:
        """The address of peer ``i`` of ``group``."""
        return f"{self.GROUPS[group]}.{i + 2}"

    def _add(self, name: str) -> None:
        _ip("netns", "add", name)
        self._created.append(name)

    def _build(self) -> None:
        srv = self.server_ns
        self._add(srv)
        _ip("-n", srv, "link", "set", "lo", "up")
        subprocess.run(
            ["ip", "netns", "exec", srv, "sysctl", "-qw", "net.ipv4.ip_forward=0"], check=True, timeout=15
        )
        for group, net in self.GROUPS.items():
            br = f"br{group}"
            _ip("-n", srv, "link", "add", br, "type", "bridge", "mcast_snooping", "0")
            _ip("-n", srv, "addr", "add", f"{net}.1/24", "dev", br)
            _ip("-n", srv, "link", "set", br, "up")
            for i in range(self.per_group):
                ns = self.namespace(group, i)
                self._add(ns)
                port = f"{group}{i}"
                _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", srv)
                _ip("-n", ns, "addr", "add", f"{self.address(group, i)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
                _ip("-n", srv, "link", "set", port, "master", br)
                _ip("-n", srv, "link", "set", port, "up")

    def spawn(self, group: str, i: int, secret: str | None = None) -> Agent:
        """Start the agent ``<group><i>`` in its namespace."""
        name = f"{group}{i}"
        agent = Agent(self.namespace(group, i), name, self.log_dir / f"agent-{name}.log", secret)
        self.agents.append(agent)
        return agent

    def run_in(self, ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command in namespace ``ns``."""
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=20)

    def close(self) -> None:
        """End the agents, kill what is left inside, delete the namespaces."""
        for agent in self.agents:
            with contextlib.suppress(Exception):
                agent.close()
        self.agents.clear()
        for name in reversed(self._created):
            _kill_in_namespace(name)
            _ip("netns", "del", name, check=False)
        self._created.clear()
