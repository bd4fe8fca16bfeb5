#!/usr/bin/env bash
# `webmoe bench --device cpu` and llama.cpp (scripts/bench_llamacpp.py) on the same model, interleaved,
# RUNS rounds; prints every run and the medians. By hand: needs scripts/install-llama-cpp.sh and a
# release CLI (cargo build --release -p webmoe-cli).
#   scripts/bench-cpu-vs-llamacpp.sh [MODEL] [RUNS] [PROMPT_TOKENS] [GEN_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"; runs="${2:-3}"; pt="${3:-128}"; gt="${4:-64}"
py="${LLAMA_PY:-/tmp/llvenv/bin/python}"
threads=$(nproc)
out=$(mktemp)
for i in $(seq "$runs"); do
  WEBMOE_THREADS=$threads target/release/webmoe bench "$model" --device cpu --prompt-tokens "$pt" --gen-tokens "$gt" --json \
    | python3 -c 'import json,sys; v=json.load(sys.stdin); print(json.dumps({"engine":"webmoe-cpu","prefill_tokens_per_s":v["prefill_tokens_per_s"],"decode_tokens_per_s":v["decode_tokens_per_s"],"decode_bandwidth_ratio":v["decode_bandwidth_ratio"],"kernels":v["device"]["cpuKernels"]}))' | tee -a "$out"
  "$py" scripts/bench_llamacpp.py "$model" --prompt-tokens "$pt" --gen-tokens "$gt" --threads "$threads" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda e, k: statistics.median(r[k] for r in rows if r["engine"] == e)
w = {k: med("webmoe-cpu", k) for k in ("prefill_tokens_per_s", "decode_tokens_per_s")}
l = {k: med("llama.cpp", k) for k in ("prefill_tokens_per_s", "decode_tokens_per_s")}
print(json.dumps({"webmoe_cpu": w, "llama_cpp": l,
                  "decode_ratio": w["decode_tokens_per_s"] / l["decode_tokens_per_s"],
                  "prefill_ratio": w["prefill_tokens_per_s"] / l["prefill_tokens_per_s"]}))
PY
