#!/usr/bin/env bash
# Install what is needed, check the one-way layering (import-linter contracts in
# pyproject.toml), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
