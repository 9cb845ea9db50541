#!/usr/bin/env bash
# Set up lens_steer in ./.venv: torch (CPU build 2.13.0) first, then the package with its test
# extras, then Chromium for static (PNG) figures. Safe to rerun; each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${LENS_STEER_VENV:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# torch before anything that depends on it: a bare "torch" requirement would pull a CUDA build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "[setup] installing torch==2.13.0" >&2
    "${PIP[@]}" install "torch==2.13.0"
fi
if ! "$VENV/bin/python" -c "import lens_steer, pytest, hypothesis, nbclient, mypy" 2>/dev/null \
    || [ pyproject.toml -nt "$VENV/.lens_steer_installed" ]; then
    echo "[setup] installing lens-steer[test]" >&2
    "${PIP[@]}" install -e ".[test]"
    touch "$VENV/.lens_steer_installed"
fi

# The benchmark's independent reference. steering-vectors pins transformers<5, which
# transformer-lens 3.9 cannot use; it is pure Python and works with transformers 5, so it is
# installed without its pins (only bench/ imports it).
if ! "$VENV/bin/python" -c "import steering_vectors" 2>/dev/null; then
    "${PIP[@]}" install --no-deps "steering-vectors==0.12.2"
fi

# Static figure export (kaleido >= 1) drives a Chromium; Debian's package provides one.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing chromium (for PNG export)" >&2
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "[setup] warning: no chromium found and not root; PNG export will fail" >&2
    fi
fi
echo "[setup] ready: $VENV" >&2
