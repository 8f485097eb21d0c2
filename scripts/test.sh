#!/usr/bin/env bash
# Installs the package with its dev extra and runs every gate: lint, format, types, tests with coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev]"
ruff check langchain_multigateway tests benchmarks
ruff format --check langchain_multigateway tests benchmarks
mypy --strict langchain_multigateway
python -m pytest --cov=langchain_multigateway --cov-report=term --cov-fail-under=90 -q
