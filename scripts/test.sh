#!/usr/bin/env bash
# Set up a fresh machine and run every test: system packages, the project with its extras, pytest.
# Usage: bash scripts/test.sh [pytest args]   (e.g. -m "not slow" to skip real-model tests locally)
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use (Debian names). Installed only when missing.
APT_PACKAGES=(chromium espeak-ng)  # chromium: report tests in a real browser; espeak-ng: speech with known words for ASR tests
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PIP="python -m pip install -q --disable-pip-version-check"
# torch for the text probe: the CPU build (on this machine kind the wheel is on local disk)
python -c "import torch" 2>/dev/null || $PIP "torch==2.13.0"
# llama-cpp-python builds from source (~5 min); a portable build, no -march=native
python -c "import llama_cpp" 2>/dev/null || CMAKE_ARGS="-DGGML_NATIVE=OFF" $PIP "llama-cpp-python[server]==0.3.36"
$PIP -e ".[all,test,browser]"
python -m pytest "$@"
