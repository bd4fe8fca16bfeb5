"""Drives `webmoe serve --openai` with the official `openai` Python client (from PyPI) and prints one
JSON object with what came back; crates/webmoe-cli/tests/serve_openai.rs checks it. Usage:
python3 client_check.py BASE_URL"""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
out = {}
out["models"] = [m.id for m in client.models.list()]
msgs = [{"role": "user", "content": "What is the capital of Germany?"}]
r = client.chat.completions.create(model="any", messages=msgs, temperature=0, max_tokens=12)
out["chat"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
               "usage": r.usage.total_tokens, "cached": r.usage.prompt_tokens_details.cached_tokens}
parts = []
usage = None
for c in client.chat.completions.create(model="any", messages=msgs, temperature=0, max_tokens=12,
                                        stream=True, stream_options={"include_usage": True}):
    if c.choices:
        parts.append(c.choices[0].delta.content or "")
    if c.usage:
        usage = c.usage.total_tokens
out["stream"] = {"text": "".join(parts), "usage": usage}
t = client.completions.create(model="any", prompt="The capital of France is", temperature=0, max_tokens=4, logprobs=2)
out["completion"] = {"text": t.choices[0].text, "tokens": t.choices[0].logprobs.tokens}
schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
          "age": {"type": "integer", "minimum": 0, "maximum": 120}}, "required": ["name", "age"],
          "additionalProperties": False}
j = client.chat.completions.create(model="any", messages=[{"role": "user", "content": "Describe a person."}],
                                   temperature=0, max_tokens=60,
                                   response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema, "strict": True}})
out["json"] = json.loads(j.choices[0].message.content)
out["json_schema"] = schema
try:
    client.chat.completions.create(model="any", messages=msgs, temperature=-1)
    out["bad"] = None
except Exception as e:  # the client raises BadRequestError for HTTP 400
    out["bad"] = {"type": type(e).__name__, "message": str(e)}
print(json.dumps(out))
