"""The installable artifact on a Pythonista-like Python: 3.10, compiled packages blocked.

Builds the wheel from this checkout, installs it with tools/pythonista_install.py into an empty
folder (standing in for ~/Documents/site-packages-3), and runs two peers sharing a store from
that copy alone, under the Pythonista profile.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "tests" / "pythonista_profile"

SMOKE = """
import sys, mpstore
assert mpstore.__file__.startswith(sys.argv[1]), mpstore.__file__
from mpstore.engines import load_engine
assert load_engine(None).name == "python"
for name in ("pycrdt", "zeroconf", "cryptography"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(name + " should be blocked")
net = mpstore.MemoryNetwork()
with mpstore.MultipeerConnectivity("Ann", "pista", transport=net) as ann, \\
        mpstore.MultipeerConnectivity("Bob", "pista", transport=net) as bob:
    a, b = ann.shared_dict("list"), bob.shared_dict("list")
    a["milk"] = {"qty": 2, "raw": b"\\x00\\xff", "big": 2**70}
    b.wait_for(lambda s: "milk" in s, timeout=20)
    assert b["milk"] == {"qty": 2, "raw": b"\\x00\\xff", "big": 2**70}
    from mpstore.transports.mc import MCTransport
print("SMOKE OK", mpstore.__version__)
"""


def _python310() -> str | None:
    candidates = [
        os.environ.get("PYTHON310", ""),
        "python3.10",
        *glob.glob("/root/.pyenv/versions/3.10*/bin/python"),
    ]
    for candidate in candidates:
        if not candidate:
            continue
        try:
            run = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if run.stdout.strip() == "True":
            return candidate
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (path,) = out.glob("mpstore-*.whl")
    yield path


def test_the_wheel_is_pure_python_and_complete(wheel: Path) -> None:
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd", ".dylib"))]
    assert "mpstore/py.typed" in names
    shipped = {n for n in names if n.startswith("mpstore/") and n.endswith(".py")}
    source = {
        str(p.relative_to(ROOT)) for p in (ROOT / "mpstore").rglob("*.py") if "__pycache__" not in p.parts
    }
    assert source <= shipped, source - shipped


def test_install_into_pythonista_site_packages_and_run_there(wheel: Path, tmp_path: Path) -> None:
    py = _python310()
    if py is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no Python 3.10 interpreter: the Pythonista install check cannot run")
        pytest.skip("no Python 3.10 interpreter (set PYTHON310)")
    target = tmp_path / "Documents" / "site-packages-3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(PROFILE), HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    installer = str(ROOT / "tools" / "pythonista_install.py")
    # Twice: the second run is an upgrade over the first copy.
    for _ in range(2):
        run = subprocess.run(
            [py, installer, str(wheel)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "CRDT engine: python" in run.stdout, run.stdout
    assert sorted(p.name for p in target.iterdir()) == ["mpstore"]
    env["PYTHONPATH"] = f"{PROFILE}{os.pathsep}{target}"
    run = subprocess.run(
        [py, "-c", SMOKE, str(target)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert run.returncode == 0 and "SMOKE OK" in run.stdout, run.stdout + run.stderr


def test_the_installer_finds_a_shared_wheel_in_the_inbox_and_refuses_bad_archives(
    wheel: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "Documents" / "Inbox"
    inbox.mkdir(parents=True)
    (inbox / wheel.name).write_bytes(wheel.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    installer = str(ROOT / "tools" / "pythonista_install.py")
    run = subprocess.run([sys.executable, installer], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "Documents" / "site-packages-3" / "mpstore" / "__init__.py").exists()
    # A wrong checksum installs nothing; a zip-slip path is refused.
    run = subprocess.run(
        [sys.executable, installer, str(wheel), "--sha256", "00" * 32, "--target", str(tmp_path / "t2")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 1 and "nothing installed" in run.stdout
    assert not (tmp_path / "t2").exists()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("mpstore/__init__.py", "")
        zf.writestr("mpstore/../../escaped.py", "")
    run = subprocess.run(
        [sys.executable, installer, str(evil), "--target", str(tmp_path / "t3")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode != 0 and "unsafe path" in (run.stdout + run.stderr)
    assert not (tmp_path / "escaped.py").exists()
