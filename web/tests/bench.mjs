// `cargo xtask bench-web`: loads the test model in headless Chromium (WebGPU; SwiftShader on machines
// without a GPU) through the public API, with device auto (the CPU backend there), the CPU backend's
// SIMD128-only build and device gpu, and prints load time, prefill and decode tokens per second (median
// of interleaved runs) as JSON, next to llama.cpp compiled to WebAssembly (@wllama/wllama, CPU, 2
// threads) on the same model in the same browser. Options: --runs N (default 3), --prompt-words N (default 100), --gen N (default 64),
// --no-peer, --tuning LANES,ROWS (the engine's `tuning` option).
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';
import { launch, openPage } from './browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const webRoot = path.resolve(here, '..');
const MODEL = process.env.WEBMOE_MODEL;
if (!MODEL) throw new Error('set WEBMOE_MODEL (cargo xtask bench-web does)');
const argv = process.argv.slice(2);
const flag = (name, def) => { const i = argv.indexOf(name); return i >= 0 ? Number(argv[i + 1]) : def; };
const runs = flag('--runs', 3), words = flag('--prompt-words', 100), gen = flag('--gen', 64);
const peer = !argv.includes('--no-peer');
const tuningAt = argv.indexOf('--tuning');
const tuning = tuningAt >= 0 ? argv[tuningAt + 1].split(',').map(Number) : undefined;

const server = await startServer({
  webRoot, modelPath: MODEL,
  extraRoots: { '/wllama/': path.join(webRoot, 'node_modules/@wllama/wllama/esm/') },
});
const browser = await launch();
const { page } = await openPage(browser, `${server.base}/tests/harness.html`);
await page.waitForFunction(() => window.harnessReady === true);
const modelUrl = `/models/${path.basename(MODEL)}`;
// A prompt the model continues for a long time without an end token.
const prompt = `Here is a list of numbers: ${Array.from({ length: words }, (_, i) => i + 1).join(', ')},`;

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

// Engines: webmoe with device auto (the CPU backend on SwiftShader; the relaxed-SIMD build where the
// browser has it; threaded, since the harness is cross-origin isolated), the same on one thread (what
// a page without isolation gets), the CPU backend's SIMD128-only build (one thread), webmoe on the GPU
// adapter, and wllama.
const configs = [
  { name: 'webmoe_auto', opts: { tuning } },
  { name: 'webmoe_auto_1_thread', opts: { tuning, threads: 1 } },
  { name: 'webmoe_cpu_simd128', opts: { device: 'cpu', simd: 'simd128', threads: 1 } },
  { name: 'webmoe_gpu', opts: { device: 'gpu', tuning } },
];
const loaded = {};
for (const c of configs) {
  loaded[c.name] = await page.evaluate(async ([name, url, opts]) => {
    const t0 = performance.now();
    const engine = await window.webmoe.createEngine({ model: url, cache: false, ...opts });
    const loadS = (performance.now() - t0) / 1000;
    await engine.completions.create({ prompt: 'Hello', max_tokens: 4, temperature: 0 });
    (window.benchEngines ??= {})[name] = engine;
    const s = engine.stats ? await engine.stats() : null;
    return { loadS, device: s.device.device, reason: s.device.reason, cpuKernels: s.device.cpuKernels, wasmBuild: s.wasmBuild, selfTestSeconds: s.device.selfTestSeconds, adapter: s.adapterInfo ? `${s.adapterInfo.vendor}/${s.adapterInfo.architecture}` : 'none', crossOriginIsolated };
  }, [c.name, modelUrl, c.opts]);
}
if (peer) {
  loaded.wllama = await page.evaluate(async ([url]) => {
    const { Wllama } = await import('/wllama/index.js');
    const wllama = new Wllama({ default: '/wllama/wasm/wllama.wasm' }, { suppressNativeLog: true });
    const t0 = performance.now();
    await wllama.loadModelFromUrl(new URL(url, location.href).href, { n_threads: 2, n_ctx: 1024, useCache: false });
    const loadS = (performance.now() - t0) / 1000;
    await wllama.createCompletion({ prompt: 'Hello', max_tokens: 4, temperature: 0 });
    window.benchWllama = wllama;
    return { loadS, threads: wllama.getNumThreads?.() ?? null, multithread: wllama.isMultithread?.() ?? null };
  }, [modelUrl]);
}
// Interleaved: each round runs every engine once, so load on the machine hits them alike.
const samples = Object.fromEntries(Object.keys(loaded).map((k) => [k, []]));
for (let i = 0; i < runs; i++) {
  for (const c of configs) {
    samples[c.name].push(await page.evaluate(async ([name, prompt, gen]) => {
      const r = await window.benchEngines[name].completions.create({ prompt, max_tokens: gen, temperature: 0 });
      return { promptTokens: r.usage.prompt_tokens, genTokens: r.usage.completion_tokens, prefill: r.webmoe.prefill_tokens_per_s, decode: r.webmoe.decode_tokens_per_s };
    }, [c.name, prompt, gen]));
  }
  if (peer) {
    samples.wllama.push(await page.evaluate(async ([prompt, gen]) => {
      const r = await window.benchWllama.createCompletion({ prompt, max_tokens: gen, temperature: 0 });
      return { promptTokens: r.usage?.prompt_tokens, genTokens: r.usage?.completion_tokens, prefill: r.timings?.prompt_per_second, decode: r.timings?.predicted_per_second };
    }, [prompt, gen]));
  }
}
const summary = (name) => {
  const out = samples[name];
  return {
    ...loaded[name],
    loadS: undefined,
    load_s: +loaded[name].loadS.toFixed(2),
    prompt_tokens: out[0].promptTokens,
    gen_tokens: out[0].genTokens,
    prefill_tokens_per_s: +median(out.map((r) => r.prefill)).toFixed(2),
    decode_tokens_per_s: +median(out.map((r) => r.decode)).toFixed(2),
    runs: out.map((r) => [+r.prefill.toFixed(2), +r.decode.toFixed(2)]),
  };
};
const result = {
  model: path.basename(MODEL),
  machine: `${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? ''}`.trim(),
  ...Object.fromEntries(Object.keys(loaded).map((k) => [k, summary(k)])),
};
if (peer) {
  result.wllama.version = '3.13.0';
  for (const c of configs) {
    result[`${c.name}_over_wllama`] = {
      decode: +(result[c.name].decode_tokens_per_s / result.wllama.decode_tokens_per_s).toFixed(3),
      prefill: +(result[c.name].prefill_tokens_per_s / result.wllama.prefill_tokens_per_s).toFixed(3),
    };
  }
}
console.log(JSON.stringify(result));
await browser.close();
await server.close();
