#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv with everything installed.
# CPU PyTorch is pinned first: any other torch request would pull GBs of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
# The browser review station (`lesion-suite review`) and its end-to-end tests: trame-slicer
# and Playwright; the browser is Debian's chromium (below), Playwright downloads none.
.venv/bin/python -m pip install --quiet -e ".[review-test]"
# dciodvfy (Debian's dicom3tools) validates the exported DICOM SEG and SR in the tests,
# which fail without it unless LESION_SUITE_ALLOW_MISSING_DCIODVFY=1. Installed where
# apt-get and root (or sudo) are at hand; elsewhere this says how, and goes on.
if ! command -v dciodvfy >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 \
      && sudo -n true 2>/dev/null; then
    sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq dicom3tools
  else
    echo "setup_env: dciodvfy not installed (needs apt-get with root or sudo): install" \
         "dicom3tools, or set LESION_SUITE_ALLOW_MISSING_DCIODVFY=1 to skip the DICOM" \
         "validation in the tests" >&2
  fi
fi
# The browser tests render Slicer's views on the CPU (Mesa llvmpipe through EGL) and drive
# Debian's chromium; they fail without them unless LESION_SUITE_ALLOW_MISSING_BROWSER=1.
BROWSER_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri chromium"
if ! command -v chromium >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep -q libEGL_mesa; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $BROWSER_PACKAGES
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 \
      && sudo -n true 2>/dev/null; then
    sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq $BROWSER_PACKAGES
  else
    echo "setup_env: the browser review tests need $BROWSER_PACKAGES (needs apt-get with" \
         "root or sudo): install them, or set LESION_SUITE_ALLOW_MISSING_BROWSER=1 to skip" \
         "those tests" >&2
  fi
fi
