#!/usr/bin/env bash
# The checks before the tests: ruff (lint and format) and the layer contracts of pyproject.toml (import-linter).
# Run after scripts/setup.sh, which installs them (the "lint" extra).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check --no-cache .
.venv/bin/ruff format --check --no-cache .
.venv/bin/lint-imports
