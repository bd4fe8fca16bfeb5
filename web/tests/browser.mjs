// Headless Chromium with WebGPU (SwiftShader on machines without a GPU), driven by playwright-core and
// the system Chromium; flags from shared/notes/toolchain.md.
import { chromium } from 'playwright-core';
import fs from 'node:fs';

const FLAGS = [
  '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu', '--enable-features=Vulkan',
  '--use-webgpu-adapter=swiftshader', '--enable-unsafe-swiftshader',
];

/** Launches Chromium; `webgpu: false` gives a browser without WebGPU (for the error-path tests). */
export async function launch({ webgpu = true } = {}) {
  const executablePath = process.env.CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']
    .find((p) => fs.existsSync(p));
  if (!executablePath) throw new Error('no Chromium found: apt-get install chromium, or set CHROMIUM');
  const args = webgpu ? FLAGS : ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-webgpu', '--disable-gpu'];
  return chromium.launch({ executablePath, args, headless: true });
}

/** Opens `url` in a fresh context and forwards the page's console errors to stderr. */
export async function openPage(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || process.env.WEBMOE_E2E_VERBOSE) console.error(`  [page ${m.type()}] ${m.text()}`); });
  page.on('pageerror', (e) => console.error(`  [page error] ${e.message}`));
  await page.goto(url);
  return { page, context };
}
