#!/usr/bin/env bash
# Installs the package with its dev extra and runs every gate: lint, format, types, tests with coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev]"
ruff check langchain_multigateway tests benchmarks scripts
ruff format --check langchain_multigateway tests benchmarks scripts
mypy --strict langchain_multigateway
# coverage runs pytest (not pytest-cov) so that modules pytest imports early, like the plugin
# this package registers, are measured from their first line.
python -m coverage run -m pytest -q
python -m coverage report --fail-under=90
