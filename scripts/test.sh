#!/usr/bin/env bash
# Install what is needed, check the one-way layering (import-linter contracts in
# pyproject.toml), then run the whole test suite.
#
# Test files run in parallel (pytest-xdist), one worker process per core and at most 4; each
# file runs whole, in order, in one worker (--dist loadfile), so its module fixtures are built
# once. Extra arguments go to pytest: `-n 0` runs everything in this one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lint-imports
.venv/bin/python -m pytest -n auto --maxprocesses=4 --dist loadfile "$@"
