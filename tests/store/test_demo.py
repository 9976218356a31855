"""`mpstore demo` ends by itself with a verdict and the right exit code."""

from __future__ import annotations

import time

import pytest

from mpstore import _demo


def test_demo_plain_ends_equal(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert _demo.run_demo(["--plain", "--seconds", "3", "--seed", "1"]) == 0
    assert time.monotonic() - started < 20
    out = capsys.readouterr().out
    assert "joined late: snapshot of" in out
    assert "partition:" in out and "healed" in out
    assert out.strip().splitlines()[-1].startswith("VERDICT: all 5 replicas are equal")


def test_demo_live_table(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("rich")
    assert _demo.run_demo(["--seconds", "2", "--devices", "3", "--seed", "2"]) == 0
    assert "VERDICT: all 3 replicas are equal" in capsys.readouterr().out


def test_demo_reports_a_divergence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_demo._Demo, "equal", lambda self: False)
    assert _demo.run_demo(["--plain", "--seconds", "2", "--devices", "3"]) == 1
    assert "VERDICT: replicas differ" in capsys.readouterr().out


def test_demo_checks_its_arguments() -> None:
    with pytest.raises(SystemExit):
        _demo.run_demo(["--devices", "9"])
