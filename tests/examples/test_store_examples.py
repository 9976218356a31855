"""The store examples run as-is, end by themselves, and end with equal replicas."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("script", "verdict"),
    [("scoreboard.py", "all 4 boards equal: True"), ("shared_list.py", "lists equal: True")],
)
def test_store_example_runs(script: str, verdict: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MPSTORE_TRANSPORT", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert verdict in result.stdout
    assert "Traceback" not in result.stderr
