// `cargo xtask bench-moe --web`: the synthetic MoE and dense models (paths as arguments, MoE first) in
// headless Chromium (WebGPU; SwiftShader on machines without a GPU) through the public API: load time,
// prefill of a fixed-length prompt and decode tokens per second, then the MoE/dense ratios, as JSON.
// Options after the paths: --prompt-tokens N (default 256), --gen N (default 32), --runs N (default 2).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';
import { launch, openPage } from './browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const webRoot = path.resolve(here, '..');
const argv = process.argv.slice(2);
const flag = (name, def) => { const i = argv.indexOf(name); return i >= 0 ? Number(argv[i + 1]) : def; };
const models = argv.filter((a, i) => a.endsWith('.gguf') && !argv[i - 1]?.startsWith('--'));
if (models.length !== 2) throw new Error('usage: bench_moe.mjs MOE.gguf DENSE.gguf [--prompt-tokens N] [--gen N] [--runs N]');
const promptTokens = flag('--prompt-tokens', 256), gen = flag('--gen', 32), runs = flag('--runs', 2);

const extraModels = Object.fromEntries(models.map((m) => [path.basename(m), m]));
const server = await startServer({ webRoot, modelPath: models[0], extraModels });
const browser = await launch();
const { page } = await openPage(browser, `${server.base}/tests/harness.html`);
await page.waitForFunction(() => window.harnessReady === true);
// The synthetic tokenizer is byte-level without merges: one token per ASCII letter.
const prompt = 'a'.repeat(promptTokens - 1);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

const results = [];
for (const m of models) {
  const r = await page.evaluate(async ([url, prompt, gen, runs]) => {
    const t0 = performance.now();
    const engine = await window.webmoe.createEngine({ model: url, cache: false, contextSize: 1024 });
    const loadS = (performance.now() - t0) / 1000;
    await engine.completions.create({ prompt: 'ab', max_tokens: 2, temperature: 0 });
    const out = [];
    for (let i = 0; i < runs; i++) {
      const c = await engine.completions.create({ prompt, max_tokens: gen, temperature: 0, stop: [] });
      out.push({ promptTokens: c.usage.prompt_tokens, genTokens: c.usage.completion_tokens, prefill: c.webmoe.prefill_tokens_per_s, decode: c.webmoe.decode_tokens_per_s });
    }
    const s = await engine.stats();
    await engine.unload();
    return { loadS, out, adapter: `${s.adapterInfo.vendor}/${s.adapterInfo.architecture}` };
  }, [`/models/${path.basename(m)}`, prompt, gen, runs]);
  results.push({
    model: path.basename(m),
    adapter: r.adapter,
    load_s: +r.loadS.toFixed(2),
    prompt_tokens: r.out[0].promptTokens,
    gen_tokens: r.out[0].genTokens,
    prefill_tokens_per_s: +median(r.out.map((x) => x.prefill)).toFixed(3),
    decode_tokens_per_s: +median(r.out.map((x) => x.decode)).toFixed(3),
    runs: r.out.map((x) => [+x.prefill.toFixed(3), +x.decode.toFixed(3)]),
  });
}
const ratio = (k) => +(results[0][k] / results[1][k]).toFixed(3);
console.log(JSON.stringify({
  browser: results,
  moe_over_dense_decode: ratio('decode_tokens_per_s'),
  moe_over_dense_prefill: ratio('prefill_tokens_per_s'),
}));
await browser.close();
await server.close();
