// `cargo xtask bench-web`: loads the test model in headless Chromium (WebGPU; SwiftShader on machines
// without a GPU) through the public API and prints load time, prefill and decode tokens per second as
// JSON, next to llama.cpp compiled to WebAssembly (@wllama/wllama, CPU, 2 threads) on the same model in
// the same browser. Options: --runs N (default 3), --prompt-words N (default 100), --gen N (default 64),
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

const webmoe = await page.evaluate(async ([url, prompt, gen, runs, tuning]) => {
  const t0 = performance.now();
  const engine = await window.webmoe.createEngine({ model: url, cache: false, tuning });
  const loadS = (performance.now() - t0) / 1000;
  await engine.completions.create({ prompt: 'Hello', max_tokens: 4, temperature: 0 });
  const out = [];
  for (let i = 0; i < runs; i++) {
    const r = await engine.completions.create({ prompt, max_tokens: gen, temperature: 0 });
    out.push({ promptTokens: r.usage.prompt_tokens, genTokens: r.usage.completion_tokens, prefill: r.webmoe.prefill_tokens_per_s, decode: r.webmoe.decode_tokens_per_s });
  }
  const s = await engine.stats();
  await engine.unload();
  return { loadS, out, adapter: `${s.adapterInfo.vendor}/${s.adapterInfo.architecture}`, deviceType: s.deviceType, tuning: s.tuning, heapBytes: s.heapBytes, crossOriginIsolated };
}, [modelUrl, prompt, gen, runs, tuning]);

const result = {
  model: path.basename(MODEL),
  machine: `${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? ''}`.trim(),
  webmoe: {
    adapter: webmoe.adapter,
    device_type: webmoe.deviceType,
    tuning: webmoe.tuning,
    load_s: +webmoe.loadS.toFixed(2),
    prompt_tokens: webmoe.out[0].promptTokens,
    gen_tokens: webmoe.out[0].genTokens,
    prefill_tokens_per_s: +median(webmoe.out.map((r) => r.prefill)).toFixed(2),
    decode_tokens_per_s: +median(webmoe.out.map((r) => r.decode)).toFixed(2),
    runs: webmoe.out.map((r) => [+r.prefill.toFixed(2), +r.decode.toFixed(2)]),
  },
};

if (peer) {
  const w = await page.evaluate(async ([url, prompt, gen, runs]) => {
    const { Wllama } = await import('/wllama/index.js');
    const wllama = new Wllama({ default: '/wllama/wasm/wllama.wasm' }, { suppressNativeLog: true });
    const t0 = performance.now();
    await wllama.loadModelFromUrl(new URL(url, location.href).href, { n_threads: 2, n_ctx: 1024, useCache: false });
    const loadS = (performance.now() - t0) / 1000;
    await wllama.createCompletion({ prompt: 'Hello', max_tokens: 4, temperature: 0 });
    const out = [];
    for (let i = 0; i < runs; i++) {
      const r = await wllama.createCompletion({ prompt, max_tokens: gen, temperature: 0 });
      out.push({ promptTokens: r.usage?.prompt_tokens, genTokens: r.usage?.completion_tokens, prefill: r.timings?.prompt_per_second, decode: r.timings?.predicted_per_second });
    }
    const threads = wllama.getNumThreads?.() ?? null;
    const multithread = wllama.isMultithread?.() ?? null;
    await wllama.exit();
    return { loadS, out, threads, multithread };
  }, [modelUrl, prompt, gen, runs]);
  result.wllama = {
    version: '3.13.0', threads: w.threads, multithread: w.multithread,
    load_s: +w.loadS.toFixed(2),
    prompt_tokens: w.out[0].promptTokens,
    gen_tokens: w.out[0].genTokens,
    prefill_tokens_per_s: +median(w.out.map((r) => r.prefill)).toFixed(2),
    decode_tokens_per_s: +median(w.out.map((r) => r.decode)).toFixed(2),
  };
  result.decode_ratio_webmoe_over_wllama = +(result.webmoe.decode_tokens_per_s / result.wllama.decode_tokens_per_s).toFixed(3);
  result.prefill_ratio_webmoe_over_wllama = +(result.webmoe.prefill_tokens_per_s / result.wllama.prefill_tokens_per_s).toFixed(3);
}
console.log(JSON.stringify(result));
await browser.close();
await server.close();
