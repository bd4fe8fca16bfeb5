#!/usr/bin/env bash
# Installs llama-cpp-python (llama.cpp's CPU build) into a venv for the by-hand peer benchmark and the
# reference script. A long build (about 10 minutes on 2 cores); not part of CI. AVX2 without AVX-512/AMX:
# a GGML_NATIVE build segfaulted in eval on the 2-vCPU VMs here (2026-12-01).
set -euo pipefail
venv="${1:-/tmp/llvenv}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q numpy jinja2
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF" \
  "$venv/bin/pip" install -q --no-cache-dir llama-cpp-python==0.3.36
echo "llama-cpp-python in $venv"
