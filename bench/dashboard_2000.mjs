// The dashboard with 2,000 simulated sensors: time to first full map and the main
// thread's long tasks (> 50 ms) while it updates live for 20 s. Needs a built tributary,
// web/dist and tests/e2e/node_modules (scripts/setup.sh).
//   node bench/dashboard_2000.mjs [path/to/tributary]
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const { chromium } = createRequire(join(here, '../tests/e2e/package.json'))('playwright-core');
const bin = process.argv[2] ?? join(here, '../build/ci/tributary');
const port = 18000 + Math.floor(Math.random() * 2000);
const dir = mkdtempSync(join(tmpdir(), 'trib-bench-'));
writeFileSync(join(dir, 'p.yaml'), `pipeline:
  name: dashboard-bench
  data_dir: ${dir}
processing:
  grace: 15m
sources:
  - name: simulator
    type: simulator
    devices: ${process.env.DEVICES ?? 2000}
    speed: 300
windows:
  - name: device_1m
    type: tumbling
    size: 1m
    group_by: device
    aggregates: [count, mean, min, max]
sinks: []
server:
  listen: 127.0.0.1:${port}
  rate_limit: 0
`);
const proc = spawn(bin, ['run', join(dir, 'p.yaml'), '--quiet'], { cwd: dir, stdio: 'ignore' });
const base = `http://127.0.0.1:${port}`;
for (let i = 0; i < 200; i++) {
  try { if ((await fetch(`${base}/readyz`)).ok) break; } catch { /* not yet */ }
  await new Promise((r) => setTimeout(r, 100));
}
const profile = mkdtempSync(join(tmpdir(), 'trib-chromium-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1400, height: 1000 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage'],
});
const page = ctx.pages()[0] ?? await ctx.newPage();
await page.addInitScript(() => {
  window.__long = [];
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); })
    .observe({ type: 'longtask', buffered: true });
});
page.on('crash', () => console.log('page crashed'));
page.on('pageerror', (e) => console.log('page error', e.message));
ctx.on('close', () => console.log('context closed'));
const t0 = Date.now();
await page.goto(`${base}/`);
const devices = Number(process.env.DEVICES ?? 2000);
await page.waitForFunction((n) => Number(document.querySelector('#map')?.dataset.sensors) >= n, Math.floor(0.95 * devices), { timeout: 120000 });
const firstMap = Date.now() - t0;
await page.evaluate(() => { window.__long = []; });
await page.waitForTimeout(20000);
const long = await page.evaluate(() => window.__long);
const sensors = await page.getAttribute('#map', 'data-sensors');
long.sort((a, b) => a - b);
const pct = (p) => (long.length ? long[Math.min(long.length - 1, Math.floor(p * long.length))].toFixed(0) : 0);
console.log(`sensors on map: ${sensors}`);
console.log(`first full map: ${firstMap} ms`);
console.log(`long tasks in 20 s of live updates: ${long.length}, total ${long.reduce((a, b) => a + b, 0).toFixed(0)} ms, p50 ${pct(0.5)} ms, max ${pct(1)} ms`);
await ctx.close();
proc.kill('SIGTERM');
await new Promise((r) => proc.once('exit', r));
rmSync(dir, { recursive: true, force: true });
rmSync(profile, { recursive: true, force: true });
