// Sensors drawn on one canvas: a Leaflet layer that paints every sensor in a single pass
// per frame (one path per status colour), instead of one Leaflet layer per sensor. With
// thousands of sensors the per-layer cost (objects, event handlers, style updates) is what
// freezes a page; here an update is a Map write and a redraw scheduled for the next frame.
// Hit testing for clicks and the tooltip scans the screen positions of the last redraw.
import L from 'leaflet';

const HIT_PX = 8;

export const SensorCanvasLayer = L.Layer.extend({
  initialize(options) {
    L.setOptions(this, options);
    this._sensors = new Map(); // device → {lat, lon, status, label}
    this._screen = []; // [x, y, device] of the last redraw
    this._frame = 0;
  },

  onAdd(map) {
    const pane = map.getPane('sensors') ?? map.createPane('sensors');
    pane.style.zIndex = 450;
    pane.style.pointerEvents = 'none';
    this._canvas = L.DomUtil.create('canvas', 'sensor-canvas', pane);
    this._tip = L.DomUtil.create('div', 'sensor-tip', map.getContainer());
    this._tip.style.display = 'none';
    map.on('move zoom viewreset resize', this.redraw, this);
    map.on('zoomstart', this._hide, this);
    map.on('zoomend', this._show, this);
    map.on('click', this._onClick, this);
    map.on('mousemove', this._onMove, this);
    map.on('mouseout', this._hideTip, this);
    this.redraw();
  },

  onRemove(map) {
    map.off('move zoom viewreset resize', this.redraw, this);
    map.off('zoomstart', this._hide, this);
    map.off('zoomend', this._show, this);
    map.off('click', this._onClick, this);
    map.off('mousemove', this._onMove, this);
    map.off('mouseout', this._hideTip, this);
    this._canvas.remove();
    this._tip.remove();
  },

  /** Replace or add one sensor; the redraw happens on the next frame. */
  set(device, sensor) {
    this._sensors.set(device, sensor);
  },
  delete(device) {
    this._sensors.delete(device);
  },
  size() {
    return this._sensors.size;
  },
  bounds() {
    const pts = [];
    for (const s of this._sensors.values()) pts.push([s.lat, s.lon]);
    return pts;
  },

  /** Schedule one redraw for the next animation frame (coalesces repeated calls). */
  redraw() {
    if (!this._map || this._frame) return this;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this._draw();
    });
    return this;
  },

  _draw() {
    const map = this._map;
    const size = map.getSize();
    const ratio = window.devicePixelRatio || 1;
    const c = this._canvas;
    if (c.width !== size.x * ratio || c.height !== size.y * ratio) {
      c.width = size.x * ratio;
      c.height = size.y * ratio;
      c.style.width = `${size.x}px`;
      c.style.height = `${size.y}px`;
    }
    // The pane moves with the map; keep the canvas over the visible container.
    L.DomUtil.setPosition(c, map.containerPointToLayerPoint([0, 0]));
    const ctx = c.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, size.x, size.y);
    const byColor = new Map();
    const screen = [];
    const colors = this.options.colors;
    for (const [device, s] of this._sensors) {
      const p = map.latLngToContainerPoint([s.lat, s.lon]);
      if (p.x < -10 || p.y < -10 || p.x > size.x + 10 || p.y > size.y + 10) continue;
      screen.push([p.x, p.y, device]);
      const color = colors[s.status] ?? '#000';
      let list = byColor.get(color);
      if (!list) byColor.set(color, (list = []));
      list.push(p.x, p.y);
    }
    const r = this.options.radius ?? 4;
    ctx.lineWidth = 1;
    ctx.strokeStyle = '#222';
    for (const [color, xy] of byColor) {
      ctx.beginPath();
      for (let i = 0; i < xy.length; i += 2) {
        ctx.moveTo(xy[i] + r, xy[i + 1]);
        ctx.arc(xy[i], xy[i + 1], r, 0, 2 * Math.PI);
      }
      ctx.fillStyle = color;
      ctx.fill();
      ctx.stroke();
    }
    this._screen = screen;
    this.options.onDraw?.(screen.length);
  },

  _hit(containerPoint) {
    let best = null;
    let bestD = HIT_PX * HIT_PX;
    for (const [x, y, device] of this._screen) {
      const d = (x - containerPoint.x) ** 2 + (y - containerPoint.y) ** 2;
      if (d <= bestD) { bestD = d; best = device; }
    }
    return best;
  },

  _onClick(e) {
    const device = this._hit(e.containerPoint);
    if (device != null) {
      L.DomEvent.stop(e.originalEvent);
      this.options.onClick?.(device);
    }
  },

  _onMove(e) {
    const device = this._hit(e.containerPoint);
    if (device == null) { this._hideTip(); return; }
    const s = this._sensors.get(device);
    this._tip.textContent = this.options.label ? this.options.label(device, s) : device;
    this._tip.style.left = `${e.containerPoint.x + 12}px`;
    this._tip.style.top = `${e.containerPoint.y - 10}px`;
    this._tip.style.display = 'block';
    this._map.getContainer().style.cursor = 'pointer';
  },

  _hideTip() {
    this._tip.style.display = 'none';
    if (this._map) this._map.getContainer().style.cursor = '';
  },
  _hide() { this._canvas.style.visibility = 'hidden'; },
  _show() { this._canvas.style.visibility = 'visible'; this.redraw(); },
});
