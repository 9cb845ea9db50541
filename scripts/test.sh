#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (real-model tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LENS_STEER_VENV:-.venv}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$VENV/bin/ruff" check lens_steer tests bench analyses
"$VENV/bin/ruff" format --check lens_steer tests bench analyses
"$VENV/bin/mypy" lens_steer
"$VENV/bin/python" -m pytest "$@"
