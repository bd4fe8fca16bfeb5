// The threaded CPU backend (crates/webmoe-threads, built for wasm32-wasip1-threads): one instance in
// the engine's worker, sharing its WebAssembly.Memory with pool workers (threads_worker.js) that the
// module's std::thread::spawn starts through the `wasi.thread-spawn` import. Used when the page is
// cross-origin isolated (SharedArrayBuffer); the main module (webmoe_web) calls it through
// `globalThis.webmoeThreads`, which `startThreads` installs.
import { startWorker, inPackage } from './spawn.js';

const WASI_ENOSYS = 52;
const PAGE = 65536;

/** The WASI preview-1 functions the module imports, over `memory`; `env` becomes its environment. */
export function wasiImports(memory, env) {
  const enc = new TextEncoder();
  const vars = Object.entries(env).map(([k, v]) => enc.encode(`${k}=${v}\0`));
  const view = () => new DataView(memory.buffer);
  const fns = {
    environ_sizes_get(countPtr, sizePtr) {
      view().setUint32(countPtr, vars.length, true);
      view().setUint32(sizePtr, vars.reduce((n, v) => n + v.length, 0), true);
      return 0;
    },
    environ_get(ptrs, buf) {
      const bytes = new Uint8Array(memory.buffer);
      for (const v of vars) {
        view().setUint32(ptrs, buf, true);
        ptrs += 4;
        bytes.set(v, buf);
        buf += v.length;
      }
      return 0;
    },
    clock_time_get(id, precision, out) {
      const ns = BigInt(Math.round((id === 0 ? Date.now() : performance.timeOrigin + performance.now()) * 1e6));
      view().setBigUint64(out, ns, true);
      return 0;
    },
    random_get(ptr, len) {
      // getRandomValues refuses shared memory: fill a copy.
      const tmp = new Uint8Array(len);
      for (let o = 0; o < len; o += 65536) crypto.getRandomValues(tmp.subarray(o, Math.min(len, o + 65536)));
      new Uint8Array(memory.buffer).set(tmp, ptr);
      return 0;
    },
    fd_write(fd, iovs, n, written) {
      let total = 0, text = '';
      for (let i = 0; i < n; i++) {
        const p = view().getUint32(iovs + 8 * i, true), l = view().getUint32(iovs + 8 * i + 4, true);
        text += new TextDecoder().decode(new Uint8Array(memory.buffer).slice(p, p + l));
        total += l;
      }
      if (text.trim()) console.warn(`webmoe-threads (fd ${fd}): ${text.trimEnd()}`);
      view().setUint32(written, total, true);
      return 0;
    },
    sched_yield() { return 0; },
    proc_exit(code) { throw new Error(`webmoe-threads exited with code ${code}`); },
  };
  // Anything else the module might name fails as "not supported" instead of a link error.
  return new Proxy(fns, { get: (t, k) => t[k] ?? (() => WASI_ENOSYS) });
}

let state = null;

/**
 * Instantiates the threaded module at `url` with `threads` threads in all (the caller's included):
 * pre-spawns `threads - 1` pool workers (a worker starts asynchronously, so they must exist before the
 * engine spawns its pool) and installs `globalThis.webmoeThreads`. Returns the thread count.
 */
export async function startThreads(url, threads) {
  if (state) return state.threads;
  const module = await WebAssembly.compileStreaming(fetch(url));
  const memory = new WebAssembly.Memory({ initial: 1024, maximum: 65536, shared: true });
  const env = { WEBMOE_THREADS: String(threads) };
  const idle = [];
  await Promise.all(Array.from({ length: threads - 1 }, () => new Promise((resolve, reject) => {
    const url = inPackage(new URL('./threads_worker.js', import.meta.url));
    const moved = url.href !== new URL('./threads_worker.js', import.meta.url).href;
    const w = startWorker(url, moved ? null : () => new Worker(new URL('./threads_worker.js', import.meta.url), { type: 'module' }));
    w.onmessage = (e) => { if (e.data === 'ready') { idle.push(w); resolve(); } };
    w.onerror = (e) => reject(new Error(`a CPU thread worker failed to start: ${e.message}`));
  })));
  let nextTid = 1;
  const spawn = (arg) => {
    const w = idle.pop();
    if (!w) return -1;
    const tid = nextTid++;
    w.postMessage({ module, memory, env, tid, arg });
    return tid;
  };
  const instance = await WebAssembly.instantiate(module, {
    env: { memory },
    wasi_snapshot_preview1: wasiImports(memory, env),
    wasi: { 'thread-spawn': spawn },
  });
  const x = instance.exports;
  x.wm_init();
  const bytes = () => new Uint8Array(memory.buffer);
  const error = () => new TextDecoder().decode(bytes().slice(x.wm_error_ptr(), x.wm_error_ptr() + x.wm_error_len()));
  /** Copies `data` into module memory for the duration of `f(ptr)`. */
  const withBytes = (data, f) => {
    const p = x.wm_alloc(data.byteLength);
    try {
      bytes().set(new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength), p);
      return f(p);
    } finally {
      x.wm_free(p, data.byteLength);
    }
  };
  const kinds = { 1: 'invalid', 2: 'too-large', 3: 'model' };
  const check = (code) => (code === 0 ? '' : `${kinds[code] ?? 'model'}:${error()}`);
  globalThis.webmoeThreads = {
    open(header, fileSize, rope, maxContext, prefillChunk, kvF32, limit) {
      return withBytes(header, (h) => withBytes(rope, (r) => check(x.wm_open(h, header.byteLength, BigInt(fileSize), r,
        rope.length, maxContext, prefillChunk, kvF32 ? 1 : 0, BigInt(limit)))));
    },
    write(index, offset, data) { return withBytes(data, (p) => check(x.wm_write(index, BigInt(offset), p, data.byteLength))); },
    finish() { return check(x.wm_finish()); },
    forward(ids, draw) {
      const d = new TextEncoder().encode(draw);
      const r = withBytes(ids, (ip) => withBytes(d, (dp) => x.wm_forward(ip, ids.length, dp, d.byteLength)));
      return r >= -1n ? Number(r) : check(Number(-r - 1n));
    },
    rewind(n) { return x.wm_rewind(n); },
    logits() { return new Float32Array(memory.buffer.slice(x.wm_logits(), x.wm_logits() + 4 * x.wm_vocab())); },
    weightBytes() { return Number(x.wm_weight_bytes()); },
    weightBytesPerToken() { return Number(x.wm_weight_bytes_per_token()); },
    threads() { return x.wm_threads(); },
  };
  state = { threads };
  return threads;
}
