#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then run the demo into ./demo_output.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/lesion-suite demo --out demo_output "$@"
