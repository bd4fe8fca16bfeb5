// Browser end-to-end suite (part of `cargo xtask test`): the public API and the demo page in headless
// Chromium on WebGPU, against the native CLI on the same machine. Needs WEBMOE_CLI (the release CLI)
// and WEBMOE_MODEL (the test model); `cargo xtask test` sets both. Run one test with
// `node web/tests/e2e.mjs <name-substring>`.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';
import { launch, openPage } from './browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const webRoot = path.resolve(here, '..');
const artifacts = path.resolve(webRoot, '..', 'tests', 'artifacts');
const CLI = process.env.WEBMOE_CLI;
const MODEL = process.env.WEBMOE_MODEL;
if (!CLI || !MODEL) throw new Error('set WEBMOE_CLI and WEBMOE_MODEL (cargo xtask test does)');
const MiB = 1 << 20;
const GEN = 16;

const PROMPTS = [
  { prompt: 'The capital of France is' },
  { prompt: 'def fibonacci(n):' },
  { chat: 'Name three colors of the rainbow.' },
];

function nativeIds(p) {
  const args = ['run', MODEL, '--json', '--temperature', '0', '--max-tokens', String(GEN)];
  if (p.prompt) args.push('--prompt', p.prompt); else args.push('--chat', p.chat);
  const out = JSON.parse(execFileSync(CLI, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  return { prompt_ids: out.prompt_ids, ids: out.ids, text: out.text };
}

function assert(cond, msg) { if (!cond) throw new Error(msg); }
function sameIds(a, b) { return JSON.stringify(a) === JSON.stringify(b); }

const server = await startServer({ webRoot, modelPath: MODEL });
const modelUrl = (scenario = null) => scenario ? `/faulty/${scenario}/${server.model.name}` : `/models/${server.model.name}`;
const browser = await launch();
const { page } = await openPage(browser, `${server.base}/tests/harness.html`);
await page.waitForFunction(() => window.harnessReady === true);

async function resetLog() { await fetch(`${server.base}/__reset`, { method: 'POST' }); }

/** Loads through the public API in the page and returns the engine's load info (or the error). */
async function loadInPage(url, opts = {}) {
  return page.evaluate(async ([url, opts]) => {
    if (window.engine) { await window.engine.unload(); window.engine = null; }
    try {
      const progress = [];
      window.engine = await window.webmoe.createEngine({ model: url, ...opts, onProgress: (p) => progress.push(p) });
      return { ok: true, info: window.engine.info, progress: progress.length, lastProgress: progress[progress.length - 1], weightsProgress: progress.filter((p) => p.phase === 'weights').length };
    } catch (e) {
      return { ok: false, code: e.code, message: e.message, name: e.name };
    }
  }, [url, opts]);
}

async function greedyInPage(p) {
  return page.evaluate(async ([p, gen]) => {
    const common = { temperature: 0, max_tokens: gen };
    const r = p.prompt
      ? await window.engine.completions.create({ prompt: p.prompt, ...common })
      : await window.engine.chat.completions.create({ messages: [{ role: 'user', content: p.chat }], ...common });
    return { prompt_ids: r.webmoe.prompt_ids, ids: r.webmoe.ids, text: p.prompt ? r.choices[0].text : r.choices[0].message.content };
  }, [p, GEN]);
}

const reference = new Map();
function expected(p) {
  const k = JSON.stringify(p);
  if (!reference.has(k)) reference.set(k, nativeIds(p));
  return reference.get(k);
}

async function checkGreedy(prompts) {
  for (const p of prompts) {
    const want = expected(p);
    const got = await greedyInPage(p);
    assert(sameIds(got.prompt_ids, want.prompt_ids), `prompt ids differ for ${JSON.stringify(p)}: ${got.prompt_ids} vs native ${want.prompt_ids}`);
    assert(sameIds(got.ids, want.ids), `greedy ids differ for ${JSON.stringify(p)}:\n  browser ${got.ids} (${JSON.stringify(got.text)})\n  native  ${want.ids} (${JSON.stringify(want.text)})`);
  }
}

let dataStart = 0;
const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('chunked HTTP load: greedy tokens equal the native CLI; heap growth stays bounded', async () => {
  await page.evaluate(() => window.webmoe.deleteCachedModel(location.origin + '/models/' + 'x').catch(() => {}));
  await resetLog();
  const chunk = 4 * MiB, parallel = 4;
  const r = await loadInPage(modelUrl(), { chunkSize: chunk, parallel, cache: false });
  assert(r.ok, `load failed: ${r.code} ${r.message}`);
  const load = r.info.load;
  dataStart = load.dataStart;
  await fetch(`${server.base}/__config?dataStart=${dataStart}`, { method: 'POST' });
  const log = await (await fetch(`${server.base}/__log`)).json();
  const dataRequests = log.filter((e) => e.start >= dataStart);
  assert(dataRequests.length >= Math.floor(load.totalBytes / chunk), `expected chunked requests, saw ${dataRequests.length}`);
  assert(dataRequests.every((e) => e.end - e.start + 1 <= chunk && e.status === 206), 'every data request is one chunk answered 206');
  const growth = load.heapPeakBytes - load.heapBeforeBytes;
  const bound = chunk * parallel + 32 * MiB;
  console.log(`  load ${load.loadSeconds.toFixed(2)} s, ${(load.totalBytes / MiB).toFixed(1)} MiB in ${dataRequests.length} requests, heap ${(load.heapBeforeBytes / MiB).toFixed(1)} -> peak ${(load.heapPeakBytes / MiB).toFixed(1)} MiB (growth ${(growth / MiB).toFixed(1)} MiB, bound ${(bound / MiB).toFixed(0)} MiB), adapter ${r.info.adapterInfo.vendor}/${r.info.adapterInfo.architecture}`);
  assert(growth < bound, `heap grew by ${growth} bytes, more than ${bound}`);
  await checkGreedy(PROMPTS);
});

test('default settings: heap growth below chunk x parallel + 32 MiB', async () => {
  const r = await loadInPage(modelUrl(), { cache: false });
  assert(r.ok, `load failed: ${r.code} ${r.message}`);
  const l = r.info.load;
  const growth = l.heapPeakBytes - l.heapBeforeBytes;
  console.log(`  load ${l.loadSeconds.toFixed(2)} s, heap growth ${(growth / MiB).toFixed(1)} MiB`);
  assert(growth < 16 * MiB * 4 + 32 * MiB, `heap grew by ${growth} bytes`);
});

const failures = [];
const only = process.argv[2];
for (const t of tests) {
  if (only && !t.name.includes(only)) continue;
  const t0 = Date.now();
  try {
    await t.fn();
    console.log(`ok   ${t.name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failures.push(t.name);
    console.log(`FAIL ${t.name} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n  ${e.stack ?? e}`);
  }
}
await browser.close();
await server.close();
console.log(failures.length ? `${failures.length} browser test(s) failed` : 'all browser tests passed');
process.exit(failures.length ? 1 : 0);
