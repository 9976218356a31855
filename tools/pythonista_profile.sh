#!/usr/bin/env bash
# The Pythonista profile: the wrapper, memory-network and Multipeer Connectivity tests under
# Python 3.10 with only pure-Python test tools, compiled third-party packages made unimportable.
#   tools/pythonista_profile.sh [pytest args...]
# PYTHON310 names the interpreter (default: python3.10); PROFILE_VENV the venv to (re)use.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1

PY=${PYTHON310:-python3.10}
VENV=${PROFILE_VENV:-build/pythonista-venv}

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # Pure Python only, as on Pythonista.
    "$VENV/bin/python" -m pip install -q --only-binary=:all: pytest pytest-timeout hypothesis
fi
"$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 10), sys.version'
# The web endpoint's library; its C speedup is blocked below, as it would be absent on Pythonista.
"$VENV/bin/python" -c 'import websockets' 2>/dev/null || "$VENV/bin/python" -m pip install -q --only-binary=:all: 'websockets>=15'

echo "== Pythonista profile: $("$VENV/bin/python" --version), compiled packages blocked"
PYTHONPATH="tests/pythonista_profile${PYTHONPATH:+:$PYTHONPATH}" \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/core tests/examples tests/mc tests/web/test_pure_python.py "$@"
