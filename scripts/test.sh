#!/usr/bin/env bash
# The test suite on a fresh machine: set up .venv, then run pytest (CPU only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m pytest -q "$@"
