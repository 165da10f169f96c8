// End-to-end: `tributary run` on the embedded default, the dashboard in Debian's
// chromium (headless) through playwright-core. Screenshots go to $E2E_ARTIFACTS.
// The run is the embedded default (`tributary default-config`) plus one MQTT source on a
// local Mosquitto, through which the test injects an exceedance. A second run with
// 2,000 simulated sensors checks that the page stays interactive.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { manySensorsConfig } from './many_sensors_config.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const bin = resolve(process.env.TRIBUTARY_BIN ?? join(here, '../../build/ci/tributary'));
const artifacts = process.env.E2E_ARTIFACTS ?? join(here, '../../build/ci/e2e-artifacts');
mkdirSync(artifacts, { recursive: true });

let proc, browser, page, base, dataDir, profile, broker, brokerPort;
const MOSQUITTO = '/usr/sbin/mosquitto';
const MOSQUITTO_PUB = '/usr/bin/mosquitto_pub';

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
let procLog = '';  // tributary's stderr, kept in the artifacts and its warnings shown
const writeToken = 'e2e-write-token';

const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage'];

before(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  dataDir = mkdtempSync(join(tmpdir(), 'trib-e2e-'));
  smtp = await startSmtp();
  // The embedded default turns subscriptions on with an SMTP server and a write token.
  const env = { ...process.env, TRIBUTARY_SMTP_URL: `smtp://127.0.0.1:${smtp.address().port}`, TRIBUTARY_WRITE_TOKEN: writeToken };
  // The embedded default, plus an MQTT source for injected readings.
  brokerPort = await freePort();
  writeFileSync(join(dataDir, 'mosquitto.conf'), `listener ${brokerPort} 127.0.0.1\nallow_anonymous true\n`
    + `user ${userInfo().username}\nlog_dest stderr\n`);
  broker = spawn(MOSQUITTO, ['-c', join(dataDir, 'mosquitto.conf')], { stdio: 'ignore' });
  const defaults = execFileSync(bin, ['default-config'], { encoding: 'utf8' });
  assert.match(defaults, /^sources:\n/m);
  // The simulator's clock runs ahead of the wall clock (speed 300) and its arrival times are
  // simulated; the injected reading carries simulated time but arrives by the wall clock,
  // so the future-timestamp check is widened for it (and the simulator's two devices with
  // clocks minutes ahead, which that check would otherwise catch, are turned off).
  assert.match(defaults, /^processing:\n/m);
  assert.match(defaults, /^    type: simulator\n/m);
  const config = defaults.replace(/^processing:\n/m, 'processing:\n  max_future: 30d\n')
    .replace(/^    type: simulator\n/m, '    type: simulator\n    clock_ahead_devices: 0\n').replace(/^sources:\n/m, `sources:
  - name: inject
    type: mqtt
    broker: mqtt://127.0.0.1:${brokerPort}
    client_id: tributary-e2e
    clean_session: true
    topics: [e2e/+/up]
    qos: 1
`);
  writeFileSync(join(dataDir, 'e2e.yaml'), config);
  proc = spawn(bin, ['run', join(dataDir, 'e2e.yaml'), '--listen', `127.0.0.1:${port}`], { cwd: dataDir, env, stdio: ['ignore', 'ignore', 'pipe'] });
  proc.stderr.on('data', (d) => { procLog += d; });
  await waitFor(async () => (await fetch(`${base}/readyz`)).ok, `tributary on ${base} (${procLog})`, 30000);
  profile = mkdtempSync(join(tmpdir(), 'trib-chromium-'));
  // A new empty profile (--user-data-dir, passed by playwright from `profile`).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: CHROMIUM_ARGS,
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
  writeFileSync(join(artifacts, 'tributary.log'), procLog);
  const warnings = procLog.split('\n').filter((l) => /^\S+ (warning|error|critical) /.test(l));
  if (warnings.length > 0) console.error(`tributary warned:\n${warnings.slice(-40).join('\n')}`);
  smtp?.close();
  broker?.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('the map shows the simulated sensors', async () => {
  const n = await waitFor(async () => Number(await page.getAttribute('#map', 'data-sensors', { timeout: 5000 })) || 0, 'sensors on the map');
  const api = await (await fetch(`${base}/api/sensors`)).json();
  assert.ok(n > 0 && n <= api.count, `map shows ${n} sensors, API has ${api.count}`);
  // Markers are drawn on the sensor canvas: some pixels of it are not the background.
  const painted = await page.evaluate(() => {
    const c = document.querySelector('#map canvas.sensor-canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let k = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) k++;
    return k;
  });
  assert.ok(painted > 100, `canvas has ${painted} painted pixels`);
  const zones = await (await fetch(`${base}/api/zones`)).json();
  assert.equal(zones.type, 'FeatureCollection');
  await waitFor(async () => new RegExp(`· ${zones.features.length} zones`).test(await page.textContent('#map-summary')), 'the zone count in the map summary');
  if (zones.features.length) assert.equal(await page.getAttribute('#map', 'data-zones'), String(zones.features.length));
  assert.deepEqual(page.errors, []);
  await shot('map');
});

test('the map draws the zone polygons coloured by their latest window', async () => {
  const zones = await (await fetch(`${base}/api/zones`)).json();
  const polygons = zones.features.filter((f) => /Polygon/.test(f.geometry?.type ?? ''));
  assert.ok(polygons.length > 1, `the embedded default has district polygons (got ${polygons.length})`);
  const drawn = await waitFor(async () => {
    const n = await page.locator('#map path.zone').count();
    return n === polygons.length ? n : 0;
  }, `${polygons.length} zone polygons on the map`);
  assert.equal(drawn, polygons.length);
  // Every path is a polygon with an outline (many vertices), and tagged with its zone.
  const paths = await page.$$eval('#map path.zone', (els) => els.map((e) => ({ zone: e.dataset.zone, d: e.getAttribute('d'), fill: e.getAttribute('fill') })));
  const ids = new Set(polygons.map((f) => f.properties.zone));
  for (const p of paths) {
    assert.ok(ids.has(p.zone), `path for unknown zone ${p.zone}`);
    assert.ok((p.d.match(/L/g) ?? []).length >= 3, `zone ${p.zone} is drawn as a polygon`);
  }
  // Once a district window closed, its polygon carries the AQI category of its value.
  const coloured = await waitFor(async () => {
    const cats = await page.$$eval('#map path.zone', (els) => els.map((e) => e.dataset.category).filter(Boolean));
    return cats.length ? cats : null;
  }, 'a zone coloured by its AQI category');
  assert.ok(coloured.every((c) => ['Good', 'Moderate', 'Unhealthy for sensitive groups', 'Unhealthy', 'Very unhealthy', 'Hazardous'].includes(c)));
  const api = await (await fetch(`${base}/api/zones`)).json();
  assert.ok(api.features.some((f) => f.properties.value != null && f.properties.window === 'district_5m'));
  await shot('zones');
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

test('the comparison view shows two zones side by side', async () => {
  await waitFor(async () => (await page.getAttribute('#cmp-chart', 'data-series')) === '2', 'two compared series');
  const a = await page.inputValue('#cmp-a');
  const b = await page.inputValue('#cmp-b');
  assert.notEqual(a, b);
  assert.match(a, /^zone:/);
  assert.match(b, /^zone:/);
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

test('an alert appears after an injected exceedance', async () => {
  // A reading far above the PM2.5 rule's level, for a device of its own.
  const device = 'e2e-spike';
  assert.equal(await page.locator(`#alerts .alert[data-key="${device}"]`).count(), 0);
  // Simulated time runs 300 times the wall clock, so a reading stamped with the current
  // watermark would be late by the time it is processed: stamp it 20 simulated minutes
  // (4 s of wall clock) ahead.
  const simNow = async () => {
    const health = await (await fetch(`${base}/api/health`)).json();
    return Date.parse(health.watermark) + 20 * 60 * 1000;
  };
  const text = await waitFor(async () => {
    const el = page.locator(`#alerts .alert[data-key="${device}"]`);
    if ((await el.count()) > 0) return el.first().textContent();
    const now = await simNow();
    assert.ok(Number.isFinite(now));
    const payload = JSON.stringify({ device_id: device, sensor_ts: now, lat: 52.52, lon: 13.405, pm25: 480 });
    execFileSync(MOSQUITTO_PUB, ['-h', '127.0.0.1', '-p', String(brokerPort), '-q', '1', '-t', `e2e/${device}/up`, '-m', payload]);
    await new Promise((r) => setTimeout(r, 1500));
    if ((await el.count()) > 0) return el.first().textContent();
    // Not yet: say where the reading went, for the failure message.
    const api = (await (await fetch(`${base}/api/alerts?state=all`)).json()).alerts.filter((a) => a.key === device).length;
    const q = (await (await fetch(`${base}/api/quarantine?limit=1000`)).json()).records.filter((r) => r.device === device).map((r) => r.reason);
    const ledger = await (await fetch(`${base}/api/ledger`)).json();
    throw new Error(`sim time ${new Date(now).toISOString()}: ${api} alerts in the API, quarantined ${JSON.stringify(q)}, late ${ledger.late}`);
  }, 'the injected exceedance in the alert feed', 60000);
  assert.match(text, /pm25_high/);
  assert.match(text, /480/);
  await page.locator('#alerts').scrollIntoViewIfNeeded();
  await shot('alerts');
});

test('a stuck sensor gets a QC badge in the conditions panel', async () => {
  // Twelve identical PM2.5 values a minute apart from a device of its own: from the 10th
  // on, the QC stage flags FLATLINE; the summary events carry it to the page.
  const device = 'e2e-stuck';
  const health = await (await fetch(`${base}/api/health`)).json();
  const start = Date.parse(health.watermark) + 20 * 60 * 1000;
  assert.ok(Number.isFinite(start));
  for (let i = 0; i < 12; i++) {
    const payload = JSON.stringify({ device_id: device, sensor_ts: start + i * 60000, lat: 52.53, lon: 13.36, pm25: 17.5 });
    execFileSync(MOSQUITTO_PUB, ['-h', '127.0.0.1', '-p', String(brokerPort), '-q', '1', '-t', `e2e/${device}/up`, '-m', payload]);
  }
  // The API shows the flag and the score first.
  await waitFor(async () => {
    const s = (await (await fetch(`${base}/api/sensors`)).json()).sensors?.find((x) => x.device === device);
    const pm = s?.metrics?.pm25;
    return pm && pm.qc_flags.includes('FLATLINE') && pm.qc_score >= 1 && s.qc_flagged >= 3;
  }, 'FLATLINE on the stuck sensor in /api/sensors', 30000);
  await waitFor(async () => (await page.$$eval('#focus option', (els) => els.map((o) => o.value))).includes(`device:${device}`), 'the stuck sensor in the focus list', 30000);
  await page.selectOption('#focus', `device:${device}`);
  const badge = page.locator('#conditions .qc-badge');
  await waitFor(async () => (await badge.count()) > 0, 'a QC badge in the conditions panel', 30000);
  assert.match(await badge.first().getAttribute('data-flags'), /FLATLINE/);
  assert.match(await badge.first().textContent(), /^QC .*flatline/);
  await page.locator('#conditions').scrollIntoViewIfNeeded();
  await shot('qc-badge');
});

test('the health panel shows the pipeline figures and breaker states', async () => {
  const text = await waitFor(async () => {
    const t = await page.textContent('#health');
    return /events\/s/.test(t) ? t : '';
  }, 'the health panel');
  for (const k of ['watermark lag', 'late fraction', 'quarantine rate', 'sink breakers']) assert.ok(text.includes(k), k);
  const legend = await page.textContent('#legend');
  assert.match(legend, /IDW surface pm25/);
  assert.match(legend, /ok.*stale.*quarantining/);
  assert.match(await page.textContent('#conditions'), /AQI|No particulate/);
});

test('the page stays interactive with 2,000 sensors', async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'trib-e2e-2000-'));
  writeFileSync(join(dir, 'p.yaml'), manySensorsConfig({ dir, port, devices: 2000 }));
  const big = spawn(bin, ['run', join(dir, 'p.yaml'), '--quiet'], { cwd: dir, stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  const p2 = await browser.newPage();
  const errors = [];
  p2.on('pageerror', (e) => errors.push(e.message));
  let crashed = false;
  p2.on('crash', () => { crashed = true; });
  try {
    await waitFor(async () => (await fetch(`${url}/readyz`)).ok, 'the 2,000-sensor run', 30000);
    await p2.goto(`${url}/`);
    const n = await waitFor(async () => {
      const v = Number(await p2.getAttribute('#map', 'data-sensors', { timeout: 5000 })) || 0;
      return v >= 1900 ? v : 0;
    }, '2,000 sensors on the map', 120000);
    assert.ok(n >= 1900);
    await p2.waitForTimeout(3000); // live updates flowing
    // A click is answered: choose another sensor and see the trend follow within the
    // test's patience (Playwright's own timeouts), while the stream keeps arriving.
    const options = await waitFor(async () => {
      const os = await p2.$$eval('#focus option', (els) => els.map((o) => o.value).filter((v) => v.startsWith('device:')));
      return os.length >= 1900 ? os : null;
    }, '2,000 sensors to choose from', 30000);
    const target = options[Math.floor(options.length / 2)];
    await p2.selectOption('#focus', target, { timeout: 10000 });
    await p2.waitForFunction((g) => document.querySelector('#trend-chart')?.dataset.focus === g, target, { timeout: 15000 });
    // The map answers a click on a sensor too.
    const hit = await p2.evaluate(() => {
      const c = document.querySelector('#map canvas.sensor-canvas');
      const r = c.getBoundingClientRect();
      const ctx = c.getContext('2d');
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      const ratio = c.width / r.width;
      for (let y = 4; y < c.height - 4; y += 3) for (let x = 4; x < c.width - 4; x += 3) {
        if (d[(y * c.width + x) * 4 + 3] === 255) return { x: r.left + x / ratio, y: r.top + y / ratio };
      }
      return null;
    });
    assert.ok(hit, 'a painted sensor on the canvas');
    const before = await p2.inputValue('#focus');
    await p2.mouse.click(hit.x, hit.y);
    await p2.waitForFunction((b) => document.querySelector('#focus').value !== b, before, { timeout: 15000 });
    assert.match(await p2.inputValue('#focus'), /^device:/);
    // Live: summaries keep arriving and are painted.
    const flushes = await p2.evaluate(() => window.__tributaryStats.flushes);
    await p2.waitForFunction((f) => window.__tributaryStats.flushes > f + 2, flushes, { timeout: 15000 });
    assert.equal(crashed, false);
    assert.deepEqual(errors, []);
    await p2.screenshot({ path: join(artifacts, 'sensors-2000.png') });
  } finally {
    await p2.close();
    big.kill('SIGTERM');
    await new Promise((r) => (big.exitCode === null ? big.once('exit', r) : r()));
    rmSync(dir, { recursive: true, force: true });
  }
});
