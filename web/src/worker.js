// webmoe worker: runs the WebAssembly engine off the page thread. Messages in: { id, op, args };
// messages out: { id, progress } | { id, text } | { id, result } | { id, error: { code, message } }.
// The same `handle` serves the in-page mode (`createEngine({ worker: false })`).
import init, * as wasm from './webmoe_web.js';
import { startThreads } from './threads.js';
import { inPackage } from './spawn.js';

let ready = null;
let adapterInfo = null;
let build = null;
/** The request whose generation runs now (`interrupt` with another `gen` is stale and ignored). */
let currentGen = null;
/** Where the .wasm files are: next to this file, or `createEngine({ wasmUrl })` (a folder, or one
 * `.wasm` file of the main module). */
let wasmBase = null;

// Every .wasm file named literally, so that bundlers see them and emit them as assets.
const MAIN_WASM = {
  'simd128': () => inPackage(new URL('./webmoe_web_bg.wasm', import.meta.url)),
  'relaxed-simd': () => inPackage(new URL('./webmoe_web_relaxed_bg.wasm', import.meta.url)),
};
const THREADS_WASM = {
  'simd128': () => inPackage(new URL('./webmoe_threads.wasm', import.meta.url)),
  'relaxed-simd': () => inPackage(new URL('./webmoe_threads_relaxed.wasm', import.meta.url)),
};

/** The URL of a .wasm file: from `wasmUrl` when given, else where the bundler or the package put it. */
function wasmFile(table, build, name) {
  if (!wasmBase) return table[build]();
  const base = wasmBase.endsWith('.wasm') ? new URL('./', wasmBase) : wasmBase;
  return new URL(name, base);
}

// A module using i8x16.relaxed_swizzle: it validates only where relaxed SIMD is supported.
const RELAXED_SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0,
  10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11]);

/** The WebAssembly build to run: 'relaxed-simd' where the engine validates it, else 'simd128'. */
function chooseBuild(wanted) {
  if (wanted === 'simd128') return 'simd128';
  const relaxed = WebAssembly.validate(RELAXED_SIMD_PROBE);
  if (wanted === 'relaxed-simd' && !relaxed) {
    throw Object.assign(new Error('this browser does not support WebAssembly relaxed SIMD'), { code: 'invalid-request' });
  }
  return relaxed ? 'relaxed-simd' : 'simd128';
}

const SOFTWARE = /swiftshader|llvmpipe|lavapipe|basic render|warp/i;

// A macrotask turn for the CPU backend between steps, so messages (interrupt) get through.
const turns = new MessageChannel();
const waiting = [];
turns.port1.onmessage = () => waiting.shift()?.();
const yieldToEvents = () => new Promise((resolve) => { waiting.push(resolve); turns.port2.postMessage(0); });

/** The adapter as the page sees it, or `{ missing: reason }` when there is none. */
async function adapterDetails() {
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) return { missing: 'this browser does not offer WebGPU (navigator.gpu is missing)' };
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return { missing: 'WebGPU is present but no GPU adapter was given (blocklisted driver or GPU disabled)' };
  const i = adapter.info ?? {};
  const info = {
    vendor: i.vendor ?? '', architecture: i.architecture ?? '', device: i.device ?? '',
    description: i.description ?? '', features: [...adapter.features].sort(),
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
    isFallbackAdapter: i.isFallbackAdapter ?? false,
  };
  info.software = info.isFallbackAdapter || SOFTWARE.test(`${info.vendor} ${info.architecture} ${info.description}`);
  return info;
}

function noWebGpu(reason) {
  return Object.assign(new Error(
    `device 'gpu' was requested, but ${reason}. Use a current Chrome or Edge (113+), Safari 26+, or ` +
    'Firefox 141+ on Windows (on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu), or ' +
    "device 'auto' / 'cpu' to run on the CPU."),
  { code: 'webgpu-unavailable' });
}

function errorOf(e) {
  return { code: e?.code ?? 'internal', message: e?.message ?? String(e) };
}

/** Runs one request; `post` sends messages back to the caller. */
export async function handle(msg, post) {
  const { id, op, args } = msg;
  try {
    if (op === 'interrupt') {
      if (ready && (args?.gen === undefined || args.gen === currentGen)) { await ready; wasm.interrupt(); }
      post({ id, result: null });
      return;
    }
    build ??= chooseBuild(op === 'load' ? args?.simd : undefined);
    const file = build === 'relaxed-simd' ? 'webmoe_web_relaxed_bg.wasm' : 'webmoe_web_bg.wasm';
    if (op === 'load' && args?.wasmUrl) wasmBase = args.wasmUrl;
    ready ??= init({ module_or_path: wasmBase?.endsWith('.wasm') ? wasmBase : wasmFile(MAIN_WASM, build, file) });
    await ready;
    let result;
    switch (op) {
      case 'load': {
        const device = args.device ?? 'auto';
        const found = device === 'cpu' ? { missing: "device 'cpu' was requested" } : await adapterDetails();
        if (found.missing && device === 'gpu') throw noWebGpu(found.missing);
        adapterInfo = found.missing ? null : found;
        const hints = { noGpuReason: found.missing ?? null, softwareAdapter: !!adapterInfo?.software };
        // The CPU backend runs threaded where the page is cross-origin isolated and the CPU will be
        // chosen (device 'cpu', or 'auto' without a hardware adapter), and only in a worker (the pool's
        // caller blocks while a step runs, which a page's main thread may not).
        const cpuLikely = device === 'cpu' || (device === 'auto' && (found.missing || adapterInfo?.software));
        const wanted = args.threads ?? Math.min(globalThis.navigator?.hardwareConcurrency ?? 1, 8);
        const inWorker = typeof WorkerGlobalScope !== 'undefined' && self instanceof WorkerGlobalScope;
        if (cpuLikely && wanted > 1 && globalThis.crossOriginIsolated && inWorker) {
          const file = build === 'relaxed-simd' ? 'webmoe_threads_relaxed.wasm' : 'webmoe_threads.wasm';
          hints.cpuThreads = await startThreads(wasmFile(THREADS_WASM, build, file), wanted);
        }
        result = await wasm.load({ ...args, ...hints }, (p) => post({ id, progress: p }));
        result = { ...result, adapterInfo, wasmBuild: build };
        break;
      }
      case 'generate':
        currentGen = args.gen ?? null;
        try {
          result = await wasm.generate(args, (text) => post({ id, text }), yieldToEvents);
        } finally {
          currentGen = null;
        }
        break;
      case 'stats': {
        const s = wasm.stats();
        result = s ? { ...s, adapterInfo, wasmBuild: build } : null;
        break;
      }
      case 'unload': wasm.unload(); result = null; break;
      case 'loseDeviceForTesting': result = wasm.loseDeviceForTesting(); break;
      case 'listCachedModels': result = await wasm.listCachedModels(); break;
      case 'deleteCachedModel': result = await wasm.deleteCachedModel(args); break;
      default: throw Object.assign(new Error(`unknown operation ${op}`), { code: 'internal' });
    }
    post({ id, result });
  } catch (e) {
    post({ id, error: errorOf(e) });
  }
}

if (typeof WorkerGlobalScope !== 'undefined' && self instanceof WorkerGlobalScope) {
  self.onmessage = (e) => { handle(e.data, (m) => self.postMessage(m)); };
}
