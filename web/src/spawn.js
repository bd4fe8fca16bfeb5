// Starts module workers. A worker script must have the page's origin, so when the package is served
// from another origin (a CDN), the worker is a same-origin `blob:` module that imports the real one
// (its `import.meta.url`, and so the .wasm files next to it, stay on the package's origin).

function viaBlob(url) {
  const src = new Blob([`import ${JSON.stringify(url.href)};`], { type: 'text/javascript' });
  return new Worker(URL.createObjectURL(src), { type: 'module' });
}

/** A module worker running the script at `url` (a URL object). */
export function startWorker(url) {
  const here = globalThis.location?.origin;
  if (here && here !== 'null' && url.origin !== here && url.protocol !== 'blob:' && url.protocol !== 'data:') {
    return viaBlob(url);
  }
  try {
    return new Worker(url, { type: 'module' });
  } catch (e) {
    if (e?.name !== 'SecurityError') throw e;
    return viaBlob(url);
  }
}
