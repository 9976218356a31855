#!/usr/bin/env bash
# The project's checks: lint, types, Python 3.10 compatibility, the test suite on the default
# (pure-Python) engine, the store on the pycrdt engine, and the Pythonista profile (Python 3.10, no
# compiled packages). Run from a venv with '.[test]' installed (README: "Run the tests").
# Extra arguments go to the main pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ruff"
ruff check .
echo "== mypy --strict"
mypy mpstore
echo "== vermin: nothing newer than Python 3.10 in mpstore/ and examples/"
vermin --no-tips --violations --target=3.10- --eval-annotations mpstore examples tools/pythonista_install.py

echo "== JavaScript packages (js/package-lock.json)"
if command -v npm >/dev/null; then
    if [ ! -d js/node_modules ] || [ js/package-lock.json -nt js/node_modules/.package-lock.json ]; then
        (cd js && npm ci --no-audit --no-fund --loglevel=error)
    fi
elif [ "${CI:-}" = "true" ]; then
    echo "npm is missing: the JavaScript interop tests cannot run" >&2
    exit 1
fi

echo "== pytest"
python -m pytest -q "$@"

echo "== the store and examples on the pycrdt engine (the pure engine is the default)"
MPSTORE_ENGINE=pycrdt python -m pytest -q -p no:cacheprovider tests/store tests/engines tests/examples
echo "== Yjs servers with the store on the pycrdt engine"
MPSTORE_ENGINE=pycrdt python -m pytest -q -p no:cacheprovider tests/yserver/test_loopback.py -k "two_groups or node_yjs or kill"

echo "== Pythonista profile"
py310=""
for candidate in "${PYTHON310:-}" python3.10 /root/.pyenv/versions/3.10*/bin/python /usr/bin/python3.10; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
        py310=$candidate
        break
    fi
done
if [ -z "$py310" ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "no Python 3.10 interpreter found: the Pythonista profile cannot run" >&2
        exit 1
    fi
    echo "skipped: no Python 3.10 interpreter found (set PYTHON310)"
else
    PYTHON310=$py310 tools/pythonista_profile.sh tests/store tests/engines tests/presence
fi
