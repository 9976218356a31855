"""The seed's chat example runs as-is (on the memory transport, so no network is touched)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_chat_example_runs_and_exits_cleanly_at_end_of_input() -> None:
    env = dict(os.environ, MPSTORE_TRANSPORT="memory", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "chat.py")],
        input="Ann\nhello\nsecond line\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Message: ") == 3
    assert "Traceback" not in result.stderr
