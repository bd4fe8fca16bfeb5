#!/usr/bin/env bash
# By hand (not in CI: llama-cpp-python[server] from PyPI builds llama.cpp, about 20 minutes on two
# cores): the JS remote engine against llama.cpp's OpenAI-compatible server on 127.0.0.1, on the test
# model. Prints what web/tests/remote_check.mjs saw; the README records the result.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-target/llamacpp-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import llama_cpp.server' 2>/dev/null || "$VENV/bin/pip" install --quiet 'llama-cpp-python[server]==0.3.36'
bash scripts/fetch-test-model.sh
PORT="${PORT:-8091}"
"$VENV/bin/python" -m llama_cpp.server --model models/SmolLM2-135M-Instruct.Q4_1.gguf --host 127.0.0.1 \
  --port "$PORT" --n_ctx 2048 > target/llamacpp-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break; sleep 1; done
"$VENV/bin/python" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)'
node web/tests/remote_check.mjs "http://127.0.0.1:$PORT/v1" SmolLM2-135M-Instruct.Q4_1.gguf
