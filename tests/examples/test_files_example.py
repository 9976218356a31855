"""The photo album example runs as-is, ends by itself, and the late joiner's copy is identical."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_photo_album_example_runs() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MPSTORE_TRANSPORT", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "photo_album.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "[Bob] saved beach.jpg from Ann, SHA-256 checked" in result.stdout
    assert "[Cid] fetched sunset.jpg from Bob" in result.stdout
    assert "sunset.jpg identical at Cid: True" in result.stdout
    assert "Traceback" not in result.stderr
