#!/usr/bin/env bash
# Fetches real chat templates that render tools (Qwen 2.5/3, Hermes 3, Llama 3.1, Mistral Nemo,
# gpt-oss) into models/templates/ (git-ignored). They come from llama.cpp's test data
# (models/templates/) inside the llama-cpp-python 0.3.36 source package on PyPI, checked by sha256.
# No model hub is involved.
set -euo pipefail
cd "$(dirname "$0")/.."
names=(Qwen-Qwen2.5-7B-Instruct Qwen-Qwen3-0.6B NousResearch-Hermes-3-Llama-3.1-8B-tool_use
  meta-llama-Llama-3.1-8B-Instruct mistralai-Mistral-Nemo-Instruct-2407 openai-gpt-oss-120b)
have=1
for n in "${names[@]}"; do [ -f "models/templates/$n.jinja" ] || have=0; done
[ "$have" = 1 ] && exit 0
sha=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
url=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/sdist.tar.gz" "$url"
echo "$sha  $tmp/sdist.tar.gz" | sha256sum -c --quiet - || { echo "checksum mismatch for $url" >&2; exit 1; }
dir=llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates
paths=()
for n in "${names[@]}"; do paths+=("$dir/$n.jinja"); done
tar xzf "$tmp/sdist.tar.gz" -C "$tmp" "${paths[@]}"
mkdir -p models/templates
for n in "${names[@]}"; do cp "$tmp/$dir/$n.jinja" models/templates/; done
echo "fetched ${#names[@]} chat templates into models/templates/"
