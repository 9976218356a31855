"""Process plumbing shared by the LAN benchmarks: children that talk JSON lines, figures, load.

Every child is started by PID-tracked ``subprocess.Popen`` and is killed (by that handle) if it
is still running when the benchmark leaves its ``with`` block, even on failure. Children report
times from ``time.monotonic()``, which on Linux is one clock for every process on the machine,
so a start stamped in the sender and an arrival stamped in the receiver can be subtracted.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load() -> str:
    """The machine's load averages and cpu count, for printing next to figures."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min), {os.cpu_count()} cpus"


def say(**fields: Any) -> None:
    """A child's report to its parent: one JSON line on stdout."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (a small race, fine on loopback)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Child:
    """One child process: ``python <script> --child <role> <args...>``; JSON lines both ways."""

    def __init__(
        self,
        script: str,
        role: str,
        *args: Any,
        env: dict[str, str] | None = None,
        profile: str | None = None,
    ) -> None:
        self.role = role
        self._err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the child)
        cmd = [sys.executable, script, "--child", role, *map(str, args)]
        if profile:  # sampled by py-spy (every thread, idle excluded) into a collapsed-stack file
            spy = str(Path(sys.executable).with_name("py-spy"))
            cmd = [spy, "record", "--threads", "--format", "raw", "-r", "250", "-o", profile, "--", *cmd]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            cwd=str(ROOT),
            env={**os.environ, **(env or {})},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_all, daemon=True)
        self._reader.start()

    def _read_all(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):  # not py-spy's own lines
                self._lines.put(line)
        self._lines.put(None)

    def read(self, timeout: float = 120.0) -> dict[str, Any]:
        """The child's next report; RuntimeError (with its stderr) if it died or went quiet."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.role}: no report within {timeout:g} s{self._stderr()}") from None
        if line is None:
            self.proc.wait(5)
            raise RuntimeError(f"{self.role} exited with {self.proc.returncode}{self._stderr()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def tell(self, **fields: Any) -> None:
        """Send the child one command line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(fields) + "\n")
        self.proc.stdin.flush()

    def stderr_tail(self, size: int = 20000) -> str:
        """The end of what the child wrote on stderr so far."""
        self._err.seek(0)
        return self._err.read()[-size:]

    def _stderr(self) -> str:
        tail = self.stderr_tail(3000)
        return f"; its stderr:\n{tail}" if tail.strip() else ""

    def close(self, timeout: float = 20.0) -> None:
        """Ask the child to end (close its stdin), then kill it by its PID if it does not."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._err.close()


class Children:
    """A group of children ended together (kill by handle on failure)."""

    def __init__(self) -> None:
        self.all: list[Child] = []

    def start(
        self,
        script: str,
        role: str,
        *args: Any,
        env: dict[str, str] | None = None,
        profile: str | None = None,
    ) -> Child:
        child = Child(script, role, *args, env=env, profile=profile)
        self.all.append(child)
        return child

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        for child in reversed(self.all):
            child.close(timeout=20 if exc[0] is None else 2)


def wait_for_eof() -> None:
    """In a child: block until the parent closes our stdin (or says anything)."""
    sys.stdin.readline()


class Figure:
    """One figure across interleaved repeats: ours and (optionally) a baseline per repeat."""

    def __init__(self, name: str, unit: str, higher_is_better: bool = True) -> None:
        self.name, self.unit, self.higher = name, unit, higher_is_better
        self.values: list[float] = []

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        xs = [v for v in self.values if v == v]  # NaN: a failed run
        return statistics.median(xs) if xs else float("nan")

    def text(self, scale: float = 1.0, fmt: str = ",.0f") -> str:
        """'median [min-max]' of the repeats (failed runs left out)."""
        xs = [v * scale for v in self.values if v == v]
        if not xs:
            return "-"
        return f"{statistics.median(xs):{fmt}} [{min(xs):{fmt}}-{max(xs):{fmt}}]"


def ratio_text(ours: Figure, base: Figure) -> tuple[str, float]:
    """Median [min-max] of the per-repeat ratios ours/base, and the median."""
    ratios = [o / b for o, b in zip(ours.values, base.values, strict=True) if b and o == o and b == b]
    if not ratios:
        return "-", float("nan")
    med = statistics.median(ratios)
    return f"{med:.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]", med


def now() -> float:
    """The clock every child stamps with."""
    return time.monotonic()


def summarize_profile(path: str, top: int = 12) -> str:
    """Per thread of a py-spy raw (collapsed) profile: its share of the samples, then the
    functions with the most samples on top of the stack (self) and anywhere in it (inclusive)."""
    from collections import Counter

    threads: Counter[str] = Counter()
    own: dict[str, Counter[str]] = {}
    incl: dict[str, Counter[str]] = {}
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            thread, frames = frames[0], frames[1:]
            n = int(count)
            threads[thread] += n
            # "fn (file.py:line)" -> "fn (file.py)": a function, not a line
            names = [fr.split(":")[0] + ")" if "(" in fr else fr for fr in frames]
            if names:
                own.setdefault(thread, Counter())[names[-1]] += n
            inc = incl.setdefault(thread, Counter())
            for name in set(names):
                inc[name] += n
    total = sum(threads.values()) or 1
    out = []
    for thread, n in threads.most_common():
        if n < total * 0.03:
            continue
        out.append(f"  thread {thread}: {100 * n / total:.0f}% of all samples")
        out.append(
            "    self:      " + "; ".join(f"{k} {100 * v / n:.0f}%" for k, v in own[thread].most_common(top))
        )
        common = [(k, v) for k, v in incl[thread].most_common(top * 3) if v < n * 0.98][:top]
        out.append("    inclusive: " + "; ".join(f"{k} {100 * v / n:.0f}%" for k, v in common))
    return "\n".join(out)
