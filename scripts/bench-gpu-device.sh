#!/usr/bin/env bash
# The GPU benchmark of issue 11, for a lent NVIDIA machine (see the device tool's README): builds the
# release CLI, makes an 8B-shaped Q4_0 synthetic, and runs `webmoe bench --json` on the test model
# and the synthetic with the GPU baseline kernels, every variant, and the CPU backend, three rounds
# interleaved. Results go to $OUT (or ./target/gpu-bench), one JSON line per run, for BENCHMARKS.md.
# Usage: scripts/bench-gpu-device.sh [rounds]   (needs the Vulkan loader and the NVIDIA ICD)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
out=${OUT:-target/gpu-bench}
mkdir -p "$out"
cargo build --release -p webmoe-cli --example synth
bin=target/release/webmoe
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || bash scripts/fetch-test-model.sh
big=target/bench-models/llama8b.gguf
mkdir -p target/bench-models
[ -f "$big" ] || target/release/examples/synth "$big" Q4_0 4096 32 14336 128256
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1 || true
for r in $(seq "$rounds"); do
  for m in "$model" "$big"; do
    for dev in "gpu none" "gpu all" "cpu none"; do
      set -- $dev
      echo "round $r $m --device $1 --kernels $2" >&2
      "$bin" bench "$m" --device "$1" --kernels "$2" --prompt-tokens 128 --gen-tokens 32 --ctx 512 --json \
        | python3 -c "import json, sys; print(json.dumps({'round': $r, 'file': '$(basename "$m")', 'run': json.load(sys.stdin)}))" \
        >>"$out/bench.jsonl" || echo "{\"round\":$r,\"file\":\"$(basename "$m")\",\"failed\":\"$1 $2\"}" >>"$out/bench.jsonl"
    done
  done
done
echo "results in $out/bench.jsonl" >&2
