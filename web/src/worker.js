// webmoe worker: runs the WebAssembly engine off the page thread. Messages in: { id, op, args };
// messages out: { id, progress } | { id, text } | { id, result } | { id, error: { code, message } }.
// The same `handle` serves the in-page mode (`createEngine({ worker: false })`).
import init, * as wasm from './webmoe_web.js';

let ready = null;
let adapterInfo = null;

async function adapterDetails() {
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) {
    throw Object.assign(new Error(
      'WebGPU is not available in this browser. Use a current Chrome or Edge (113+), Safari 26+, or ' +
      'Firefox 141+ on Windows; on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu.'),
    { code: 'webgpu-unavailable' });
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw Object.assign(new Error(
      'WebGPU is present but no GPU adapter was given (blocklisted driver or GPU disabled). ' +
      'Check chrome://gpu, update the graphics driver, or try another browser.'),
    { code: 'webgpu-unavailable' });
  }
  const i = adapter.info ?? {};
  return {
    vendor: i.vendor ?? '', architecture: i.architecture ?? '', device: i.device ?? '',
    description: i.description ?? '', features: [...adapter.features].sort(),
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
  };
}

function errorOf(e) {
  return { code: e?.code ?? 'internal', message: e?.message ?? String(e) };
}

/** Runs one request; `post` sends messages back to the caller. */
export async function handle(msg, post) {
  const { id, op, args } = msg;
  try {
    if (op === 'interrupt') { if (ready) { await ready; wasm.interrupt(); } post({ id, result: null }); return; }
    ready ??= init();
    await ready;
    let result;
    switch (op) {
      case 'load':
        adapterInfo = await adapterDetails();
        result = await wasm.load(args, (p) => post({ id, progress: p }));
        result = { ...result, adapterInfo };
        break;
      case 'generate':
        result = await wasm.generate(args, (text) => post({ id, text }));
        break;
      case 'stats': {
        const s = wasm.stats();
        result = s ? { ...s, adapterInfo } : null;
        break;
      }
      case 'unload': wasm.unload(); result = null; break;
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
