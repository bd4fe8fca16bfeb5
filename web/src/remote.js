// The engine API backed by an OpenAI-compatible server (vLLM, llama.cpp's server, `webmoe serve
// --openai`): `createEngine({ remote: { baseURL, apiKey?, model } })`, or the fallback when a model
// does not fit this device. Requests go out as they are (plus the server's model name); answers and
// server-sent event streams come back as the local engine gives them, with the same promise, abort and
// `break` behaviour and the same WebmoeError codes.

import { WebmoeError, iterablePromise } from './errors.js';

/** The request fields a server gets: OpenAI's, webmoe's extensions, and nothing of the page's. */
const LOCAL_ONLY = new Set(['signal']);

function checkRemote(remote) {
  if (remote == null || typeof remote !== 'object') {
    throw new WebmoeError('invalid-request', 'remote must be { baseURL, apiKey?, model }');
  }
  let base;
  try {
    base = new URL(remote.baseURL, globalThis.location?.href);
  } catch {
    throw new WebmoeError('invalid-request', `remote.baseURL is not a URL: ${JSON.stringify(remote.baseURL)}`);
  }
  if (!['http:', 'https:'].includes(base.protocol)) {
    throw new WebmoeError('invalid-request', `remote.baseURL must be http(s), not ${base.protocol}`);
  }
  if (typeof remote.model !== 'string' || remote.model === '') {
    throw new WebmoeError('invalid-request', 'remote.model must name the server\'s model');
  }
  if (remote.apiKey != null && typeof remote.apiKey !== 'string') {
    throw new WebmoeError('invalid-request', 'remote.apiKey must be a string');
  }
  return { base: base.href.replace(/\/+$/, ''), model: remote.model, apiKey: remote.apiKey };
}

/** A WebmoeError for an HTTP answer that is not a success. */
async function httpError(res) {
  let message = `HTTP ${res.status}`;
  try {
    const body = await res.json();
    message += `: ${body?.error?.message ?? JSON.stringify(body).slice(0, 300)}`;
  } catch { /* not JSON */ }
  const code = res.status === 400 || res.status === 422 ? 'invalid-request' : 'remote-failed';
  return new WebmoeError(code, `the server refused the request (${message})`);
}

/** Longest server-sent event accepted (a chunk of a chat answer is a few hundred bytes). */
const MAX_EVENT_CHARS = 8 << 20;

/** Server-sent events of a response: each `data:` payload until `[DONE]`, parsed as JSON. */
async function* events(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      if (buffer.length > MAX_EVENT_CHARS) {
        throw new WebmoeError('remote-failed', `the server sent an event longer than ${MAX_EVENT_CHARS} characters`);
      }
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
        const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
        if (data === '') continue;
        if (data === '[DONE]') return;
        let v;
        try { v = JSON.parse(data); } catch { throw new WebmoeError('remote-failed', `the server sent an event that is not JSON: ${data.slice(0, 200)}`); }
        if (v?.error) throw new WebmoeError('remote-failed', `the server failed: ${v.error.message ?? JSON.stringify(v.error)}`);
        yield v;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/** The engine API on a server. */
export class RemoteEngine {
  #server; #info; #running = new Set(); #fetch;

  /**
   * @param {{ baseURL: string, apiKey?: string, model: string }} remote
   * @param {object} [why] `{ fallbackFrom, reason }` when the local load was refused.
   */
  constructor(remote, why = {}) {
    this.#server = checkRemote(remote);
    this.#fetch = globalThis.fetch.bind(globalThis);
    this.#info = { remote: true, baseURL: this.#server.base, model: { name: this.#server.model }, ...why };
    this.chat = { completions: { create: (req) => this.#create(req, 'chat/completions') } };
    this.completions = { create: (req) => this.#create(req, 'completions') };
  }

  /** `{ remote: true, baseURL, model, fallbackFrom?, reason? }`. */
  get info() { return this.#info; }

  #create(request, path) {
    const stream = request?.stream === true;
    let body;
    try {
      if (request == null || typeof request !== 'object') throw new WebmoeError('invalid-request', 'the request must be an object');
      if (request.signal?.aborted) throw new WebmoeError('aborted', 'the request was aborted before it started');
      body = Object.fromEntries(Object.entries(request).filter(([k, v]) => !LOCAL_ONLY.has(k) && v !== undefined));
      body.model = this.#server.model;
    } catch (e) {
      const p = Promise.reject(e);
      return stream ? iterablePromise(p) : p;
    }
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    request.signal?.addEventListener('abort', onAbort);
    this.#running.add(controller);
    const done = () => { request.signal?.removeEventListener('abort', onAbort); this.#running.delete(controller); };
    const sent = this.#send(path, body, controller.signal);
    if (!stream) {
      return sent.then(async (res) => { try { return await res.json(); } catch (e) { throw this.#failure(e, controller); } })
        .finally(done);
    }
    return iterablePromise(sent.then((res) => this.#stream(res, controller, done), (e) => { done(); throw e; }));
  }

  async #send(path, body, signal) {
    const headers = { 'content-type': 'application/json' };
    if (this.#server.apiKey) headers.authorization = `Bearer ${this.#server.apiKey}`;
    let res;
    try {
      res = await this.#fetch(`${this.#server.base}/${path}`, { method: 'POST', headers, body: JSON.stringify(body), signal });
    } catch (e) {
      throw this.#failure(e, { signal });
    }
    if (!res.ok) throw await httpError(res);
    return res;
  }

  #failure(e, { signal }) {
    if (e instanceof WebmoeError) return e;
    if (signal?.aborted) return new WebmoeError('aborted', 'the request was aborted');
    return new WebmoeError('remote-failed', `the server at ${this.#server.base} could not be reached: ${e?.message ?? e}`);
  }

  #stream(res, controller, done) {
    const it = events(res);
    let finished = false;
    const end = () => { if (!finished) { finished = true; done(); } };
    return {
      [Symbol.asyncIterator]() { return this; },
      next: async () => {
        if (finished) return { done: true, value: undefined };
        try {
          const r = await it.next();
          if (r.done) end();
          return r;
        } catch (e) {
          end();
          if (controller.signal.aborted) return { done: true, value: undefined };
          throw this.#failure(e, controller);
        }
      },
      /** Leaving the loop early (`break`) cancels this request only. */
      return: async () => {
        if (!finished) { controller.abort(); end(); }
        return { done: true, value: undefined };
      },
    };
  }

  /** Stops every running request of this engine. */
  async interrupt() { for (const c of this.#running) c.abort(); }

  /** `{ remote: true, baseURL, model, busy }` (speeds are the server's to report). */
  async stats() { return { ...this.#info, busy: this.#running.size > 0 }; }

  /** Stops the running requests; the server keeps its model. */
  async unload() { await this.interrupt(); }
}

export { checkRemote };
