"""The command line: --version, chat between two processes over TLS on loopback, demo --processes."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mpstore import __version__
from mpstore.cli import main

pytest.importorskip("zeroconf")
pytest.importorskip("cryptography")

ROOT = Path(__file__).resolve().parents[2]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"mpstore {__version__}"
    assert out[1].startswith("CRDT engine: ")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "chat" in capsys.readouterr().out


class _Proc:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "mpstore", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, pred: object, timeout: float = 10.0) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no matching line; saw {self.seen}") from None
            self.seen.append(line)
            if pred(line):  # type: ignore[operator]
                return line

    def say(self, text: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def finish(self) -> int:
        if self.p.poll() is None:
            try:
                self.say("/quit")
            except OSError:
                pass
        try:
            return self.p.wait(timeout=10)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
            self.t.join(timeout=5)


def test_chat_between_two_processes_on_loopback() -> None:
    lan = ["--host", "127.0.0.1", "--no-discovery"]
    ann = _Proc("chat", "--name", "Ann", *lan)
    bob = None
    try:
        line = ann.wait_line(lambda s: s.startswith("* listening on"))
        port = line.split()[3].rsplit(":", 1)[1]
        bob = _Proc("chat", "--name", "Bob", *lan, "--peer", f"127.0.0.1:{port}")
        bob.wait_line(lambda s: s == "* Ann joined")
        ann.wait_line(lambda s: s == "* Bob joined")
        bob.say("hello from bob")
        ann.wait_line(lambda s: s == "Bob: hello from bob")
        ann.say("/peers")
        ann.wait_line(lambda s: s == "Bob")
        assert bob.finish() == 0
        ann.wait_line(lambda s: s == "* Bob left")
        assert ann.finish() == 0
    finally:
        for proc in (ann, bob):
            if proc is not None:
                proc.finish()


def test_demo_processes_ends_with_a_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--processes", "--devices", "3", "--seconds", "3"]) == 0
    out = capsys.readouterr().out
    assert "Cat joined late: snapshot of" in out
    assert "VERDICT: all 3 replicas (processes) are equal" in out


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_interactive_chat_prints_incoming_messages_above_the_prompt() -> None:
    pytest.importorskip("prompt_toolkit")
    import re
    import select

    master, slave = os.openpty()
    env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", PYTHONUNBUFFERED="1")
    lan = ["--host", "127.0.0.1", "--no-discovery"]
    ann = subprocess.Popen(
        [sys.executable, "-m", "mpstore", "chat", "--name", "Ann", *lan],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    os.close(slave)
    screen = bytearray()

    def read_until(pattern: bytes, timeout: float = 10.0) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, bytes(screen))
            if found:
                return found
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    screen.extend(os.read(master, 4096))
                except OSError:
                    break
        raise AssertionError(f"{pattern!r} not on the terminal: {bytes(screen[-600:])!r}")

    bob = None
    try:
        port = read_until(rb"listening on 127\.0\.0\.1:(\d+)").group(1).decode()
        bob = _Proc("chat", "--name", "Bob", *lan, "--peer", f"127.0.0.1:{port}")
        read_until(rb"\* Bob joined\r\n")
        # Bob's own side of the link may come up a moment after Ann's: until then Bob's chat
        # answers "nobody to send to yet" instead of sending.
        bob.wait_line(lambda s: s == "* Ann joined")
        os.write(master, b"hel")  # Ann is halfway through typing...
        read_until(rb"hel")
        bob.say("hi ann")  # ...when Bob's message arrives
        # The message gets its own line, and the prompt comes back below it with Ann's typing.
        read_until(rb"Bob: hi ann\r\n[^\n]*Ann> hel")
        os.write(master, b"lo\r")
        bob.wait_line(lambda s: s == "Ann: hello")
        assert bob.finish() == 0
        os.write(master, b"/quit\r")
        assert ann.wait(timeout=10) == 0
    finally:
        if bob is not None:
            bob.finish()
        if ann.poll() is None:
            ann.kill()
            ann.wait(timeout=5)
        os.close(master)


def test_demo_defaults_to_processes_and_memory_is_one_flag_away(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--devices", "3", "--seconds", "2"]) == 0
    assert "replicas (processes) are equal" in capsys.readouterr().out
    assert main(["demo", "--memory", "--devices", "3", "--seconds", "2", "--plain"]) == 0
    out = capsys.readouterr().out
    assert "partition:" in out and "VERDICT: all 3 replicas are equal" in out
