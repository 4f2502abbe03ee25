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

# the project with the test extras (the real-server tests run llama.cpp's own server from xllamacpp,
# which the extra 'agents' installs)
bash scripts/install.sh "all,test,browser"
python -m pytest "$@"
