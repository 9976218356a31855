"""The committed whiteboard bundle is exactly what esbuild makes from js/ (the pinned packages)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js"
BUNDLE = ROOT / "mpstore" / "web" / "static" / "whiteboard.js"


def test_committed_bundle_matches_its_sources(tmp_path: Path) -> None:
    esbuild = JS / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("js/node_modules is missing: run `npm ci` in js/")
        pytest.skip("js/node_modules is missing: run `npm ci` in js/")
    script = json.loads((JS / "package.json").read_text())["scripts"]["build:whiteboard"]
    args = script.split()
    assert args[0] == "esbuild"
    out = tmp_path / "whiteboard.js"
    args = [str(esbuild)] + [f"--outfile={out}" if a.startswith("--outfile=") else a for a in args[1:]]
    subprocess.run(args, cwd=JS, check=True, capture_output=True, timeout=120)
    assert out.read_bytes() == BUNDLE.read_bytes(), (
        "mpstore/web/static/whiteboard.js is stale: run `npm run build:whiteboard` in js/ and commit it"
    )
