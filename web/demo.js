// The demo page: load a model (URL or local file) with a progress bar, then chat with streamed answers
// rendered as Markdown; the conversation stays in the engine's cache between turns; JSON mode constrains
// answers to a schema.
import { createEngine, listCachedModels, deleteCachedModel } from './pkg/webmoe.js';

/** Answer text as safe HTML: Markdown (marked) with any raw HTML from the model shown as text, then
 * sanitized (DOMPurify). `cargo xtask demo` copies both libraries into vendor/; without them answers
 * are plain text. */
let renderMarkdown = null;
const escapeHtml = (t) => t.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const markdownReady = Promise.all([import('./vendor/marked.esm.js'), import('./vendor/purify.es.mjs')])
  .then(([{ Marked }, { default: purify }]) => {
    const md = new Marked({ gfm: true, breaks: true, async: false });
    md.use({ renderer: { html: ({ text }) => escapeHtml(text) } });
    renderMarkdown = (text) => purify.sanitize(md.parse(text), { USE_PROFILES: { html: true } });
  })
  .catch(() => { /* no vendor folder: plain text */ });
window.webmoeDemo = { renderMarkdown: (t) => renderMarkdown?.(t) ?? null, markdownReady };

function showAnswer(el, text) {
  if (renderMarkdown) el.innerHTML = renderMarkdown(text);
  else el.textContent = text;
}

const $ = (id) => document.getElementById(id);
let engine = null;
let history = [];
let generating = false;

const mb = (b) => (b / 1e6).toFixed(1);
function showError(el, e) {
  el.textContent = e ? `${e.message}${e.code ? ` (${e.code})` : ''}` : '';
  el.hidden = !e;
}

function noWebGpu(reason) {
  $('no-webgpu').hidden = false;
  $('no-webgpu-reason').textContent = reason;
}

if (!navigator.gpu) noWebGpu('This browser does not offer WebGPU (navigator.gpu is missing): models run on the CPU.');

async function refreshCache() {
  const list = $('cache-list');
  try {
    const models = await listCachedModels();
    list.replaceChildren(...models.map((m) => {
      const li = document.createElement('li');
      li.textContent = `${m.url} — ${mb(m.cachedBytes)} of ${mb(m.totalBytes)} MB${m.complete ? '' : ' (partial)'}`;
      const del = document.createElement('button');
      del.textContent = 'Delete';
      del.onclick = async () => { await deleteCachedModel(m.url); refreshCache(); };
      li.append(del);
      return li;
    }));
    if (!models.length) list.innerHTML = '<li class="muted">nothing cached yet</li>';
  } catch { list.innerHTML = '<li class="muted">cache unavailable</li>'; }
}

async function load(model) {
  if (generating) return;
  showError($('load-error'), null);
  $('load-button').disabled = true;
  $('progress').hidden = false;
  $('progress-bar').value = 0;
  $('progress-text').textContent = 'starting…';
  if (engine) { await engine.unload(); engine = null; }
  const t0 = performance.now();
  try {
    engine = await createEngine({
      model,
      onProgress: (p) => {
        if (p.phase === 'header') { $('progress-text').textContent = 'reading the model header…'; return; }
        if (p.phase === 'device') { $('progress-text').textContent = 'choosing the device (GPU self-test)…'; return; }
        if (p.phase !== 'weights') return;
        const frac = p.totalBytes ? p.loadedBytes / p.totalBytes : 0;
        const left = p.bytesPerSecond > 0 ? (p.totalBytes - p.loadedBytes) / p.bytesPerSecond : 0;
        $('progress-bar').value = frac;
        $('progress-text').textContent = `${mb(p.loadedBytes)} / ${mb(p.totalBytes)} MB · ${(frac * 100).toFixed(0)}% · `
          + `${mb(p.bytesPerSecond)} MB/s · ${left.toFixed(0)} s left`
          + (p.cachedBytes > 0 ? ` · ${mb(p.cachedBytes)} MB from cache` : '')
          + (p.warning ? ` · ${p.warning}` : '');
      },
    });
    const s = engine.info;
    const l = s.load;
    $('progress-bar').value = 1;
    $('progress-text').textContent = `ready: ${mb(l.totalBytes)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s`
      + (l.cachedBytes === l.totalBytes && l.totalBytes > 0 ? ' · from cache' : l.cachedBytes > 0 ? ` · ${mb(l.cachedBytes)} MB from cache` : '');
    const a = s.adapterInfo;
    if (!a) noWebGpu(`No WebGPU adapter (${s.device.reason}): the model runs on the CPU.`);
    const adapter = a ? [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' ') || s.adapter : 'none';
    const d = s.device;
    $('adapter').textContent = `Running on the ${d.device.toUpperCase()}`
      + (d.device === 'cpu' ? ` (${d.cpuKernels})` : '') + ` because ${d.reason}`
      + ` · Adapter: ${adapter || 'unknown'}`
      + (d.selfTest ? ` · self-test ${d.selfTest.passed ? 'passed' : 'failed'} in ${(d.selfTestSeconds * 1000).toFixed(0)} ms` : '')
      + ` · ${s.model.architecture}, ${s.model.layers} layers · ${d.device.toUpperCase()} memory ${mb(s.bytesPlanned)} MB`;
    $('chat-panel').hidden = false;
    $('prompt').focus();
    refreshCache();
  } catch (e) {
    showError($('load-error'), e);
    $('progress').hidden = true;
    if (e.code === 'webgpu-unavailable') noWebGpu(e.message);
  } finally {
    $('load-button').disabled = false;
  }
}

/** The request's response_format from the JSON switch and schema box (throws on a bad schema). */
function responseFormat() {
  if (!$('json-mode').checked) return undefined;
  const text = $('json-schema').value.trim();
  if (!text) return { type: 'json_object' };
  let schema;
  try { schema = JSON.parse(text); } catch (e) { throw Object.assign(new Error(`the JSON schema is not JSON: ${e.message}`), { code: 'invalid-request' }); }
  return { type: 'json_schema', json_schema: { name: 'answer', schema, strict: true } };
}

function bubble(role, text) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  div.textContent = text;
  $('messages').append(div);
  div.scrollIntoView({ block: 'end' });
  return div;
}

async function send() {
  const text = $('prompt').value.trim();
  if (!text || !engine || generating) return;
  $('prompt').value = '';
  showError($('chat-error'), null);
  history.push({ role: 'user', content: text });
  bubble('user', text);
  const out = bubble('assistant', '');
  out.dataset.state = 'streaming';
  generating = true;
  $('send-button').disabled = true;
  $('stop-button').disabled = false;
  let answer = '';
  let tokens = 0;
  let firstAt = 0;
  try {
    const stream = engine.chat.completions.create({
      messages: history,
      stream: true,
      temperature: Number($('temperature').value),
      top_p: Number($('top-p').value),
      max_tokens: Number($('max-tokens').value),
      response_format: responseFormat(),
    });
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c.delta.content) {
        answer += c.delta.content;
        showAnswer(out, answer);
        tokens++;
        firstAt ||= performance.now();
        const secs = (performance.now() - firstAt) / 1000;
        if (secs > 0) $('speed').textContent = `${(tokens / secs).toFixed(1)} tokens/s`;
        out.scrollIntoView({ block: 'end' });
      }
      if (c.finish_reason) {
        const w = chunk.webmoe;
        const u = chunk.usage;
        $('speed').textContent = `prefill ${w.prefill_tokens_per_s.toFixed(1)} tok/s · decode ${w.decode_tokens_per_s.toFixed(1)} tok/s · ${u.completion_tokens} tokens`
          + ` · ${u.prompt_tokens_details.cached_tokens} of ${u.prompt_tokens} prompt tokens reused from the cache`;
        out.dataset.reused = String(u.prompt_tokens_details.cached_tokens);
        const note = document.createElement('span');
        note.className = 'note';
        note.textContent = c.finish_reason === 'abort' ? 'stopped' : c.finish_reason === 'length' ? 'reached max tokens' : '';
        if (note.textContent) out.append(note);
        out.dataset.state = c.finish_reason;
      }
    }
    history.push({ role: 'assistant', content: answer });
  } catch (e) {
    out.dataset.state = 'error';
    showError($('chat-error'), e);
    history.pop();
  } finally {
    generating = false;
    $('send-button').disabled = false;
    $('stop-button').disabled = true;
  }
}

$('load-form').onsubmit = (e) => { e.preventDefault(); load($('model-url').value.trim()); };
$('file-input').onchange = () => { const f = $('file-input').files[0]; if (f) load(f); };
const dz = $('drop-zone');
dz.ondragover = (e) => { e.preventDefault(); dz.classList.add('over'); };
dz.ondragleave = () => dz.classList.remove('over');
$('folder-input').onchange = () => { const fs = $('folder-input').files; if (fs.length) load(fs); };
/** The files of a dropped folder's top level (a directory entry's file entries). */
async function folderEntries(dir) {
  const reader = dir.createReader();
  const entries = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    entries.push(...batch);
  }
  const files = entries.filter((e) => e.isFile);
  return Promise.all(files.map((e) => new Promise((resolve, reject) => e.file(resolve, reject))));
}
dz.ondrop = async (e) => {
  e.preventDefault();
  dz.classList.remove('over');
  const dir = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).find((en) => en?.isDirectory);
  if (dir) { load(await folderEntries(dir)); return; }
  const files = [...e.dataTransfer.files];
  if (files.length === 1) load(files[0]); else if (files.length) load(files);
};
$('chat-form').onsubmit = (e) => { e.preventDefault(); send(); };
$('prompt').onkeydown = (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send(); } };
$('stop-button').onclick = () => engine?.interrupt();
$('json-mode').onchange = () => { $('schema-label').hidden = !$('json-mode').checked; };
$('clear-button').onclick = () => { if (!generating) { history = []; $('messages').replaceChildren(); } };
refreshCache();
