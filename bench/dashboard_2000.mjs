// The dashboard with 2,000 simulated sensors in Debian's headless chromium: time to the
// first full map, then over 20 s of live updates the frame times (requestAnimationFrame
// intervals), the main thread's long tasks (> 50 ms), the update latency (a live event's
// arrival to the frame that painted it; server summary time to its arrival) and how
// long a click takes to be answered. Needs a built tributary, web/dist and
// tests/e2e/node_modules (scripts/setup.sh).
//   node bench/dashboard_2000.mjs [path/to/tributary]     (DEVICES=n, SECONDS=n)
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { manySensorsConfig } from '../tests/e2e/many_sensors_config.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { chromium } = createRequire(join(here, '../tests/e2e/package.json'))('playwright-core');
const bin = process.argv[2] ?? join(here, '../build/ci/tributary');
const port = 18000 + Math.floor(Math.random() * 2000);
const dir = mkdtempSync(join(tmpdir(), 'trib-bench-'));
writeFileSync(join(dir, 'p.yaml'), manySensorsConfig({ dir, port, devices: Number(process.env.DEVICES ?? 2000) }));
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
  window.__frames = [];
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); })
    .observe({ type: 'longtask', buffered: true });
  let last = 0;
  const tick = (t) => { if (last) window.__frames.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
});
page.on('crash', () => console.log('page crashed'));
page.on('pageerror', (e) => console.log('page error', e.message));
ctx.on('close', () => console.log('context closed'));
const t0 = Date.now();
await page.goto(`${base}/`);
const devices = Number(process.env.DEVICES ?? 2000);
await page.waitForFunction((n) => Number(document.querySelector('#map')?.dataset.sensors) >= n, Math.floor(0.95 * devices), { timeout: 120000 });
const firstMap = Date.now() - t0;
const seconds = Number(process.env.SECONDS ?? 20);
await page.waitForTimeout(2000); // let the first full render settle
await page.evaluate(() => {
  window.__long = []; window.__frames = [];
  const s = window.__tributaryStats; s.latencies = []; s.summaryLag = []; s.events = 0; s.flushes = 0;
});
// Clicks during the live updates: choose another sensor, time until the trend follows.
const clicks = [];
const started = Date.now();
const options = await page.$$eval('#focus option', (os) => os.map((o) => o.value));
let k = 0;
while (Date.now() - started < seconds * 1000) {
  await page.waitForTimeout(2500);
  const target = options[(k++ * 397) % options.length];
  const c0 = Date.now();
  await page.selectOption('#focus', target);
  await page.waitForFunction((g) => document.querySelector('#trend-chart')?.dataset.focus === g, target, { timeout: 30000 });
  clicks.push(Date.now() - c0);
}
const m = await page.evaluate(() => ({ long: window.__long, frames: window.__frames, stats: window.__tributaryStats, url: document.querySelector('#conn').dataset.url }));
const sensors = await page.getAttribute('#map', 'data-sensors');
const pct = (xs, p) => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length ? a[Math.min(a.length - 1, Math.floor(p * a.length))].toFixed(1) : '–';
};
const elapsed = (Date.now() - started) / 1000;
const long = m.long;
console.log(`sensors on map: ${sensors} (stream: ${m.url})`);
console.log(`first full map: ${firstMap} ms`);
console.log(`frames in ${elapsed.toFixed(0)} s: ${m.frames.length} (${(m.frames.length / elapsed).toFixed(1)} fps), interval p50 ${pct(m.frames, 0.5)} ms, p95 ${pct(m.frames, 0.95)} ms, p99 ${pct(m.frames, 0.99)} ms, max ${pct(m.frames, 1)} ms`);
console.log(`long tasks: ${long.length}, total ${long.reduce((a, b) => a + b, 0).toFixed(0)} ms, p50 ${pct(long, 0.5)} ms, max ${pct(long, 1)} ms`);
console.log(`live events: ${m.stats.events}, painted in ${m.stats.flushes} frames; event to paint p50 ${pct(m.stats.latencies, 0.5)} ms, p95 ${pct(m.stats.latencies, 0.95)} ms, max ${pct(m.stats.latencies, 1)} ms`);
console.log(`summary (server) to arrival: p50 ${pct(m.stats.summaryLag, 0.5)} ms, p95 ${pct(m.stats.summaryLag, 0.95)} ms`);
console.log(`click to updated trend: n ${clicks.length}, p50 ${pct(clicks, 0.5)} ms, max ${pct(clicks, 1)} ms`);
await ctx.close();
proc.kill('SIGTERM');
await new Promise((r) => proc.once('exit', r));
rmSync(dir, { recursive: true, force: true });
rmSync(profile, { recursive: true, force: true });
