"""A small LAN made of Linux network namespaces, with one peer process in each.

``NetnsLan(n)`` builds namespaces ``mpst-<pid>-<rand>-<i>`` (one per peer) and a bridge in its
own namespace ``...-br``; each peer namespace gets a veth into the bridge, an address in
198.18.0.0/24 (inside the benchmarking range 198.18.0.0/15) and a multicast route, so mDNS works
there and nowhere else. ``lan.spawn(i, ...)`` starts ``python -m tests.lan.peer_agent`` inside
namespace ``i``, driven over a pipe with JSON lines. ``lan.close()`` kills the processes it
started (by PID) and deletes the namespaces; ``cleanup_leftovers()`` removes namespaces left by
processes that no longer exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["PREFIX", "AgentProcess", "NetnsLan", "cleanup_leftovers", "netns_unavailable"]

PREFIX = "mpst-"
SUBNET = "198.18.0"
ROOT = Path(__file__).resolve().parent.parent


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15, check=check)


def netns_unavailable() -> str | None:
    """Why namespaces cannot be built here, or None if they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "building network namespaces needs root"
    name = f"{PREFIX}{os.getpid()}-probe"
    try:
        _ip("netns", "add", name)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {getattr(exc, 'stderr', exc)}"
    _ip("netns", "del", name, check=False)
    return None


def cleanup_leftovers() -> list[str]:
    """Delete namespaces with our prefix whose creating process is gone; return their names."""
    out = _ip("netns", "list", check=False).stdout
    removed = []
    for line in out.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX) :].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _kill_in_namespace(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


def _kill_in_namespace(name: str) -> None:
    pids = _ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)


class AgentProcess:
    """One peer process in a namespace, driven with JSON lines over its stdin and stdout."""

    def __init__(self, lan: NetnsLan, index: int, args: list[str], log_path: Path) -> None:
        self.index = index
        self.namespace = lan.namespace(index)
        self.address = lan.address(index)
        self.log_path = log_path
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, sys.executable, "-m", "tests.lan.peer_agent", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=str(ROOT),
            env=env,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"agent-{index}-reader", daemon=True)
        self._reader.start()
        self.hello = self.expect("ready", timeout=20)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def expect(self, kind: str, timeout: float) -> dict[str, Any]:
        """The next reply line, which must be of ``kind``."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"agent {self.index}: no {kind!r} within {timeout}s") from None
        if not line:
            raise AssertionError(f"agent {self.index} exited: {self.tail()}")
        reply = json.loads(line)
        if reply.get("kind") != kind:
            raise AssertionError(f"agent {self.index}: expected {kind!r}, got {reply}")
        return dict(reply)

    def call(self, cmd: str, timeout: float = 15.0, **args: Any) -> dict[str, Any]:
        """Send one command and return its reply."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        self.proc.stdin.flush()
        reply = self.expect("reply", timeout)
        if "error" in reply:
            raise AssertionError(f"agent {self.index}: {cmd} failed: {reply['error']}")
        return reply

    def peer_names(self) -> list[str]:
        """Display names of the connected peers, in join order."""
        return [p["name"] for p in self.call("peers")["peers"]]

    def tail(self, n: int = 3000) -> str:
        """The end of the agent's log."""
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        return ""

    def kill(self) -> None:
        """SIGKILL the agent (by PID)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the agent to end; kill it if it does not within ``timeout``."""
        if self.proc.poll() is None:
            try:
                self.call("end", timeout=timeout)
                self.proc.wait(timeout=timeout)
            except (AssertionError, OSError, subprocess.TimeoutExpired, ValueError):
                self.kill()
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class NetnsLan:
    """N namespaces on one bridge; every one of them removed by close(), even after failures."""

    def __init__(self, n: int, log_dir: Path) -> None:
        self.n = n
        self.tag = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.log_dir = log_dir
        self.agents: dict[int, AgentProcess] = {}
        self._created: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def namespace(self, i: int) -> str:
        """The name of peer namespace ``i``."""
        return f"{self.tag}-{i}"

    def address(self, i: int) -> str:
        """The IPv4 address of peer namespace ``i``."""
        return f"{SUBNET}.{i + 1}"

    @property
    def bridge_ns(self) -> str:
        """The namespace holding the bridge."""
        return f"{self.tag}-br"

    def _netns_add(self, name: str) -> None:
        _ip("netns", "add", name)
        self._created.append(name)

    def _build(self) -> None:
        br = self.bridge_ns
        self._netns_add(br)
        _ip("-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", br, "link", "set", "br0", "up")
        for i in range(self.n):
            ns = self.namespace(i)
            self._netns_add(ns)
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}", "netns", br)
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            # No duplicate-address detection: IPv6 link-local addresses usable at once.
            subprocess.run(
                ["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"],
                capture_output=True,
                timeout=15,
                check=False,
            )
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
            _ip("-n", br, "link", "set", f"p{i}", "master", "br0")
            _ip("-n", br, "link", "set", f"p{i}", "up")

    def spawn(self, i: int, name: str, *args: str) -> AgentProcess:
        """Start a peer agent in namespace ``i`` (replacing a dead one)."""
        old = self.agents.get(i)
        if old is not None:
            old.close()
        agent = AgentProcess(self, i, ["--name", name, *args], self.log_dir / f"agent-{i}.log")
        self.agents[i] = agent
        return agent

    def cut(self, i: int) -> None:
        """Unplug namespace ``i`` from the bridge."""
        _ip("-n", self.bridge_ns, "link", "set", f"p{i}", "down")

    def restore(self, i: int) -> None:
        """Plug namespace ``i`` back in."""
        _ip("-n", self.bridge_ns, "link", "set", f"p{i}", "up")

    def run_in(self, i: int, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run a command inside namespace ``i``."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace(i), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(ROOT),
        )

    def close(self) -> None:
        """End every agent, then delete every namespace (processes left inside are killed)."""
        for agent in list(self.agents.values()):
            with contextlib.suppress(Exception):
                agent.close(timeout=3)
        self.agents.clear()
        for name in reversed(self._created):
            _kill_in_namespace(name)
            _ip("netns", "del", name, check=False)
        self._created.clear()

    def __enter__(self) -> NetnsLan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(cond: Any, timeout: float, interval: float = 0.1, what: str = "") -> float:
    """Poll ``cond()`` until true; return the seconds it took; AssertionError at ``timeout``."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    last = None
    while True:
        last = cond()
        if last:
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond} (last: {last!r})")
        time.sleep(interval)
