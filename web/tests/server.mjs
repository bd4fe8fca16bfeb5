// Test server for the browser suite: static files from web/ at /, the model file at /models/<name>
// with Range support, ETag and Last-Modified, and the same file behind fault-injecting paths:
//   /faulty/fail2/<name>    the first data request (range start >= dataStart) fails with 500 twice
//   /faulty/drop/<name>     the first data request sends half its body, then the connection drops
//   /faulty/norange/<name>  Range is ignored: 200 with the whole file
//   /faulty/missing/<name>  404
//   /faulty/change/<name>   after the first data request the ETag changes (the file "was replaced")
//   /faulty/slow/<name>     each data request waits 15 ms (a slow network, for the resume tests)
// Other model files (`extraModels`: name → path) are served at /models/<name> with Range support.
// Hugging Face folders (`folders`: name → directory) are served at /folders/<name>/<file> like the
// model, and behind the same fault paths (/faulty/<scenario>/folders/<name>/<file>), where a data
// request is a shard read past its first (header) read; /faulty/missingshard/… answers 404 for the
// shards only.
// GET /__log returns every model request as { path, start, end, status }; POST /__reset clears it;
// POST /__config?dataStart=N tells the server where tensor data starts. Headers for cross-origin
// isolation are sent so that the multi-threaded wllama build can run in the benchmark.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png', '.ts': 'text/plain',
  '.gguf': 'application/octet-stream',
};

export function startServer({ webRoot, modelPath, extraRoots = {}, extraModels = {}, folders = {} }) {
  const log = [];
  const state = { dataStart: 8 << 20, fails: new Map(), dropped: false, changedAfter: false };
  const model = { name: path.basename(modelPath), size: fs.statSync(modelPath).size, mtime: fs.statSync(modelPath).mtime };

  function serveModel(req, res, scenario) {
    return serveFile(req, res, scenario, modelPath, (start) => start >= state.dataStart);
  }

  /** `filePath` with Range support, under fault `scenario`; `isData(start)`: a weight request. */
  function serveFile(req, res, scenario, filePath, isDataAt) {
    const st = fs.statSync(filePath);
    const model = { size: st.size, mtime: st.mtime };
    const baseEtag = `"${model.size.toString(16)}-${model.mtime.getTime().toString(16)}"`;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    let start = 0, end = model.size - 1, ranged = false;
    if (m && scenario !== 'norange') {
      start = Number(m[1]);
      end = m[2] === '' ? model.size - 1 : Math.min(Number(m[2]), model.size - 1);
      ranged = true;
    }
    const entry = { path: req.url, start, end, status: 0 };
    log.push(entry);
    const send = (status, headers, body) => { entry.status = status; res.writeHead(status, headers); res.end(body); };
    if (scenario === 'missing') return send(404, { 'content-type': 'text/plain' }, 'not found');
    if (scenario === 'missingshard' && filePath.endsWith('.safetensors')) return send(404, { 'content-type': 'text/plain' }, 'not found');
    const isData = isDataAt(start);
    let etag = baseEtag;
    if (scenario === 'change') {
      if (state.changedAfter) etag = `"replaced-${baseEtag.slice(1)}`;
      if (isData) state.changedAfter = true;
    }
    if (scenario === 'fail2' && isData) {
      const key = `${filePath}:${start}`;
      if (state.fails.size === 0) state.fails.set(key, 0);
      if (state.fails.has(key) && state.fails.get(key) < 2) {
        state.fails.set(key, state.fails.get(key) + 1);
        return send(500, { 'content-type': 'text/plain' }, 'injected failure');
      }
    }
    const headers = {
      'accept-ranges': scenario === 'norange' ? 'none' : 'bytes',
      'etag': etag,
      'last-modified': model.mtime.toUTCString(),
      'content-type': filePath.endsWith('.json') ? 'application/json' : 'application/octet-stream',
      'content-length': String(end - start + 1),
    };
    if (ranged) headers['content-range'] = `bytes ${start}-${end}/${model.size}`;
    entry.status = ranged ? 206 : 200;
    res.writeHead(entry.status, headers);
    // Headers, then nothing: the loader's stall timeout must end the load.
    if (scenario === 'stall' && isData) return res.flushHeaders();
    if (end < start) return res.end();
    const stream = fs.createReadStream(filePath, { start, end });
    if (scenario === 'slow' && isData) return setTimeout(() => stream.pipe(res), 15);
    if (scenario === 'drop' && isData && !state.dropped) {
      state.dropped = true;
      const half = Math.floor((end - start + 1) / 2);
      let sent = 0;
      stream.on('data', (chunk) => {
        if (sent + chunk.length >= half) {
          res.write(chunk.subarray(0, half - sent));
          stream.destroy();
          setTimeout(() => res.socket?.destroy(), 20);
        } else {
          sent += chunk.length;
          res.write(chunk);
        }
      });
      return;
    }
    stream.pipe(res);
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    res.setHeader('cross-origin-opener-policy', 'same-origin');
    res.setHeader('cross-origin-embedder-policy', 'require-corp');
    // The package (pkg/) may be loaded from another origin (the cross-origin test): CORS and CORP allow it.
    if (url.pathname.startsWith('/pkg/') || url.pathname.startsWith('/models/')) {
      res.setHeader('access-control-allow-origin', '*');
      res.setHeader('access-control-expose-headers', 'content-range, content-length, accept-ranges, etag, last-modified');
      res.setHeader('cross-origin-resource-policy', 'cross-origin');
    } else {
      res.setHeader('cross-origin-resource-policy', 'same-origin');
    }
    if (url.pathname === '/__log') { res.writeHead(200, { 'content-type': 'application/json' }); return res.end(JSON.stringify(log)); }
    if (url.pathname === '/__reset' && req.method === 'POST') {
      log.length = 0; state.fails.clear(); state.dropped = false; state.changedAfter = false;
      res.writeHead(204); return res.end();
    }
    if (url.pathname === '/__config' && req.method === 'POST') {
      state.dataStart = Number(url.searchParams.get('dataStart'));
      res.writeHead(204); return res.end();
    }
    if (url.pathname === `/models/${model.name}`) return serveModel(req, res, 'ok');
    const extra = url.pathname.startsWith('/models/') && extraModels[url.pathname.slice('/models/'.length)];
    if (extra) {
      const data = fs.readFileSync(extra);
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (!m) { res.writeHead(200, { 'content-length': String(data.length), 'etag': `"x${data.length}"` }); return res.end(data); }
      const start = Number(m[1]);
      const end = m[2] === '' ? data.length - 1 : Math.min(Number(m[2]), data.length - 1);
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${data.length}`, 'content-length': String(end - start + 1), 'etag': `"x${data.length}"` });
      return res.end(data.subarray(start, end + 1));
    }
    const f = /^\/faulty\/(\w+)\/(.+)$/.exec(url.pathname);
    if (f && f[2] === model.name) return serveModel(req, res, f[1]);
    // A folder's file, plainly or behind a fault path.
    const d = /^(?:\/faulty\/(\w+))?\/folders\/([\w.-]+)\/([\w.-]+)$/.exec(url.pathname);
    if (d && folders[d[2]] && !d[3].startsWith('.')) {
      const file = path.join(folders[d[2]], d[3]);
      if (!fs.existsSync(file)) { log.push({ path: req.url, start: 0, end: 0, status: 404 }); res.writeHead(404, { 'content-type': 'text/plain' }); return res.end('not found'); }
      return serveFile(req, res, d[1] ?? 'ok', file, (start) => file.endsWith('.safetensors') && start > 0);
    }
    if (url.pathname === '/favicon.ico') { res.writeHead(204); return res.end(); }
    let file = null;
    for (const [prefix, dir] of Object.entries(extraRoots)) {
      if (url.pathname.startsWith(prefix)) file = path.join(dir, decodeURIComponent(url.pathname.slice(prefix.length)));
    }
    file ??= path.join(webRoot, decodeURIComponent(url.pathname));
    if (file.endsWith('/')) file += 'index.html';
    fs.readFile(file, (err, data) => {
      if (err) { res.writeHead(404); return res.end('not found'); }
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'content-length': String(data.length) });
      res.end(data);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const base = `http://127.0.0.1:${server.address().port}`;
    resolve({
      base, model, log, server,
      close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
    });
  }));
}
