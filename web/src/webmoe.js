// webmoe: language models in the browser on WebGPU. The public API; see webmoe.d.ts for the types and
// the README for an example. The engine itself (Rust + WGSL compiled to WebAssembly) runs in a worker.
import { startWorker, inPackage } from './spawn.js';
import { WebmoeError, iterablePromise } from './errors.js';
import { RemoteEngine, checkRemote } from './remote.js';

export { WebmoeError, RemoteEngine };

class Channel {
  constructor(useWorker) {
    this.next = 1;
    this.pending = new Map();
    const receive = (m) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      if ('progress' in m) p.onProgress?.(m.progress);
      else if ('text' in m) p.onText?.(m.text);
      else {
        this.pending.delete(m.id);
        if (m.error) p.reject(new WebmoeError(m.error.code, m.error.message));
        else p.resolve(m.result);
      }
    };
    if (useWorker) {
      const url = inPackage(new URL('./worker.js', import.meta.url));
      const moved = url.href !== new URL('./worker.js', import.meta.url).href;
      this.worker = startWorker(url, moved ? null : () => new Worker(new URL('./worker.js', import.meta.url), { type: 'module' }));
      this.worker.onmessage = (e) => receive(e.data);
      this.worker.onerror = (e) => {
        const err = new WebmoeError('internal', `the webmoe worker failed: ${e.message ?? 'unknown error'}`);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
      };
      this.send = (m) => this.worker.postMessage(m);
    } else {
      const handler = import('./worker.js').then((w) => w.handle);
      this.send = (m) => handler.then((h) => h(m, receive));
    }
  }

  call(op, args, hooks = {}) {
    if (this.closed) return Promise.reject(new WebmoeError('invalid-request', 'the engine was unloaded'));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...hooks });
      this.send({ id, op, args });
    });
  }

  close() {
    this.closed = true;
    this.worker?.terminate();
    const err = new WebmoeError('invalid-request', 'the engine was unloaded');
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

function checkDevice(device, simd) {
  if (!['auto', 'gpu', 'cpu'].includes(device)) {
    throw new WebmoeError('invalid-request', `device must be 'auto', 'gpu' or 'cpu', not ${JSON.stringify(device)}`);
  }
  if (simd !== undefined && !['simd128', 'relaxed-simd'].includes(simd)) {
    throw new WebmoeError('invalid-request', `simd must be 'simd128' or 'relaxed-simd', not ${JSON.stringify(simd)}`);
  }
  if (device === 'gpu' && !globalThis.navigator?.gpu) {
    throw new WebmoeError('webgpu-unavailable',
      "device 'gpu' was requested, but this browser does not offer WebGPU. Use a current Chrome or Edge " +
      '(113+), Safari 26+, or Firefox 141+ on Windows (on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu), ' +
      "or device 'auto' / 'cpu' to run on the CPU.");
  }
}

/** A `wasmUrl` option: one `.wasm` file, or a folder (with its trailing slash). */
const wasmFolder = (href) => (href.endsWith('.wasm') || href.endsWith('/') ? href : `${href}/`);

let counter = 0;
const newId = (prefix) => `${prefix}-${Date.now().toString(36)}${(counter++).toString(36)}`;

const SAMPLING = ['max_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'repeat_penalty', 'presence_penalty',
  'frequency_penalty', 'stop', 'response_format', 'grammar', 'regex', 'tools', 'tool_choice'];

/** The worker's arguments for one choice of `req` (validated; throws a WebmoeError). */
function requestArgs(req, kind) {
  const args = {};
  for (const k of SAMPLING) if (req[k] !== undefined && req[k] !== null) args[k] = req[k];
  if (req.max_completion_tokens != null && args.max_tokens === undefined) args.max_tokens = req.max_completion_tokens;
  if (kind === 'chat') {
    if (!Array.isArray(req.messages) || req.messages.length === 0
      || !req.messages.every((m) => m && typeof m === 'object' && typeof m.role === 'string')) {
      throw new WebmoeError('invalid-request', 'messages must be a non-empty array of { role, content }');
    }
    args.messages = req.messages;
    if (req.logprobs === true) args.logprobs = req.top_logprobs ?? 0;
    else if (req.top_logprobs != null) throw new WebmoeError('invalid-request', 'top_logprobs needs logprobs: true');
  } else {
    if (typeof req.prompt !== 'string') throw new WebmoeError('invalid-request', 'prompt must be a string');
    args.prompt = req.prompt;
    if (req.logprobs != null && req.logprobs !== false) {
      if (!(Number.isInteger(req.logprobs) && req.logprobs >= 0 && req.logprobs <= 20)) {
        throw new WebmoeError('invalid-request', 'logprobs must be an integer from 0 to 20');
      }
      args.logprobs = req.logprobs;
    }
  }
  if (args.logprobs !== undefined && !(Number.isInteger(args.logprobs) && args.logprobs >= 0 && args.logprobs <= 20)) {
    throw new WebmoeError('invalid-request', 'top_logprobs must be an integer from 0 to 20');
  }
  const n = req.n ?? 1;
  if (!(Number.isInteger(n) && n >= 1 && n <= 16)) throw new WebmoeError('invalid-request', 'n must be an integer from 1 to 16');
  if (req.seed != null && !Number.isSafeInteger(req.seed)) throw new WebmoeError('invalid-request', 'seed must be an integer');
  return { args, n, seed: req.seed };
}

/** OpenAI's finish reasons: an interrupted generation reports 'abort' (documented in the README). */
const finishReason = (r) => r.finish_reason;

function chatLogprobs(r) {
  if (!r.logprobs) return null;
  const entry = (t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes });
  return { content: r.logprobs.map((t) => ({ ...entry(t), top_logprobs: t.top.map(entry) })), refusal: null };
}

function textLogprobs(r) {
  if (!r.logprobs) return null;
  let offset = 0;
  const text_offset = r.logprobs.map((t) => { const o = offset; offset += t.token.length; return o; });
  return {
    tokens: r.logprobs.map((t) => t.token),
    token_logprobs: r.logprobs.map((t) => t.logprob),
    top_logprobs: r.logprobs.map((t) => Object.fromEntries(t.top.map((a) => [a.token, a.logprob]))),
    text_offset,
  };
}

function usageOf(results) {
  const prompt = results[0].usage.prompt_tokens;
  const completion = results.reduce((a, r) => a + r.usage.completion_tokens, 0);
  const cached = results[0].usage.prompt_tokens_details.cached_tokens;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached } };
}

function extras(r) {
  return {
    prompt_ids: r.prompt_ids, ids: r.ids, prefill_tokens_per_s: r.prefill_tokens_per_s,
    decode_tokens_per_s: r.decode_tokens_per_s, time_to_first_token_s: r.time_to_first_token_s,
    reused_tokens: r.usage.prompt_tokens_details.cached_tokens, constraint_ms_per_token: r.constraint_ms_per_token,
  };
}

const abortedError = () => new WebmoeError('aborted', 'the request was aborted before it started');

/** A loaded model. Create it with {@link createEngine}. */
export class Engine {
  #ch; #model; #info;
  /** The tail of the request queue: requests run one after another, in the order they were made. */
  #tail = Promise.resolve();

  constructor(channel, model, info) {
    this.#ch = channel;
    this.#model = model;
    this.#info = info;
    this.chat = { completions: { create: (req) => this.#create(req, 'chat') } };
    this.completions = { create: (req) => this.#create(req, 'text') };
  }

  /** What the load reported (model, adapter, load time, bytes from cache...). */
  get info() { return this.#info; }

  #create(request, kind) {
    let parsed;
    try {
      if (request == null || typeof request !== 'object') throw new WebmoeError('invalid-request', 'the request must be an object');
      parsed = requestArgs(request, kind);
      if (request.signal?.aborted) throw abortedError();
    } catch (e) {
      const p = Promise.reject(e);
      return request?.stream ? iterablePromise(p) : p;
    }
    const job = this.#job(request, kind, parsed);
    if (!request.stream) return job.run(null);
    return iterablePromise(Promise.resolve(job.stream()));
  }

  /** One request: it waits for its turn in the queue, then runs its `n` choices. */
  #job(req, kind, { args, n, seed }) {
    const id = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl');
    const created = Math.floor(Date.now() / 1000);
    const model = this.#model;
    const ch = this.#ch;
    const state = { running: false, cancelled: false, done: false };
    const interrupt = () => {
      state.cancelled = true;
      if (state.running && !state.done) ch.call('interrupt', { gen: id });
    };
    const signal = req.signal;
    signal?.addEventListener('abort', interrupt);
    const turn = this.#tail;
    let release;
    this.#tail = new Promise((r) => { release = r; });
    const finish = () => { state.done = true; signal?.removeEventListener('abort', interrupt); release(); };
    const run = async (onText) => {
      try {
        await turn;
        if (state.cancelled) throw abortedError();
        state.running = true;
        const results = [];
        for (let i = 0; i < n; i++) {
          const a = { ...args, gen: id, seed: seed != null ? seed + i : undefined };
          results.push(await ch.call('generate', a, { onText: onText && ((t) => onText(i, t)) }));
          if (state.cancelled) break;
        }
        return results;
      } finally {
        finish();
      }
    };
    const message = (r) => (r.tool_calls?.length
      ? { role: 'assistant', content: r.text || null, refusal: null, tool_calls: r.tool_calls }
      : { role: 'assistant', content: r.text, refusal: null });
    const choice = (r, i) => (kind === 'chat'
      ? { index: i, message: message(r), finish_reason: finishReason(r), logprobs: chatLogprobs(r) }
      : { index: i, text: r.text, finish_reason: finishReason(r), logprobs: textLogprobs(r) });
    const head = { id, object: kind === 'chat' ? 'chat.completion' : 'text_completion', created, model };
    return {
      run: async () => {
        const results = await run(null);
        return { ...head, choices: results.map(choice), usage: usageOf(results), webmoe: extras(results[0]) };
      },
      stream: () => this.#stream(run, interrupt, state, kind, { ...head, object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion' },
        req.stream_options?.include_usage === true),
    };
  }

  #stream(run, interrupt, state, kind, head, includeUsage) {
    const queue = [];
    let wake = null;
    let finished = false;
    const push = (item) => { queue.push(item); wake?.(); wake = null; };
    const chunk = (index, choice, extra = {}) => ({
      ...head, choices: [{ index, logprobs: null, ...choice }], ...extra,
    });
    const started = new Set();
    run((i, text) => {
      if (kind === 'chat') {
        push({ value: chunk(i, { delta: started.has(i) ? { content: text } : { role: 'assistant', content: text }, finish_reason: null }) });
      } else {
        push({ value: chunk(i, { text, finish_reason: null }) });
      }
      started.add(i);
    }).then((results) => {
      results.forEach((r, i) => {
        if (r.tool_calls?.length) {
          // Calls are streamed when complete, each with its index, as OpenAI's delta.tool_calls.
          const tool_calls = r.tool_calls.map((c, index) => ({ index, ...c }));
          push({ value: chunk(i, { delta: started.has(i) ? { tool_calls } : { role: 'assistant', content: null, tool_calls }, finish_reason: null }) });
          started.add(i);
        }
        const lp = kind === 'chat' ? chatLogprobs(r) : textLogprobs(r);
        const last = kind === 'chat'
          ? chunk(i, { delta: started.has(i) ? {} : { role: 'assistant', content: '' }, finish_reason: finishReason(r), logprobs: lp }, { usage: r.usage, webmoe: extras(r) })
          : chunk(i, { text: '', finish_reason: finishReason(r), logprobs: lp }, { usage: r.usage, webmoe: extras(r) });
        push({ value: last });
      });
      if (includeUsage) push({ value: { ...head, choices: [], usage: usageOf(results) } });
      push({ done: true });
    }, (e) => push({ error: e }));
    return {
      [Symbol.asyncIterator]() { return this; },
      async next() {
        if (finished) return { done: true, value: undefined };
        while (queue.length === 0) await new Promise((r) => { wake = r; });
        const item = queue.shift();
        if (item.error) { finished = true; throw item.error; }
        if (item.done) { finished = true; return { done: true, value: undefined }; }
        return { done: false, value: item.value };
      },
      /** Leaving the loop early (`break`) cancels this request only. */
      async return() {
        if (!finished) { finished = true; if (!state.done) interrupt(); }
        return { done: true, value: undefined };
      },
    };
  }

  /** Stops the running generation after the current token (its finish_reason becomes "abort"). */
  interrupt() { return this.#ch.call('interrupt'); }

  /** Statistics: speeds of the last generation, adapter, features, heap and GPU memory, load report. */
  stats() { return this.#ch.call('stats'); }

  /** Testing only: destroys the GPU device (as a driver reset would); later calls fail with 'device-lost'. */
  _loseDeviceForTesting() { return this.#ch.call('loseDeviceForTesting'); }

  /** Frees the model, its GPU memory and the worker. The engine cannot be used afterwards. */
  async unload() {
    try { await this.#ch.call('unload'); } finally { this.#ch.close(); }
  }

  /** Models in the persistent cache. */
  listCachedModels() { return this.#ch.call('listCachedModels'); }

  /** Deletes a model's cached chunks; resolves to whether anything was cached. */
  deleteCachedModel(url) { return this.#ch.call('deleteCachedModel', new URL(url, globalThis.location?.href).href); }
}

/** Local failures after which `fallback: 'remote'` uses the server. */
const FALLBACK_CODES = new Set(['model-too-large', 'webgpu-unavailable', 'gpu-self-test-failed']);

/**
 * Starts an engine (in a Web Worker unless `worker: false`) and loads a model from a URL or a File;
 * with `remote` and no `model`, an engine backed by an OpenAI-compatible server; with both and
 * `fallback: 'remote'`, the server when the model does not fit this device.
 * @param {import('./webmoe').EngineOptions} options
 * @returns {Promise<Engine>}
 */
export async function createEngine(options) {
  const {
    model, onProgress, chunkSize, parallel, kvDtype, contextSize, cache, tuning, worker = true,
    device = 'auto', selfTest, simd, forceSelfTestFailure, cpuHeapLimit, kernels, threads, stallTimeout, wasmUrl,
    remote, fallback, loseDeviceAfterBytesForTesting, quantize,
  } = options ?? {};
  if (fallback !== undefined && fallback !== 'remote') {
    throw new WebmoeError('invalid-request', `fallback must be 'remote', not ${JSON.stringify(fallback)}`);
  }
  if (remote !== undefined) checkRemote(remote);
  if (fallback === 'remote' && remote === undefined) throw new WebmoeError('invalid-request', "fallback: 'remote' needs remote: { baseURL, model }");
  // Only a server: the same API, backed by it.
  if (remote !== undefined && model === undefined) return new RemoteEngine(remote);
  if (fallback === 'remote') {
    try {
      return await createEngine({ ...options, remote: undefined, fallback: undefined });
    } catch (e) {
      // The model does not fit (or this browser cannot run it): the server answers instead.
      if (!(e instanceof WebmoeError) || !FALLBACK_CODES.has(e.code)) throw e;
      return new RemoteEngine(remote, { fallbackFrom: typeof model === 'string' ? model : model?.name ?? 'local file', reason: `${e.code}: ${e.message}` });
    }
  }
  checkDevice(device, simd);
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) {
    throw new WebmoeError('invalid-request', `threads must be an integer from 1 to 64, not ${JSON.stringify(threads)}`);
  }
  const args = {
    chunkSize, parallel, kvDtype, contextSize, cache, tuning, device, selfTest, simd, forceSelfTestFailure, cpuHeapLimit, kernels,
    threads, stallTimeout, loseDeviceAfterBytesForTesting, quantize,
    wasmUrl: wasmUrl === undefined ? undefined : wasmFolder(new URL(wasmUrl, globalThis.location?.href).href),
  };
  let name;
  if (typeof model === 'string' || model instanceof URL) {
    args.url = new URL(model, globalThis.location?.href).href;
    name = args.url;
  } else if (typeof Blob !== 'undefined' && model instanceof Blob) {
    args.file = model;
    name = model.name ?? 'local file';
  } else if (isFolder(model)) {
    const files = await folderFiles(model);
    const gguf = files.filter(([n]) => n.toLowerCase().endsWith('.gguf'));
    if (!files.some(([n]) => n === 'config.json') && gguf.length === 1) {
      // One GGUF file picked or dropped (alone or with others): that file.
      args.file = gguf[0][1];
      name = gguf[0][0];
    } else {
      args.files = files;
      name = model.name ?? 'local folder';
    }
  } else {
    throw new WebmoeError('invalid-request', 'model must be a URL, a File/Blob, or a folder (a FileList, an array of Files or a directory handle)');
  }
  const ch = new Channel(worker);
  try {
    const info = await ch.call('load', args, { onProgress });
    return new Engine(ch, name, info);
  } catch (e) {
    ch.close();
    throw e;
  }
}

/** Whether `model` is a folder's files: a FileList, an array of Files, or a directory handle. */
function isFolder(model) {
  if (model == null) return false;
  if (typeof FileList !== 'undefined' && model instanceof FileList) return true;
  if (Array.isArray(model)) return model.every((f) => typeof Blob !== 'undefined' && f instanceof Blob);
  return model.kind === 'directory' && typeof model.entries === 'function';
}

/**
 * A folder's top-level files as [name, File] pairs. From a `webkitdirectory` picker each file's
 * `webkitRelativePath` starts with the picked folder, so files in its subfolders are left out; an
 * array of Files (a drop) gives their names; a directory handle its file entries.
 */
async function folderFiles(model) {
  if (model.kind === 'directory') {
    const out = [];
    for await (const [name, handle] of model.entries()) {
      if (handle.kind === 'file') out.push([name, await handle.getFile()]);
    }
    return out;
  }
  return [...model]
    .filter((f) => (f.webkitRelativePath || f.name).split('/').length <= 2)
    .map((f) => [f.name, f]);
}

async function oneShot(op, args) {
  const ch = new Channel(true);
  try { return await ch.call(op, args); } finally { ch.close(); }
}

/** Models in the persistent cache: [{ url, validator, size, cachedBytes, totalBytes, complete }]. */
export function listCachedModels() { return oneShot('listCachedModels'); }

/** Deletes a model's cached chunks; resolves to whether anything was cached. */
export function deleteCachedModel(url) {
  return oneShot('deleteCachedModel', new URL(url, globalThis.location?.href).href);
}
