// The packed package in a Vite app with no Vite configuration (part of the browser suite): `npm pack`
// of web/pkg, installed from the tarball into a fresh app under target/vite-app, then chatted through
// in headless Chromium both from `vite build` (served as static files) and from the Vite dev server.
// Exported for e2e.mjs; `node web/tests/vite_app.mjs` runs it alone (WEBMOE_MODEL set).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';
import { openPage } from './browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const webRoot = path.resolve(here, '..');
const app = path.resolve(webRoot, '..', 'target', 'vite-app');

/** What the app asks (the e2e test compares the answer with the native CLI's). */
export const QUESTION = 'What is the capital of France?';

const MAIN = `import { createEngine } from 'webmoe';
window.chat = async (model, content, max_tokens) => {
  const engine = await createEngine({ model, device: 'cpu', cache: false });
  let text = '';
  for await (const c of engine.chat.completions.create({ messages: [{ role: 'user', content }], temperature: 0, max_tokens, stream: true })) {
    text += c.choices[0]?.delta.content ?? '';
  }
  await engine.unload();
  return text;
};
window.ready = true;
`;

/** Makes the app: the tarball installed with npm (no registry needed), an index.html and main.js. */
export function makeApp() {
  fs.rmSync(app, { recursive: true, force: true });
  fs.mkdirSync(app, { recursive: true });
  const tgz = execFileSync('npm', ['pack', '--silent', '--pack-destination', app, path.join(webRoot, 'pkg')], { encoding: 'utf8' }).trim().split('\n').pop();
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'vite-app', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', `./${tgz}`], { cwd: app, stdio: 'inherit' });
  fs.writeFileSync(path.join(app, 'index.html'), '<!doctype html><html><body><script type="module" src="/main.js"></script></body></html>\n');
  fs.writeFileSync(path.join(app, 'main.js'), MAIN);
  return app;
}

async function chatIn(browser, url, modelUrl, gen) {
  const { page, context } = await openPage(browser, url);
  try {
    await page.waitForFunction(() => window.ready === true, null, { timeout: 60000 });
    return await page.evaluate(([m, q, g]) => window.chat(m, q, g), [modelUrl, QUESTION, gen]);
  } finally {
    await context.close();
  }
}

/** Builds the app with `vite build` and chats through the static build, then through `vite` dev. */
export async function checkViteApp(browser, modelPath, gen = 16) {
  const { build, createServer } = await import('vite');
  makeApp();
  await build({ root: app, logLevel: 'warn', configFile: false });
  const dist = path.join(app, 'dist');
  const server = await startServer({ webRoot: dist, modelPath });
  const model = `/models/${server.model.name}`;
  let built;
  try {
    built = await chatIn(browser, `${server.base}/index.html`, model, gen);
  } finally {
    await server.close();
  }
  // The dev server: the model from the test server (another origin, with CORS).
  const models = await startServer({ webRoot: dist, modelPath });
  const dev = await createServer({ root: app, logLevel: 'warn', configFile: false, server: { port: 0, host: '127.0.0.1' } });
  await dev.listen();
  let devText;
  try {
    const addr = dev.httpServer.address();
    devText = await chatIn(browser, `http://127.0.0.1:${addr.port}/`, `${models.base}/models/${models.model.name}`, gen);
  } finally {
    await dev.close();
    await models.close();
  }
  return { built, dev: devText };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { launch } = await import('./browser.mjs');
  const browser = await launch();
  try {
    console.log(await checkViteApp(browser, process.env.WEBMOE_MODEL));
  } finally {
    await browser.close();
  }
}
