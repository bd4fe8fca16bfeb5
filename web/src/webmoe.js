// webmoe: language models in the browser on WebGPU. The public API; see webmoe.d.ts for the types and
// the README for an example. The engine itself (Rust + WGSL compiled to WebAssembly) runs in a worker.

/** An error with a `code` a program can act on (see webmoe.d.ts for the codes). */
export class WebmoeError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'WebmoeError';
    this.code = code;
  }
}

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
      this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
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

let counter = 0;
const newId = (prefix) => `${prefix}-${Date.now().toString(36)}${(counter++).toString(36)}`;

function requestArgs(req, kind) {
  const { messages, prompt, max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed, stop } = req;
  if (kind === 'chat') {
    if (!Array.isArray(messages)) throw new WebmoeError('invalid-request', 'messages must be an array of { role, content }');
    return { messages, max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed, stop };
  }
  if (typeof prompt !== 'string') throw new WebmoeError('invalid-request', 'prompt must be a string');
  return { prompt, max_tokens, temperature, top_p, top_k, min_p, repeat_penalty, seed, stop };
}

function usageOf(r) { return r.usage; }

function extras(r) {
  return {
    prompt_ids: r.prompt_ids, ids: r.ids, prefill_tokens_per_s: r.prefill_tokens_per_s,
    decode_tokens_per_s: r.decode_tokens_per_s, time_to_first_token_s: r.time_to_first_token_s,
  };
}

/** A loaded model. Create it with {@link createEngine}. */
export class Engine {
  #ch; #model; #info;

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
    const req = request ?? {};
    const args = requestArgs(req, kind);
    const id = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl');
    const created = Math.floor(Date.now() / 1000);
    const model = this.#model;
    if (req.signal) {
      if (req.signal.aborted) throw new WebmoeError('invalid-request', 'the request was aborted before it started');
      req.signal.addEventListener('abort', () => this.interrupt(), { once: true });
    }
    if (!req.stream) {
      return this.#ch.call('generate', args).then((r) => kind === 'chat'
        ? {
          id, object: 'chat.completion', created, model,
          choices: [{ index: 0, message: { role: 'assistant', content: r.text }, finish_reason: r.finish_reason, logprobs: null }],
          usage: usageOf(r), webmoe: extras(r),
        }
        : {
          id, object: 'text_completion', created, model,
          choices: [{ index: 0, text: r.text, finish_reason: r.finish_reason, logprobs: null }],
          usage: usageOf(r), webmoe: extras(r),
        });
    }
    return this.#stream(args, kind, id, created, model);
  }

  #stream(args, kind, id, created, model) {
    const queue = [];
    let wake = null;
    let finished = false;
    const push = (item) => { queue.push(item); wake?.(); wake = null; };
    const chunk = (choice, extra = {}) => ({
      id, object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', created, model,
      choices: [{ index: 0, logprobs: null, ...choice }], ...extra,
    });
    let first = true;
    this.#ch.call('generate', args, {
      onText: (text) => {
        if (kind === 'chat') {
          push({ value: chunk({ delta: first ? { role: 'assistant', content: text } : { content: text }, finish_reason: null }) });
        } else {
          push({ value: chunk({ text, finish_reason: null }) });
        }
        first = false;
      },
    }).then((r) => {
      const last = kind === 'chat'
        ? chunk({ delta: {}, finish_reason: r.finish_reason }, { usage: usageOf(r), webmoe: extras(r) })
        : chunk({ text: '', finish_reason: r.finish_reason }, { usage: usageOf(r), webmoe: extras(r) });
      push({ value: last });
      push({ done: true });
    }, (e) => push({ error: e }));
    const engine = this;
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
      async return() {
        if (!finished) { finished = true; await engine.interrupt(); }
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

/**
 * Starts an engine (in a Web Worker unless `worker: false`) and loads a model from a URL or a File.
 * @param {import('./webmoe').EngineOptions} options
 * @returns {Promise<Engine>}
 */
export async function createEngine(options) {
  const {
    model, onProgress, chunkSize, parallel, kvDtype, contextSize, cache, tuning, worker = true,
    device = 'auto', selfTest, simd, forceSelfTestFailure, cpuHeapLimit, kernels, threads, stallTimeout,
  } = options ?? {};
  checkDevice(device, simd);
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) {
    throw new WebmoeError('invalid-request', `threads must be an integer from 1 to 64, not ${JSON.stringify(threads)}`);
  }
  const args = {
    chunkSize, parallel, kvDtype, contextSize, cache, tuning, device, selfTest, simd, forceSelfTestFailure, cpuHeapLimit, kernels,
    threads, stallTimeout,
  };
  let name;
  if (typeof model === 'string' || model instanceof URL) {
    args.url = new URL(model, globalThis.location?.href).href;
    name = args.url;
  } else if (typeof Blob !== 'undefined' && model instanceof Blob) {
    args.file = model;
    name = model.name ?? 'local file';
  } else {
    throw new WebmoeError('invalid-request', 'model must be a URL or a File/Blob');
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
