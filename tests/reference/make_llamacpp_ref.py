#!/usr/bin/env python3
"""Behavioural reference from llama.cpp (through llama-cpp-python) for the test model.

For every prompt in prompts.json: the prompt token ids (chat prompts rendered with the model's own chat
template, as llama.cpp's chat path does, then tokenized with special tokens parsed) and a greedy
32-token continuation (EOS does not stop it). Run by hand, not in CI:

    python -m venv /tmp/llvenv && /tmp/llvenv/bin/pip install llama-cpp-python numpy jinja2
    /tmp/llvenv/bin/python tests/reference/make_llamacpp_ref.py models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json, sys, pathlib
import numpy as np
import jinja2
from llama_cpp import Llama
import llama_cpp

here = pathlib.Path(__file__).parent
model_path = sys.argv[1]
n_gen = 32
llm = Llama(model_path=model_path, n_ctx=2048, n_batch=512, logits_all=True, verbose=False, seed=0)
template = llm.metadata.get("tokenizer.chat_template")
eos = llm.token_eos()

def render(messages):
    env = jinja2.Environment(loader=jinja2.BaseLoader())
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token="", eos_token=llm.detokenize([eos]).decode())

out = {"model": pathlib.Path(model_path).name, "llama_cpp_python": llama_cpp.__version__, "n_gen": n_gen, "cases": []}
for p in json.load(open(here / "prompts.json")):
    text = p["text"] if p["kind"] == "prompt" else render(p["messages"])
    ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    llm.reset()
    llm.eval(ids)
    gen = []
    for _ in range(n_gen):
        logits = np.array(llm.scores[llm.n_tokens - 1])
        tok = int(np.argmax(logits))
        gen.append(tok)
        llm.eval([tok])
    out["cases"].append({"name": p["name"], "text": text, "prompt_ids": ids, "greedy_ids": gen,
                         "greedy_text": llm.detokenize(gen).decode("utf-8", errors="replace")})
    print(p["name"], len(ids), repr(out["cases"][-1]["greedy_text"][:60]))
json.dump(out, open(here / "llamacpp_ref.json", "w"), ensure_ascii=False, indent=1)
