"""The presence example runs as-is on the memory network and ends by itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_who_is_typing_example_runs() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MPSTORE_TRANSPORT", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "who_is_typing.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Dan joined late and sees typing: ['Cat']" in result.stdout
    assert "after Cat left, Dan sees typing: []" in result.stdout
    assert "Traceback" not in result.stderr
