#!/usr/bin/env bash
# The project's checks: lint, types, Python 3.10 compatibility, then the test suite.
# Run from a venv with '.[test]' installed (see README: "Run the tests").
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ruff"
ruff check .
echo "== mypy --strict"
mypy mpstore
echo "== vermin: nothing newer than Python 3.10 in mpstore/"
vermin --no-tips --violations --target=3.10- --eval-annotations mpstore examples
echo "== pytest"
python -m pytest -q "$@"
