// End-to-end: `tributary run` on the embedded default, the dashboard in Debian's
// chromium (headless) through playwright-core. Screenshots go to $E2E_ARTIFACTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const bin = process.env.TRIBUTARY_BIN ?? join(here, '../../build/ci/tributary');
const artifacts = process.env.E2E_ARTIFACTS ?? join(here, '../../build/ci/e2e-artifacts');
mkdirSync(artifacts, { recursive: true });

let proc, browser, page, base, dataDir, profile;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function waitFor(fn, what, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try { if ((last = await fn())) return last; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

// A small SMTP server on loopback (EHLO, MAIL, RCPT, DATA, QUIT) keeping the messages,
// for the daily-summary subscription mails.
const mails = [];
function startSmtp() {
  return new Promise((resolve) => {
    const srv = createServer((sock) => {
      let buf = '';
      let data = null;
      let rcpt = [];
      sock.write('220 localhost e2e SMTP\r\n');
      sock.on('error', () => {});
      sock.on('data', (chunk) => {
        buf += chunk.toString('utf8');
        let i;
        while ((i = buf.indexOf('\r\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (data !== null) {
            if (line === '.') {
              mails.push({ rcpt, data });
              data = null;
              rcpt = [];
              sock.write('250 queued\r\n');
            } else data += line.replace(/^\./, '') + '\n';
            continue;
          }
          const verb = line.slice(0, 4).toUpperCase();
          if (verb === 'EHLO' || verb === 'HELO') sock.write('250-localhost\r\n250 8BITMIME\r\n');
          else if (verb === 'RCPT') { rcpt.push(line); sock.write('250 ok\r\n'); }
          else if (verb === 'DATA') { data = ''; sock.write('354 go on\r\n'); }
          else if (verb === 'QUIT') { sock.end('221 bye\r\n'); }
          else sock.write('250 ok\r\n');
        }
      });
    });
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}
let smtp;
const writeToken = 'e2e-write-token';

const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });

before(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  dataDir = mkdtempSync(join(tmpdir(), 'trib-e2e-'));
  smtp = await startSmtp();
  // The embedded default turns subscriptions on with an SMTP server and a write token.
  const env = { ...process.env, TRIBUTARY_SMTP_URL: `smtp://127.0.0.1:${smtp.address().port}`, TRIBUTARY_WRITE_TOKEN: writeToken };
  proc = spawn(bin, ['run', '--listen', `127.0.0.1:${port}`], { cwd: dataDir, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  await waitFor(async () => (await fetch(`${base}/readyz`)).ok, `tributary on ${base} (${stderr})`, 30000);
  profile = mkdtempSync(join(tmpdir(), 'trib-chromium-'));
  // A new empty profile (--user-data-dir, passed by playwright from `profile`).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage'],
  });
  page = browser.pages()[0] ?? await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.errors = errors;
  await page.goto(`${base}/`);
});

after(async () => {
  await browser?.close();
  proc?.kill('SIGTERM');
  await new Promise((r) => (proc && proc.exitCode === null ? proc.once('exit', r) : r()));
  smtp?.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(profile, { recursive: true, force: true });
});

test('the map shows the simulated sensors', async () => {
  const n = await waitFor(async () => Number(await page.getAttribute('#map', 'data-sensors', { timeout: 5000 })) || 0, 'sensors on the map');
  const api = await (await fetch(`${base}/api/sensors`)).json();
  assert.ok(n > 0 && n <= api.count, `map shows ${n} sensors, API has ${api.count}`);
  // Markers are drawn on the canvas: some pixels of it are not the background.
  const painted = await page.evaluate(() => {
    const c = document.querySelector('#map canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let k = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) k++;
    return k;
  });
  assert.ok(painted > 100, `canvas has ${painted} painted pixels`);
  const zones = await (await fetch(`${base}/api/zones`)).json();
  assert.equal(zones.type, 'FeatureCollection');
  assert.match(await page.textContent('#map-summary'), new RegExp(`· ${zones.features.length} zones`));
  if (zones.features.length) assert.equal(await page.getAttribute('#map', 'data-zones'), String(zones.features.length));
  assert.deepEqual(page.errors, []);
  await shot('map');
});

test('the trend chart updates after new data arrives', async () => {
  const first = await waitFor(async () => Number(await page.getAttribute('#trend-chart', 'data-last', { timeout: 5000 })) || 0, 'a first trend point');
  const later = await waitFor(async () => {
    const v = Number(await page.getAttribute('#trend-chart', 'data-last', { timeout: 5000 })) || 0;
    return v > first ? v : 0;
  }, 'a newer trend point');
  assert.ok(later > first);
  await shot('trend');
});

test('the ledger panel shows balanced counts', async () => {
  const text = await waitFor(async () => page.textContent('#ledger-balance', { timeout: 5000 }), 'the ledger panel');
  assert.match(text, /^balanced: input \d+ = \d+$/);
  const [, input, sum] = text.match(/input (\d+) = (\d+)/);
  assert.equal(input, sum);
  assert.ok(Number(input) > 0);
});

test('the comparison view shows two series', async () => {
  await waitFor(async () => (await page.getAttribute('#cmp-chart', 'data-series')) === '2', 'two compared series');
  const a = await page.inputValue('#cmp-a');
  const b = await page.inputValue('#cmp-b');
  assert.notEqual(a, b);
  assert.equal(await page.locator('#cmp-cards .card').count(), 2);
  await page.locator('#cmp-chart').scrollIntoViewIfNeeded();
  await shot('comparison');
});

test('the subscription form works', async () => {
  const answer = async () => waitFor(async () => {
    const t = await page.textContent('#sub-answer');
    return /HTTP \d{3}/.test(t) ? t : '';
  }, 'the server answer');
  await waitFor(async () => (await page.locator('#sub-zone option').count()) > 0, 'zones in the form');
  const [kind, zone] = (await page.inputValue('#sub-zone')).split(/:(.*)/s);
  // Fill and submit in one go (the panels redraw around the form while the run goes on).
  const submit = async (token) => {
    await page.fill('#sub-form input[name=email]', 'field@example.org');
    await page.fill('#sub-form input[name=write_token]', token);
    await page.locator('#sub-form button').click();
  };
  // A wrong write token is refused, and the page says so.
  await submit('wrong');
  assert.match(await answer(), /^Not subscribed \(HTTP 401\): .+/);
  await page.evaluate(() => { document.querySelector('#sub-answer').textContent = ''; });
  await submit(writeToken);
  assert.match(await answer(), /^Subscribed \(HTTP 201\): subscribed: a welcome email is on its way to field@example\.org/);
  await page.locator('#sub-form').scrollIntoViewIfNeeded();
  await shot('subscription');
  const auth = { Authorization: `Bearer ${writeToken}` };
  const list = await (await fetch(`${base}/api/subscriptions`, { headers: auth })).json();
  assert.equal(list.count, 1);
  assert.deepEqual([list.subscriptions[0].kind, list.subscriptions[0].zone], [kind, zone]);
  // The welcome mail arrives with current conditions and an unsubscribe link that works.
  const mail = await waitFor(async () => mails.find((m) => m.rcpt.some((r) => r.includes('field@example.org'))), 'the welcome mail');
  assert.match(mail.data, /Subject: Subscribed to the daily summary for /);
  assert.match(mail.data, /Current conditions/);
  const link = mail.data.match(/To unsubscribe, open (\S+)/)[1];
  assert.ok(link.startsWith(`${base}/api/unsubscribe?token=`), link);
  const res = await fetch(link);
  assert.equal(res.status, 200);
  assert.match(await res.text(), /Unsubscribed/);
  assert.equal((await fetch(link)).status, 404);
  const remaining = await (await fetch(`${base}/api/subscriptions`, { headers: auth })).json();
  assert.equal(remaining.count, 0);
});

test('an alert appears after an injected exceedance', async (t) => {
  const res = await fetch(`${base}/api/alerts?state=all`);
  if (res.status === 404) {
    assert.match(await page.textContent('#alerts'), /not configured/);
    t.skip('/api/alerts is absent on this build: the panel shows "not configured"');
    return;
  }
  const text = await waitFor(async () => {
    const n = await page.locator('#alerts .alert').count();
    return n > 0 ? page.textContent('#alerts') : '';
  }, 'an alert in the feed', 120000);
  assert.ok(text.length > 0);
  await shot('alerts');
});
