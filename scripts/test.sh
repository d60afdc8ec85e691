#!/usr/bin/env bash
# The whole test suite (the README's test command). Slow oracle tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check sam2edge tests benchmarks
lint-imports
python3 -m pytest -q -rs --durations=40 "$@"
