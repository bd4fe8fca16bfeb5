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
# Tools: a required call, a named one (streamed as delta.tool_calls), then the answer goes back in.
tools = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city now",
          "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                         "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                         "required": ["city", "unit"], "additionalProperties": False}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
          "properties": {"zone": {"type": "string", "maxLength": 30}}, "required": ["zone"]}}}]
ask = [{"role": "user", "content": "What is the weather in Paris?"}]
r = client.chat.completions.create(model="any", messages=ask, tools=tools, tool_choice="required",
                                   temperature=0, max_tokens=60)
m = r.choices[0]
out["tool_required"] = {"finish": m.finish_reason, "content": m.message.content,
                        "calls": [c.model_dump() for c in m.message.tool_calls or []]}
named = {"type": "function", "function": {"name": "get_time"}}
deltas, finish = [], None
for c in client.chat.completions.create(model="any", messages=ask, tools=tools, tool_choice=named,
                                        temperature=0.7, seed=3, max_tokens=60, stream=True):
    d = c.choices[0].delta
    deltas += [t.model_dump() for t in d.tool_calls or []]
    finish = c.choices[0].finish_reason or finish
out["tool_named_stream"] = {"finish": finish, "deltas": deltas}
call = m.message.tool_calls[0]
back = ask + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
              {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"celsius": 18, "sky": "sunny"})}]
r = client.chat.completions.create(model="any", messages=back, tools=tools, temperature=0, max_tokens=30)
out["tool_answer"] = {"finish": r.choices[0].finish_reason, "content": r.choices[0].message.content,
                      "prompt_tokens": r.usage.prompt_tokens, "cached": r.usage.prompt_tokens_details.cached_tokens}
out["tools"] = tools
try:
    client.chat.completions.create(model="any", messages=msgs, temperature=-1)
    out["bad"] = None
except Exception as e:  # the client raises BadRequestError for HTTP 400
    out["bad"] = {"type": type(e).__name__, "message": str(e)}
print(json.dumps(out))
