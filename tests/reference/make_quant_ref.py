#!/usr/bin/env python3
"""Reference dequantization of random blocks of every supported ggml type, by gguf-py (llama.cpp's own
Python package), for the CPU decoders in webmoe-core. Run by hand:

    python -m venv /tmp/gvenv && /tmp/gvenv/bin/pip install gguf numpy
    /tmp/gvenv/bin/python tests/reference/make_quant_ref.py
(or with PYTHONPATH=<llama.cpp>/gguf-py, e.g. the llama-cpp-python 0.3.36 sdist's vendor/llama.cpp, whose
gguf-py knows MXFP4).
"""
import json, pathlib
import numpy as np
from gguf import GGMLQuantizationType as T, quants, GGML_QUANT_SIZES

rng = np.random.default_rng(1234)
out = {"gguf_py": "gguf", "cases": []}
for name in ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]:
    ty = T[name]
    block_elems, block_bytes = GGML_QUANT_SIZES[ty]
    n_blocks = 3
    n = 256 if block_elems < 256 else block_elems * n_blocks
    if block_elems == 1:
        vals = rng.standard_normal(n).astype(np.float32)
        raw = np.ascontiguousarray(quants.quantize(vals, ty)).view(np.uint8).reshape(-1)
    else:
        raw = rng.integers(0, 256, size=(n // block_elems) * block_bytes, dtype=np.uint8)
        # Scale fields must be small finite f16 values so that the result is finite.
        scale_fields = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
                        "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}[name]
        blocks = raw.reshape(-1, block_bytes)
        for b in blocks:
            for o in scale_fields:
                b[o:o + 2] = np.frombuffer(np.float16(rng.uniform(-0.05, 0.05)).tobytes(), dtype=np.uint8)
        raw = blocks.reshape(-1)
    deq = quants.dequantize(np.asarray(raw, dtype=np.uint8).reshape(1, -1), ty).reshape(-1)
    out["cases"].append({"type": name, "bytes": bytes(np.asarray(raw, dtype=np.uint8)).hex(),
                         "values": [float(v) for v in deq.astype(np.float32)]})
    print(name, len(deq))
# MXFP4 (gpt-oss experts): random codes under chosen E8M0 scale bytes, the two subnormal ones (0, 1)
# and the largest finite one (252: 2^124 · 12) among them; compared bit for bit.
raw = rng.integers(0, 256, size=16 * 17, dtype=np.uint8).reshape(16, 17)
raw[:, 0] = [0, 1, 2, 3, 100, 118, 120, 125, 126, 127, 128, 129, 130, 140, 200, 252]
deq = quants.dequantize(raw.reshape(1, -1), T.MXFP4).reshape(-1)
out["cases"].append({"type": "MXFP4", "bytes": bytes(raw.reshape(-1)).hex(),
                     "values": [float(v) for v in deq.astype(np.float32)], "exact": True})
print("MXFP4", len(deq))
here = pathlib.Path(__file__).parent
json.dump(out, open(here / "quant_ref.json", "w"))
