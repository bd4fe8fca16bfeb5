// The remote engine (web/src/remote.js, what `createEngine({ remote })` returns) against any
// OpenAI-compatible server, from Node: a greedy chat answer, the same answer streamed, a text
// completion, a request aborted while it runs, `break` out of a stream, and a bad request. Prints one
// JSON object. Usage: node web/tests/remote_check.mjs BASE_URL MODEL_NAME
// (scripts/check-remote-llamacpp.sh runs it against llama.cpp's server.)
import { RemoteEngine } from '../src/remote.js';

const [baseURL, model] = process.argv.slice(2);
if (!baseURL || !model) throw new Error('usage: node remote_check.mjs BASE_URL MODEL_NAME');
const e = new RemoteEngine({ baseURL, model });
const messages = [{ role: 'user', content: 'What is the capital of France? Answer in one sentence.' }];
const out = {};
const plain = await e.chat.completions.create({ messages, temperature: 0, max_tokens: 24 });
out.chat = { text: plain.choices[0].message.content, finish: plain.choices[0].finish_reason, usage: plain.usage };
let streamed = '';
let chunks = 0;
for await (const c of e.chat.completions.create({ messages, temperature: 0, max_tokens: 24, stream: true })) {
  streamed += c.choices[0]?.delta?.content ?? '';
  chunks++;
}
out.stream = { text: streamed, chunks, equal: streamed === out.chat.text };
const t = await e.completions.create({ prompt: 'The capital of France is', temperature: 0, max_tokens: 8 });
out.completion = t.choices[0].text;
let pieces = 0;
for await (const c of e.chat.completions.create({ messages: [{ role: 'user', content: 'Write a long story.' }], max_tokens: 400, stream: true })) {
  if (c.choices[0]?.delta?.content && ++pieces === 3) break;
}
out.break = pieces;
const ac = new AbortController();
setTimeout(() => ac.abort(), 300);
out.abort = await e.chat.completions.create({ messages: [{ role: 'user', content: 'Write a long story.' }], max_tokens: 400, signal: ac.signal })
  .then(() => 'finished', (err) => err.code);
out.bad = await e.chat.completions.create({ messages: 'nonsense' }).then(() => 'accepted', (err) => `${err.code}: ${err.message.slice(0, 120)}`);
console.log(JSON.stringify(out, null, 1));
