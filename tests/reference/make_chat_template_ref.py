"""Renders real chat templates (models/templates/, fetched by scripts/fetch-chat-templates.sh) the way
Hugging Face transformers' `apply_chat_template` does (jinja2's sandbox with trim_blocks and
lstrip_blocks, loop controls, its `tojson`, `raise_exception`), for chats with and without tools, and
writes tests/reference/chat_template_ref.json. Run by hand: python3 tests/reference/make_chat_template_ref.py
(needs jinja2 from PyPI)."""
import json
import pathlib

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Template, BOS text, EOS text (as the models' tokenizer configs give them).
TEMPLATES = [
    ("Qwen-Qwen2.5-7B-Instruct", "", "<|im_end|>"),
    ("Qwen-Qwen3-0.6B", "", "<|im_end|>"),
    ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "<|begin_of_text|>", "<|im_end|>"),
    ("meta-llama-Llama-3.1-8B-Instruct", "<|begin_of_text|>", "<|eot_id|>"),
    ("mistralai-Mistral-Nemo-Instruct-2407", "<s>", "</s>"),
]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a time zone.",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}
ASK = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
]
# Call ids of 9 letters and digits, as Mistral's templates require.
CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {"id": "a1b2c3d4e", "type": "function",
         "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
    ],
}
ANSWER = {"role": "tool", "tool_call_id": "a1b2c3d4e", "name": "get_weather",
          "content": "{\"celsius\": 18, \"sky\": \"sunny\"}"}

CASES = [
    ("chat", [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello. How can I help?"},
              {"role": "user", "content": "Name a colour."}], [], True),
    ("tools", ASK, [WEATHER, TIME], True),
    ("tool_round_trip", ASK + [CALL, ANSWER], [WEATHER, TIME], True),
    ("call_only", ASK + [CALL], [WEATHER, TIME], False),
]


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    out = []
    for name, bos, eos in TEMPLATES:
        source = (ROOT / "models/templates" / f"{name}.jinja").read_text()
        template = env.from_string(source)
        for case, messages, tools, gen in CASES:
            kwargs = dict(messages=messages, add_generation_prompt=gen, bos_token=bos, eos_token=eos)
            if tools:
                kwargs["tools"] = tools
            out.append({"template": name, "case": case, "messages": messages, "tools": tools,
                        "add_generation_prompt": gen, "bos_token": bos, "eos_token": eos,
                        "rendered": template.render(**kwargs)})
    path = ROOT / "tests/reference/chat_template_ref.json"
    path.write_text(json.dumps({"jinja2": jinja2.__version__, "cases": out}, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(out)} renderings to {path}")


if __name__ == "__main__":
    main()
