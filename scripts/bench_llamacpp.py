#!/usr/bin/env python3
"""llama.cpp's CPU speed on a GGUF, measured like `webmoe bench`: the same pseudo-random prompt of N tokens
(ids (i * 2654435761 >> 7) % vocab), prefill in one batch, then M greedy decode steps one token at a time.
Prints one JSON line. Run by hand (scripts/install-llama-cpp.sh first):

    /tmp/llvenv/bin/python scripts/bench_llamacpp.py MODEL.gguf --prompt-tokens 128 --gen-tokens 64 --threads 2
"""
import argparse, json, time
import numpy as np
from llama_cpp import Llama
import llama_cpp

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--prompt-tokens", type=int, default=128)
ap.add_argument("--gen-tokens", type=int, default=64)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
llm = Llama(model_path=a.model, n_ctx=2048, n_batch=512, n_threads=a.threads, n_threads_batch=a.threads,
            logits_all=False, verbose=False, seed=0)
vocab = llm.n_vocab()
prompt = [((i * 2654435761) & 0xFFFFFFFF) >> 7 for i in range(a.prompt_tokens)]
prompt = [p % vocab for p in prompt]
llm.eval(prompt[:8])  # warm-up
llm.reset()
t = time.perf_counter()
llm.eval(prompt)
prefill = time.perf_counter() - t
tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
t = time.perf_counter()
for _ in range(a.gen_tokens):
    llm.eval([tok])
    tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
decode = time.perf_counter() - t
print(json.dumps({
    "engine": "llama.cpp", "llama_cpp_python": llama_cpp.__version__, "threads": a.threads,
    "prompt_tokens": a.prompt_tokens, "gen_tokens": a.gen_tokens,
    "prefill_tokens_per_s": a.prompt_tokens / prefill, "decode_tokens_per_s": a.gen_tokens / decode,
}))
