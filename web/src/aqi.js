// US EPA AQI categories (2024 PM2.5 breakpoints) and plain advice per category.
export const CATEGORIES = [
  { max: 50, name: 'Good', color: '#00a651', advice: 'Air quality is good. Enjoy outdoor activities.' },
  { max: 100, name: 'Moderate', color: '#f5d300', advice: 'Unusually sensitive people should consider shorter outdoor exertion.' },
  { max: 150, name: 'Unhealthy for sensitive groups', color: '#ff7e00', advice: 'Children, older adults and people with heart or lung disease should reduce prolonged outdoor exertion.' },
  { max: 200, name: 'Unhealthy', color: '#e3001b', advice: 'Everyone should reduce prolonged outdoor exertion; sensitive groups should stay indoors.' },
  { max: 300, name: 'Very unhealthy', color: '#8f3f97', advice: 'Avoid outdoor exertion; keep windows closed.' },
  { max: Infinity, name: 'Hazardous', color: '#7e0023', advice: 'Stay indoors with windows closed; follow official instructions.' },
];

const PM25 = [
  [0, 9.0, 0, 50], [9.1, 35.4, 51, 100], [35.5, 55.4, 101, 150],
  [55.5, 125.4, 151, 200], [125.5, 225.4, 201, 300], [225.5, 325.4, 301, 500],
];
const PM10 = [
  [0, 54, 0, 50], [55, 154, 51, 100], [155, 254, 101, 150],
  [255, 354, 151, 200], [355, 424, 201, 300], [425, 604, 301, 500],
];

/** AQI of a concentration (µg/m³), or null when the metric has no AQI scale. */
export function aqiOf(metric, value) {
  const table = metric === 'pm25' ? PM25 : metric === 'pm10' ? PM10 : null;
  if (!table || value == null || !Number.isFinite(value)) return null;
  const c = metric === 'pm25' ? Math.floor(value * 10) / 10 : Math.floor(value);
  for (const [clo, chi, ilo, ihi] of table) {
    if (c <= chi) return Math.round(((ihi - ilo) / (chi - clo)) * (Math.max(c, clo) - clo) + ilo);
  }
  return 500;
}

export function categoryOf(aqi) {
  if (aqi == null || !Number.isFinite(aqi)) return null;
  return CATEGORIES.find((c) => aqi <= c.max);
}

/** A sequential colour (blue → yellow → red) for t in 0..1, for non-AQI metrics. */
export function rampColor(t) {
  const x = Math.min(1, Math.max(0, t));
  const stops = [[49, 54, 149], [116, 173, 209], [254, 224, 144], [244, 109, 67], [165, 0, 38]];
  const p = x * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(p));
  const f = p - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
