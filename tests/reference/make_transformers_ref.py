#!/usr/bin/env python3
"""Tight numerical reference from Hugging Face transformers for the test model.

Loads the same GGUF with `gguf_file=` (weights dequantized to f32, f32 math) and, for the prompt ids that
llama.cpp produced (llamacpp_ref.json, so both references share one input), records the top-10 logits at
the last prompt position and a greedy 32-token continuation with the top-1/top-2 logit gap at every step.
Run by hand after make_llamacpp_ref.py:

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch transformers gguf numpy
    /tmp/refvenv/bin/python tests/reference/make_transformers_ref.py models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json, sys, pathlib
import torch
import transformers
from transformers import AutoModelForCausalLM

here = pathlib.Path(__file__).parent
path = pathlib.Path(sys.argv[1])
n_gen = 32
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, torch_dtype=torch.float32)
model.eval()
ref = json.load(open(here / "llamacpp_ref.json"))
out = {"model": path.name, "transformers": transformers.__version__, "torch": torch.__version__, "n_gen": n_gen, "cases": []}
with torch.no_grad():
    for case in ref["cases"]:
        ids = list(case["prompt_ids"])
        res = model(torch.tensor([ids]), use_cache=True)
        last = res.logits[0, -1].float()
        top = torch.topk(last, 10)
        top10 = [[int(i), float(v)] for v, i in zip(top.values, top.indices)]
        past = res.past_key_values
        gen, gaps = [], []
        logits = last
        for _ in range(n_gen):
            t2 = torch.topk(logits, 2)
            tok = int(t2.indices[0])
            gen.append(tok)
            gaps.append(float(t2.values[0] - t2.values[1]))
            res = model(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
            past = res.past_key_values
            logits = res.logits[0, -1].float()
        out["cases"].append({"name": case["name"], "prompt_ids": ids, "top10": top10, "greedy_ids": gen, "greedy_gaps": gaps})
        print(case["name"], top10[:2], gen[:8])
json.dump(out, open(here / "transformers_ref.json", "w"), indent=1)
