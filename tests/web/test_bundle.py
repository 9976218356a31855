"""The committed whiteboard bundle and its licence file are exactly what js/ builds (pinned packages)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js"
STATIC = ROOT / "mpstore" / "web" / "static"


def test_committed_bundle_matches_its_sources(tmp_path: Path) -> None:
    esbuild = JS / "node_modules" / ".bin" / "esbuild"
    node = shutil.which("node")
    if not esbuild.exists() or node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("js/node_modules or node is missing: run `npm ci` in js/")
        pytest.skip("js/node_modules or node is missing: run `npm ci` in js/")
    script = json.loads((JS / "package.json").read_text())["scripts"]["build:whiteboard"]
    bundle_cmd, licence_cmd = (shlex.split(part) for part in script.split("&&"))
    assert bundle_cmd[0] == "esbuild" and licence_cmd[:2] == ["node", "whiteboard/licenses.mjs"]
    out = tmp_path / "whiteboard.js"
    args = [str(esbuild)] + [f"--outfile={out}" if a.startswith("--outfile=") else a for a in bundle_cmd[1:]]
    subprocess.run(args, cwd=JS, check=True, capture_output=True, timeout=120)
    subprocess.run([node, licence_cmd[1], str(tmp_path / "licences.txt")], cwd=JS, check=True, timeout=60)
    stale = "is stale: run `npm run build:whiteboard` in js/ and commit it"
    assert out.read_bytes() == (STATIC / "whiteboard.js").read_bytes(), f"whiteboard.js {stale}"
    licences = (STATIC / "whiteboard-licenses.txt").read_bytes()
    assert (tmp_path / "licences.txt").read_bytes() == licences, f"whiteboard-licenses.txt {stale}"
    for name in ("yjs", "y-websocket", "y-protocols", "lib0"):
        assert f"\n{name} ".encode() in licences
