"""The command line's rough edges, filed by a new user: one behaviour, clear errors, no tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpstore.cli import main
from tests.lan.test_cli import _Proc

pytest.importorskip("zeroconf")
pytest.importorskip("cryptography")

ROOT = Path(__file__).resolve().parents[2]


def test_demo_help_shows_both_modes_and_the_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mpstore demo ")
    assert "--memory" in out and "--processes" in out
    assert "3 to 8 devices" in out and "2 to 14 s" in out


@pytest.mark.parametrize("mode", [[], ["--memory"], ["--processes"]])
@pytest.mark.parametrize(
    "bad", [["--devices", "9"], ["--devices", "2"], ["--seconds", "100"], ["--seconds", "x"]]
)
def test_demo_refuses_out_of_range_values_in_every_mode(
    mode: list[str], bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", *mode, *bad])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_bad_options_give_one_line_and_exit_2() -> None:
    for argv in (["chat", "--name", "A", "--transport", "foo"], ["peers", "--wait", "-5"]):
        run = subprocess.run(
            [sys.executable, "-m", "mpstore", *argv], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert run.returncode == 2, argv
        assert "Traceback" not in run.stderr
        assert run.stderr.strip().splitlines()[-1].startswith(f"mpstore {argv[0]}: error: argument")


def test_ctrl_c_in_the_demo_prints_no_traceback() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpstore", "demo", "--processes", "--seconds", "14"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        seen = []
        for line in proc.stdout:  # wait until the device processes are scoring
            seen.append(line)
            if "scoring at once" in line or time.monotonic() > deadline:
                break
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = "".join(seen) + rest
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert "mpstore: interrupted" in out
    assert proc.returncode == 130


def test_chat_commands_are_not_broadcast_and_the_address_is_readable() -> None:
    ann = _Proc("chat", "--name", "Ann", "--host", "::1", "--no-discovery", "--secret", "open sesame")
    bob = None
    try:
        line = ann.wait_line(lambda s: s.startswith("* listening on"))
        address = line.split()[3]
        assert address.startswith("[::1]:"), line
        port = address.rsplit(":", 1)[1]
        bob = _Proc(
            "chat",
            "--name",
            "Bob",
            "--host",
            "::1",
            "--no-discovery",
            "--secret",
            "open sesame",
            "--peer",
            f"[::1]:{port}",
        )
        bob.wait_line(lambda s: s == "* Ann joined", timeout=20)
        ann.wait_line(lambda s: s == "* Bob joined", timeout=20)
        bob.say("/help")
        bob.wait_line(lambda s: s.startswith("* commands: /peers"))
        bob.say("/shrug")
        bob.wait_line(lambda s: s.startswith("* unknown command '/shrug', not sent"))
        bob.say("//shrug")
        bob.say("after")
        ann.wait_line(lambda s: s == "Bob: after")
        # /help and /shrug stayed local; "//shrug" was sent as "/shrug".
        assert [s for s in ann.seen if s.startswith("Bob:")] == ["Bob: /shrug", "Bob: after"]
    finally:
        for proc in (ann, bob):
            if proc is not None:
                proc.finish()


def test_chat_with_a_different_secret_does_not_connect() -> None:
    ann = _Proc("chat", "--name", "Ann", "--host", "127.0.0.1", "--no-discovery", "--secret", "one")
    bob = None
    try:
        port = ann.wait_line(lambda s: s.startswith("* listening on")).split()[3].rsplit(":", 1)[1]
        bob = _Proc(
            "chat",
            "--name",
            "Bob",
            "--host",
            "127.0.0.1",
            "--no-discovery",
            "--secret",
            "two",
            "--peer",
            f"127.0.0.1:{port}",
        )
        bob.wait_line(lambda s: s.startswith("* listening on"))
        time.sleep(3)
        bob.say("/peers")
        bob.wait_line(lambda s: s == "* nobody yet")
    finally:
        for proc in (ann, bob):
            if proc is not None:
                proc.finish()
