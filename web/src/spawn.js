// Starts module workers and finds the package's files. A worker script must have the page's origin, so
// when the package is served from another origin (a CDN), the worker is a same-origin `blob:` module
// that imports the real one (its `import.meta.url`, and so the .wasm files next to it, stay on the
// package's origin). Callers write `new Worker(new URL('./x.js', import.meta.url), { type: 'module' })`
// literally, so that bundlers (Vite, webpack 5) see the worker and bundle it.

function viaBlob(url) {
  const src = new Blob([`import ${JSON.stringify(url.href)};`], { type: 'text/javascript' });
  return new Worker(URL.createObjectURL(src), { type: 'module' });
}

/**
 * `url`, made from a package file's `import.meta.url`, moved back into the package's folder when
 * Vite's dev server pre-bundled the package into `node_modules/.vite/deps/`, where its worker and
 * `.wasm` files are not (Vite still serves them from `node_modules/webmoe/`).
 */
export function inPackage(url) {
  const m = /^(.*\/node_modules\/)\.vite\/deps[^/]*\/([^?#]*)/.exec(url.href);
  return m ? new URL(`${m[1]}webmoe/${m[2]}`) : url;
}

/**
 * A module worker for the script at `url`: `direct()` (the bundler-visible `new Worker(...)`) when
 * the script is where `direct` looks and has the page's origin, else through a `blob:` module.
 */
export function startWorker(url, direct) {
  const here = globalThis.location?.origin;
  if (here && here !== 'null' && url.origin !== here && url.protocol !== 'blob:' && url.protocol !== 'data:') {
    return viaBlob(url);
  }
  try {
    return direct ? direct() : new Worker(url, { type: 'module' });
  } catch (e) {
    if (e?.name !== 'SecurityError') throw e;
    return viaBlob(url);
  }
}
