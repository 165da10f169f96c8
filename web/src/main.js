import L from 'leaflet';
import 'leaflet/dist/leaflet.css';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { aqiOf, categoryOf, rampColor, CATEGORIES } from './aqi.js';
import { getJson, getText, parsePrometheus, NotConfigured } from './api.js';
import { SensorCanvasLayer } from './sensor_layer.js';

const REFRESH_MS = 5000; // polling fallback and slow-changing panels
const SENSORS_LIVE_MS = 30000; // with the live stream, /api/sensors is re-read this rarely
// The live stream the page follows: coalesced summaries instead of every reading, every
// window that is not per device, and the per-device windows of the selected devices only.
const EVENT_TYPES = 'window,alert,quarantine,summary';
const EVENT_GROUP_BYS = 'zone,h3,all';
const STATUS_COLORS = { ok: '#1a9850', stale: '#9e9e9e', quarantining: '#f46d43' };
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (v, d = 1) => (v == null || !Number.isFinite(v) ? '–' : Number(v).toFixed(d));

const state = {
  metric: 'pm25',
  sensors: new Map(), // device → {device, lat, lon, status, last_event_time, last_arrival_time, values}
  sensorsReadAt: 0,
  zones: null, // FeatureCollection or null when not configured
  windowByGroupBy: {}, // group_by → window name, learned from results
  series: new Map(), // "group|metric" → Map(startSec → mean)
  alerts: [],
  quarantine: [],
  sseOpen: false,
  lastEventId: null,
};

// ---------------------------------------------------------------- frame scheduling
// Live events only record what changed; the DOM, the map and the charts are updated once
// per animation frame, whatever the number of events that arrived in between.
const dirty = new Set();
let frame = 0;
let pendingSince = 0; // performance.now() of the oldest change not yet painted
const stats = { flushes: 0, events: 0, latencies: [], summaryLag: [] }; // read by the benchmark
window.__tributaryStats = stats;

function invalidate(what) {
  dirty.add(what);
  if (!pendingSince) pendingSince = performance.now();
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = 0;
  const todo = new Set(dirty);
  dirty.clear();
  if (todo.has('sensors')) drawSensors();
  if (todo.has('zones')) drawZones();
  if (todo.has('charts')) { redrawTrend(); redrawCompare(); }
  if (todo.has('conditions') || todo.has('sensors') || todo.has('charts')) renderConditions();
  if (todo.has('quarantine')) renderQuarantine();
  if (todo.has('alerts')) renderAlerts();
  if (todo.has('summary')) renderSummary();
  stats.flushes++;
  if (pendingSince) {
    stats.latencies.push(performance.now() - pendingSince);
    if (stats.latencies.length > 5000) stats.latencies.splice(0, 1000);
    pendingSince = 0;
  }
}

// ---------------------------------------------------------------- map
const map = L.map('map', { zoomSnap: 0.25, attributionControl: false });
map.setView([0, 0], 2);
const zoneRenderer = L.svg({ padding: 0.2 });
const zoneLayer = L.layerGroup().addTo(map);
let surfaceLayer = null;
let surfaceKey = '';
let fitted = false;

function sensorLabel(device, s) {
  const v = s.values?.[state.metric];
  const qc = Object.keys(s.qc ?? {}).length ? ' · QC flagged' : '';
  return `${device} · ${s.status}${v != null ? ` · ${state.metric} ${fmt(v)}` : ''}${qc}`;
}

// QC of the latest value per metric, {metric: {score, flags}} for the flagged ones only:
// a `summary` event carries it as `qc`, /api/sensors as metrics[m].qc_score/qc_flags.
function qcOf(s) {
  if (s.qc) return s.qc;
  if (!s.metrics) return undefined;
  return Object.fromEntries(Object.entries(s.metrics)
    .filter(([, v]) => (v.qc_score ?? 0) >= 1)
    .map(([m, v]) => [m, { score: v.qc_score, flags: v.qc_flags ?? [] }]));
}

const sensorLayer = new SensorCanvasLayer({
  colors: STATUS_COLORS,
  radius: 4,
  label: sensorLabel,
  onClick: (device) => setFocus(`device:${device}`),
  onDraw: (n) => { $('map').dataset.drawn = String(n); },
}).addTo(map);

// Merge one sensor (from /api/sensors or a `summary` event) into the state and the layer.
function putSensor(s) {
  const values = s.values ?? Object.fromEntries(Object.entries(s.metrics ?? {}).map(([m, v]) => [m, v.value]));
  const prev = state.sensors.get(s.device);
  const merged = { ...prev, ...s, values: { ...prev?.values, ...values } };
  // Each update describes every metric's latest value, so its QC replaces the previous.
  const qc = qcOf(s);
  if (qc !== undefined) merged.qc = qc;
  delete merged.metrics;
  state.sensors.set(s.device, merged);
  if (merged.lat != null && merged.lon != null) sensorLayer.set(s.device, merged);
}

function drawSensors() {
  const counts = { ok: 0, stale: 0, quarantining: 0 };
  for (const s of state.sensors.values()) counts[s.status] = (counts[s.status] || 0) + 1;
  sensorLayer.redraw();
  const n = sensorLayer.size();
  $('map-summary').textContent = `${n} sensors · ${counts.ok} ok · ${counts.stale} stale · ${counts.quarantining} quarantining`
    + (state.zones ? ` · ${state.zones.features.length} zones` : ' · zones not configured');
  $('map').dataset.sensors = String(n);
  for (const k of Object.keys(counts)) $('map').dataset[k] = String(counts[k]);
  if (!fitted && n) {
    const pts = sensorLayer.bounds();
    if (state.zones) {
      const zb = L.geoJSON(state.zones).getBounds();
      if (zb.isValid()) { pts.push([zb.getSouth(), zb.getWest()], [zb.getNorth(), zb.getEast()]); }
    }
    map.fitBounds(pts, { padding: [20, 20] });
    fitted = true;
  }
}

// A zone's colour: the AQI category of its latest window (the headline metric, PM2.5
// when the zone windows carry it); grey without a value or without an AQI scale.
function zoneCategory(props) {
  const aqi = props.aqi ?? aqiOf(props.metric ?? state.metric, props.value);
  return categoryOf(aqi);
}

function zoneName(f) {
  return f.properties?.zone ?? f.properties?.name ?? f.id;
}

let zoneGeo = null; // the L.geoJSON layer of the current zones
let zoneKey = '';

function zoneStyle(f) {
  const cat = zoneCategory(f.properties || {});
  return { color: '#333', weight: 1.5, fillColor: cat ? cat.color : '#bdbdbd', fillOpacity: cat ? 0.35 : 0.15 };
}

function zoneTooltip(f) {
  const p = f.properties || {};
  const cat = zoneCategory(p);
  return `zone ${esc(p.name ?? zoneName(f))}${p.value != null ? ` · ${esc(p.metric ?? '')} ${fmt(p.value)}` : ' · no window yet'}${cat ? ` · ${esc(cat.name)}` : ''}`;
}

function tagZone(f, layer) {
  const el = layer.getElement?.();
  if (!el) return;
  const cat = zoneCategory(f.properties || {});
  el.dataset.zone = zoneName(f);
  el.dataset.category = cat ? cat.name : '';
  el.dataset.value = f.properties?.value ?? '';
}

function drawZones() {
  if (!state.zones) { zoneLayer.clearLayers(); zoneGeo = null; zoneKey = ''; return; }
  const key = state.zones.features.map((f) => f.id).join('\n');
  if (zoneGeo && key === zoneKey) {
    // Same zones: restyle in place (new values), no new DOM.
    const byId = new Map(state.zones.features.map((f) => [String(f.id), f]));
    zoneGeo.eachLayer((layer) => {
      const f = byId.get(String(layer.feature.id));
      if (!f) return;
      layer.feature = f;
      if (layer.setStyle) layer.setStyle(zoneStyle(f));
      layer.setTooltipContent?.(zoneTooltip(f));
      tagZone(f, layer);
    });
  } else {
    zoneLayer.clearLayers();
    zoneKey = key;
    zoneGeo = L.geoJSON(state.zones, {
      renderer: zoneRenderer,
      className: 'zone',
      style: zoneStyle,
      pointToLayer: (f, ll) => L.circleMarker(ll, { renderer: zoneRenderer, className: 'zone', radius: 14, weight: 2 }),
      onEachFeature: (f, layer) => {
        layer.bindTooltip(zoneTooltip(f), { sticky: true });
        layer.on('click', () => setFocus(`zone:${zoneName(f)}`));
        layer.on('add', () => tagZone(f, layer));
      },
    }).addTo(zoneLayer);
  }
  const polygons = state.zones.features.filter((f) => /Polygon/.test(f.geometry?.type ?? '')).length;
  $('map').dataset.zones = String(state.zones.features.length);
  $('map').dataset.polygons = String(polygons);
}

// The surface format is read tolerantly: {bbox|bounds: [minLon, minLat, maxLon, maxLat],
// width|cols, height|rows, values|grid (row-major from the north-west, flat or nested)}.
function drawSurface(doc) {
  const key = JSON.stringify([doc.name, doc.window_end ?? doc.end ?? doc.time, doc.revision, doc.bbox ?? doc.bounds, (doc.values ?? doc.grid ?? []).length]);
  if (surfaceLayer && key === surfaceKey) return;
  surfaceKey = key;
  if (surfaceLayer) { map.removeLayer(surfaceLayer); surfaceLayer = null; }
  const bbox = doc.bbox ?? doc.bounds;
  let values = doc.values ?? doc.grid ?? doc.cells;
  if (Array.isArray(values) && Array.isArray(values[0])) values = values.flat();
  const w = doc.width ?? doc.cols ?? doc.nx;
  const h = doc.height ?? doc.rows ?? doc.ny;
  if (!Array.isArray(bbox) || !Array.isArray(values) || !w || !h || values.length < w * h) {
    $('legend').textContent = 'Surface: format not recognised';
    return;
  }
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (v != null && Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const canvas = document.createElement('canvas');
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext('2d');
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = values[y * w + x];
      if (v == null || !Number.isFinite(v)) continue;
      ctx.fillStyle = rampColor(hi > lo ? (v - lo) / (hi - lo) : 0.5);
      ctx.fillRect(x, y, 1, 1);
    }
  }
  surfaceLayer = L.imageOverlay(canvas.toDataURL(), [[bbox[1], bbox[0]], [bbox[3], bbox[2]]], { opacity: 0.5 }).addTo(map);
  surfaceLayer.bringToBack();
  const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => `${rampColor(t)} ${t * 100}%`).join(',');
  state.surfaceLegend = `<span id="surface-legend">IDW surface ${esc(doc.metric ?? '')}: ${fmt(lo)} <span class="ramp" style="background:linear-gradient(to right,${stops})"></span> ${fmt(hi)}</span>`;
  state.surfaceNote = null;
}

function drawLegend() {
  const status = Object.entries(STATUS_COLORS).map(([k, c]) => `<span class="dot" style="background:${c}"></span>${k}`).join(' ');
  const aqi = CATEGORIES.map((c) => `<span class="dot" style="background:${c.color}"></span>${c.name}`).join(' ');
  const surface = surfaceLayer ? state.surfaceLegend : `<span class="muted">${esc(state.surfaceNote ?? '')}</span>`;
  $('legend').innerHTML = `Sensors: ${status}<br>Zones (AQI of the latest window): ${aqi}<br>${surface}`;
}

// ---------------------------------------------------------------- focus & charts
function groups() {
  const out = [];
  // Zones of the first layer (the one windows group by; others have ids "layer:zone").
  if (state.zones) {
    for (const f of state.zones.features) {
      if (f.properties?.zone != null && String(f.id) !== String(f.properties.zone)) continue;
      out.push(`zone:${zoneName(f)}`);
    }
  }
  for (const d of [...state.sensors.keys()].sort()) out.push(`device:${d}`);
  return out;
}

function fillSelect(el, options, keep) {
  const current = el.value || keep;
  const key = options.join('\n');
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  el.innerHTML = options.map((o) => `<option value="${esc(o)}">${esc(o.replace(':', ' '))}</option>`).join('');
  if (options.includes(current)) el.value = current;
}

function setFocus(g) {
  if (![...$('focus').options].some((o) => o.value === g)) return;
  $('focus').value = g;
  connectEvents();
  onFocusChanged();
}

function windowFor(kind) {
  return state.windowByGroupBy[kind] ?? '';
}

async function loadSeries(g) {
  const [kind, name] = splitGroup(g);
  const q = new URLSearchParams({ group: name, metric: state.metric, limit: '720' });
  const w = windowFor(kind);
  if (w) q.set('window', w);
  const doc = await getJson(`api/windows?${q}`);
  const m = new Map();
  for (const r of doc.windows.slice().reverse()) {
    if (r.group_by !== kind && w) continue;
    m.set(Date.parse(r.start) / 1000, r.mean);
  }
  state.series.set(`${name}|${state.metric}`, m);
  return m;
}

function splitGroup(g) {
  const i = g.indexOf(':');
  return [g.slice(0, i), g.slice(i + 1)];
}

function seriesData(g) {
  const m = state.series.get(`${splitGroup(g)[1]}|${state.metric}`) ?? new Map();
  const xs = [...m.keys()].sort((a, b) => a - b);
  return [xs, xs.map((x) => m.get(x) ?? null)];
}

function makeChart(el, labels, colors) {
  el.innerHTML = '';
  const width = Math.max(300, el.clientWidth || 600);
  return new uPlot({
    width, height: 220,
    scales: { x: { time: true } },
    series: [{}, ...labels.map((l, i) => ({ label: l, stroke: colors[i], width: 2, spanGaps: true, dash: l.startsWith('forecast') ? [6, 4] : undefined }))],
    axes: [{}, { label: state.metric }],
  }, [[], ...labels.map(() => [])], el);
}

let trendChart = null;
let cmpChart = null;
let forecast = null; // [xs, ys] for the focus, or null

async function onFocusChanged() {
  const g = $('focus').value;
  if (!g) return;
  $('trend-title').textContent = `${g.replace(':', ' ')} · ${state.metric}`;
  await loadSeries(g).catch(() => {});
  forecast = await loadForecast(g);
  trendChart = makeChart($('trend-chart'), [state.metric, `forecast ${state.metric}`], ['#2166ac', '#b2182b']);
  redrawTrend();
  renderConditions();
  $('trend-chart').dataset.focus = g;
}

async function loadForecast(g) {
  const [kind, name] = splitGroup(g);
  const w = windowFor(kind);
  if (!w) {
    $('forecast-note').textContent = 'forecast: no window series for this selection';
    return null;
  }
  try {
    // The API forecasts the window series: the next window's mean and the one a day ahead.
    const doc = await getJson(`api/forecast?${new URLSearchParams({ window: w, group: name, metric: state.metric })}`);
    const pts = [[doc.next_time, doc.next]]
      .map(([t, v]) => [Date.parse(t) / 1000, v])
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    const fmt = (v) => (Number.isFinite(v) ? v.toFixed(1) : '--');
    $('forecast-note').textContent = pts.length
      ? `forecast (${doc.method}): next ${fmt(doc.next)}, in a day ${fmt(doc.next_day)}`
      : 'forecast: no points for this selection';
    return pts.length ? [pts.map((p) => p[0]), pts.map((p) => p[1])] : null;
  } catch (e) {
    $('forecast-note').textContent = e instanceof NotConfigured ? 'forecast: not configured on this server' : `forecast: ${e.message}`;
    return null;
  }
}

function merge(xsList, ysList) {
  const xs = [...new Set(xsList.flat())].sort((a, b) => a - b);
  const ys = ysList.map((ys, i) => {
    const m = new Map(xsList[i].map((x, k) => [x, ys[k]]));
    return xs.map((x) => m.get(x) ?? null);
  });
  return [xs, ...ys];
}

function redrawTrend() {
  if (!trendChart) return;
  const g = $('focus').value;
  const [xs, ys] = seriesData(g);
  const data = forecast ? merge([xs, forecast[0]], [ys, forecast[1]]) : [xs, ys, xs.map(() => null)];
  trendChart.setData(data);
  $('trend-chart').dataset.points = String(xs.length);
  $('trend-chart').dataset.last = String(xs.length ? xs[xs.length - 1] : 0);
}

async function onCompareChanged() {
  const a = $('cmp-a').value, b = $('cmp-b').value;
  if (!a || !b) return;
  await Promise.all([loadSeries(a), loadSeries(b)]).catch(() => {});
  cmpChart = makeChart($('cmp-chart'), [a.replace(':', ' '), b.replace(':', ' ')], ['#1b9e77', '#d95f02']);
  redrawCompare();
}

function redrawCompare() {
  if (!cmpChart) return;
  const a = $('cmp-a').value, b = $('cmp-b').value;
  const [xa, ya] = seriesData(a), [xb, yb] = seriesData(b);
  cmpChart.setData(merge([xa, xb], [ya, yb]));
  $('cmp-chart').dataset.series = String([ya, yb].filter((y) => y.length).length);
  $('cmp-cards').innerHTML = [[a, ya], [b, yb]].map(([g, ys]) => {
    const v = ys.length ? ys[ys.length - 1] : null;
    const cat = categoryOf(aqiOf(state.metric, v));
    return `<div class="card" style="border-color:${cat?.color ?? '#ccc'}"><b>${esc(g.replace(':', ' '))}</b><br>${state.metric} ${fmt(v)}${cat ? `<br>${esc(cat.name)}` : ''}</div>`;
  }).join('');
}

function renderConditions() {
  const g = $('focus').value;
  if (!g) { $('conditions').textContent = 'no sensors yet'; return; }
  const [kind, name] = splitGroup(g);
  let rows = [];
  if (kind === 'device') {
    const s = state.sensors.get(name);
    if (s) rows = Object.entries(s.values ?? {}).map(([m, v]) => [m, v, '', s.qc?.[m]]);
    if (s) rows.unshift(['status', s.status, s.last_event_time]);
  } else {
    const [xs, ys] = seriesData(g);
    if (xs.length) rows.push([state.metric, ys[ys.length - 1], new Date(xs[xs.length - 1] * 1000).toISOString()]);
  }
  const pm = rows.find((r) => r[0] === 'pm25') ?? rows.find((r) => r[0] === state.metric);
  const aqi = pm ? aqiOf(pm[0], pm[1]) : null;
  const cat = categoryOf(aqi);
  const advice = cat
    ? `<div class="advice" style="border-color:${cat.color}"><b>AQI ${aqi} · ${esc(cat.name)}</b><br>${esc(cat.advice)}</div>`
    : '<div class="advice">No particulate reading here: no air-quality advice.</div>';
  // A QC badge beside a value some check flagged: its flags, score in the tooltip.
  const badge = (qc) => (qc
    ? ` <span class="qc-badge" data-flags="${esc(qc.flags.join('|'))}" title="QC score ${fmt(qc.score, 2)}">QC ${esc(qc.flags.join(' ').toLowerCase().replaceAll('_', ' '))}</span>`
    : '');
  $('conditions').innerHTML = advice + '<table>' + rows.map(([m, v, t, qc]) =>
    `<tr><td>${esc(m)}</td><td>${typeof v === 'number' ? fmt(v, 2) : esc(v)}${badge(qc)}</td><td class="muted">${esc(t ?? '')}</td></tr>`).join('') + '</table>';
}

// ---------------------------------------------------------------- health, ledger, feeds
let lastSummary = { late: 0, readings: 0 };

async function refreshHealth() {
  const [health, ledger, metricsText] = await Promise.all([
    getJson('api/health').catch((e) => ({ error: e.message })),
    getJson('api/ledger').catch((e) => ({ error: e.message })),
    getText('metrics').catch(() => ''),
  ]);
  const breakers = parsePrometheus(metricsText).filter((m) => m.name === 'tributary_sink_breaker_state');
  const input = ledger.input || 0;
  const pct = (n) => (input ? `${((100 * n) / input).toFixed(2)} %` : '–');
  $('health').innerHTML = health.error ? esc(health.error) : `<table>
    <tr><td>pipeline</td><td>${health.running ? 'running' : 'stopped'}</td></tr>
    <tr><td>events/s</td><td>${fmt(health.events_per_second, 0)}</td></tr>
    <tr><td>watermark lag</td><td>${fmt(health.watermark_lag_seconds, 0)} s</td></tr>
    <tr><td>late fraction</td><td>${pct(ledger.late || 0)}</td></tr>
    <tr><td>quarantine rate</td><td>${pct(ledger.quarantined || 0)}</td></tr>
    <tr><td>queues (raw / sink)</td><td>${health.queues?.raw ?? '–'} / ${health.queues?.sink ?? '–'}</td></tr>
    <tr><td>sink breakers</td><td>${breakers.length ? breakers.map((b) => `${esc(b.labels.sink ?? b.labels.sink_table ?? '')}=${b.value === 0 ? 'closed' : b.value === 1 ? 'open' : 'half-open'}`).join(', ') : 'not reported'}</td></tr>
  </table>`;
  if (!ledger.error) {
    const sum = ledger.accepted + ledger.quarantined + ledger.late + ledger.duplicate + ledger.in_flight;
    $('ledger').innerHTML = `<table id="ledger-table">
      ${['input', 'accepted', 'quarantined', 'late', 'duplicate', 'in_flight'].map((k) => `<tr><td>${k}</td><td data-k="${k}">${ledger[k]}</td></tr>`).join('')}
    </table><div class="${ledger.balanced ? 'ok' : 'bad'}" id="ledger-balance">${ledger.balanced ? 'balanced' : 'NOT balanced'}: input ${input} = ${sum}</div>`;
  } else {
    $('ledger').textContent = ledger.error;
  }
}

function renderAlerts() {
  $('alerts').innerHTML = state.alertsNote
    ? `<div class="muted">${esc(state.alertsNote)}</div>`
    : state.alerts.length
      ? state.alerts.slice(0, 50).map((a) => `<div class="item alert ${esc(a.state ?? '')}" data-key="${esc(a.key ?? '')}"><b>${esc(a.rule ?? a.name ?? 'alert')}</b> ${esc(a.severity ?? '')} ${esc(a.state ?? '')} · ${esc(a.key ?? a.zone ?? a.group ?? a.device ?? '')} ${esc(a.metric ?? '')} ${a.value != null ? fmt(a.value) : ''}<br><span class="muted">${esc(a.time ?? a.fired_at ?? a.start ?? '')} ${esc(a.message ?? '')}</span></div>`).join('')
      : '<div class="muted">no alerts</div>';
}

function renderQuarantine() {
  $('quarantine').innerHTML = state.quarantine.length
    ? state.quarantine.slice(0, 30).map((q) => `<div class="item"><b>${esc(q.reason)}</b> ${esc(q.device)} ${esc(q.metric)}<br><span class="muted">${esc(q.arrival_time)} ${esc(q.detail)}</span></div>`).join('')
    : '<div class="muted">nothing quarantined recently</div>';
}

async function refreshSlow() {
  // With the live stream, sensors arrive in `summary` events; the full list is re-read
  // rarely (it also ages sensors into `stale`, which no event announces).
  const wantSensors = !state.sseOpen || Date.now() - state.sensorsReadAt >= SENSORS_LIVE_MS;
  const [sensors, zones, alerts, surface, quarantine] = await Promise.allSettled([
    wantSensors ? getJson('api/sensors') : Promise.resolve(null), getJson('api/zones'),
    getJson('api/alerts?state=all'), getJson('api/surface/latest'),
    state.sseOpen ? Promise.resolve(null) : getJson('api/quarantine?limit=30'),
  ]);
  if (sensors.status === 'fulfilled' && sensors.value) {
    state.sensorsReadAt = Date.now();
    const seen = new Set();
    for (const s of sensors.value.sensors) { putSensor(s); seen.add(s.device); }
    for (const d of [...state.sensors.keys()]) if (!seen.has(d)) { state.sensors.delete(d); sensorLayer.delete(d); }
  }
  state.zones = zones.status === 'fulfilled' ? zones.value : null;
  for (const f of state.zones?.features ?? []) if (f.properties?.window) state.windowByGroupBy.zone ??= f.properties.window;
  if (alerts.status === 'fulfilled') {
    state.alertsNote = null;
    state.alerts = Array.isArray(alerts.value) ? alerts.value : alerts.value.alerts ?? [];
  } else if (alerts.reason instanceof NotConfigured) {
    state.alertsNote = 'alerts: not configured on this server';
  }
  if (surface.status === 'fulfilled') drawSurface(surface.value);
  else { state.surfaceNote = surface.reason instanceof NotConfigured ? 'IDW surface: not configured on this server' : `IDW surface: ${surface.reason.message}`; if (surfaceLayer) { map.removeLayer(surfaceLayer); surfaceLayer = null; } }
  if (quarantine.status === 'fulfilled' && quarantine.value) state.quarantine = quarantine.value.records;
  drawLegend();
  invalidate('sensors');
  invalidate('zones');
  invalidate('alerts');
  invalidate('quarantine');
  const gs = groups();
  fillSelect($('focus'), gs);
  fillSelect($('sub-zone'), gs);
  fillSelect($('cmp-a'), gs, gs[0]);
  fillSelect($('cmp-b'), gs, gs[1]);
  if ($('cmp-a').value === $('cmp-b').value && gs.length > 1) $('cmp-b').value = gs[1];
  if (!trendChart && $('focus').value) await onFocusChanged();
  if (!cmpChart && $('cmp-a').value && $('cmp-b').value) await onCompareChanged();
  if (!state.sseOpen) {
    // Without the live stream, charts are re-read on each refresh.
    const gsel = [$('focus').value, $('cmp-a').value, $('cmp-b').value].filter(Boolean);
    await Promise.all(gsel.map((g) => loadSeries(g).catch(() => {})));
    invalidate('charts');
  }
  invalidate('conditions');
  await refreshHealth();
}

async function discoverWindows() {
  try {
    const doc = await getJson('api/windows?limit=1000');
    const metrics = new Set();
    for (const r of doc.windows) {
      state.windowByGroupBy[r.group_by] ??= r.window;
      metrics.add(r.metric);
    }
    const list = [...metrics].sort();
    if (!list.length) list.push('pm25');
    fillSelect($('metric'), list, 'pm25');
    if (list.includes('pm25')) $('metric').value = 'pm25';
    state.metric = $('metric').value;
  } catch {
    fillSelect($('metric'), ['pm25']);
  }
}

// ---------------------------------------------------------------- live events
let events = null;
let eventsKey = '';

// The per-device windows the page needs: those of the devices being charted.
function watchedDevices() {
  return [$('focus').value, $('cmp-a').value, $('cmp-b').value]
    .filter((g) => g && g.startsWith('device:')).map((g) => splitGroup(g)[1]).sort();
}

// (Re)open the stream when the watched devices change. A new stream resumes after the
// last event seen, so nothing is missed while switching.
function connectEvents() {
  const q = new URLSearchParams({ types: EVENT_TYPES, group_by: EVENT_GROUP_BYS });
  const devices = [...new Set(watchedDevices())];
  if (devices.length) q.set('groups', devices.join(','));
  const key = q.toString();
  if (events && key === eventsKey) return;
  if (events) {
    events.close();
    if (state.lastEventId) q.set('last_event_id', state.lastEventId);
  }
  eventsKey = key;
  const es = new EventSource(`api/events?${q}`); // reconnects by itself, sending Last-Event-ID
  events = es;
  $('conn').dataset.url = `api/events?${key}`;
  es.onopen = () => { state.sseOpen = true; $('conn').textContent = 'live'; $('conn').className = 'badge ok'; };
  es.onerror = () => { state.sseOpen = false; $('conn').textContent = 'reconnecting… (refreshing every 5 s)'; $('conn').className = 'badge bad'; };
  const seen = (ev) => { state.lastEventId = ev.lastEventId || state.lastEventId; stats.events++; };
  es.addEventListener('window', (ev) => {
    seen(ev);
    const r = JSON.parse(ev.data);
    state.windowByGroupBy[r.group_by] ??= r.window;
    if (r.window !== windowFor(r.group_by)) return;
    const key = `${r.group}|${r.metric}`;
    const m = state.series.get(key);
    if (!m) return; // only series someone is looking at are kept
    m.set(Date.parse(r.start) / 1000, r.mean);
    if (m.size > 2000) m.delete(Math.min(...m.keys()));
    invalidate('charts');
  });
  es.addEventListener('quarantine', (ev) => {
    seen(ev);
    state.quarantine.unshift(JSON.parse(ev.data));
    state.quarantine.length = Math.min(state.quarantine.length, 100);
    invalidate('quarantine');
  });
  es.addEventListener('alert', (ev) => {
    seen(ev);
    const a = JSON.parse(ev.data);
    state.alertsNote = null;
    // The latest event of each alert life replaces the earlier ones.
    state.alerts = [a, ...state.alerts.filter((x) => x.id == null || x.id !== a.id)].slice(0, 200);
    invalidate('alerts');
  });
  es.addEventListener('summary', (ev) => {
    seen(ev);
    const s = JSON.parse(ev.data);
    for (const x of s.sensors) putSensor(x);
    state.summary = s;
    const lag = Date.now() - Date.parse(s.to);
    if (Number.isFinite(lag)) { stats.summaryLag.push(lag); if (stats.summaryLag.length > 5000) stats.summaryLag.splice(0, 1000); }
    invalidate('sensors');
    invalidate('summary');
  });
}

function renderSummary() {
  const s = state.summary;
  if (!s) return;
  $('live-summary').textContent = `${fmt(s.events_per_second, 0)} readings/s · last ${((Date.parse(s.to) - Date.parse(s.from)) / 1000).toFixed(1)} s: `
    + `${s.readings} readings, ${s.sensors.length} sensors reported, ${s.quarantined} quarantined, ${s.late} late, ${s.windows} windows`;
}

setInterval(() => { $('clock').textContent = new Date().toISOString().slice(0, 19) + 'Z'; }, 1000);

// ---------------------------------------------------------------- subscription form
$('sub-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const [kind, name] = splitGroup(String(f.get('zone') || ':'));
  const body = { email: f.get('email'), zone: name, kind, time: f.get('time') };
  const headers = { 'Content-Type': 'application/json' };
  if (f.get('write_token')) headers.Authorization = `Bearer ${f.get('write_token')}`;
  const out = $('sub-answer');
  out.className = 'note';
  out.textContent = 'sending…';
  try {
    const res = await fetch('api/subscriptions', { method: 'POST', headers, body: JSON.stringify(body), credentials: 'same-origin' });
    const text = await res.text();
    let msg = text;
    try { const j = JSON.parse(text); msg = j.error ?? j.message ?? JSON.stringify(j); } catch { /* not JSON */ }
    if (res.status === 404) msg = 'subscriptions are not configured on this server';
    out.className = res.ok ? 'note ok' : 'note bad';
    out.textContent = `${res.ok ? 'Subscribed' : 'Not subscribed'} (HTTP ${res.status}): ${msg}`;
  } catch (e) {
    out.className = 'note bad';
    out.textContent = `Not subscribed: ${e.message}`;
  }
});

$('focus').addEventListener('change', () => { connectEvents(); onFocusChanged(); });
$('cmp-a').addEventListener('change', () => { connectEvents(); onCompareChanged(); });
$('cmp-b').addEventListener('change', () => { connectEvents(); onCompareChanged(); });
$('metric').addEventListener('change', () => {
  state.metric = $('metric').value;
  onFocusChanged();
  onCompareChanged();
  invalidate('sensors');
  invalidate('zones');
});
window.addEventListener('resize', () => {
  for (const [c, el] of [[trendChart, 'trend-chart'], [cmpChart, 'cmp-chart']]) if (c) c.setSize({ width: $(el).clientWidth, height: 220 });
});

(async () => {
  await discoverWindows();
  connectEvents();
  await refreshSlow();
  connectEvents(); // the selections are known now
  setInterval(() => refreshSlow().catch(() => {}), REFRESH_MS);
})();
