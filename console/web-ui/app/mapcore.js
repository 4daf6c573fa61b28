// Leaflet pieces the console's maps share: the offline basemap and the vehicle canvas layer.
import * as L from '../vendor/leaflet/leaflet-src.esm.js';
import { fleet } from './fleet.js';

export { L };

export const STATE_COLORS = {
  moving: '#2da44e', parked: '#0969da', charging: '#8250df', offline: '#8c959f', alarm: '#cf222e',
};
const STATE_RANK = { alarm: 4, moving: 3, charging: 2, parked: 1, offline: 0 };

// Natural Earth country outlines (public domain, via world-atlas) drawn from TopoJSON arcs:
// a basemap that needs no tile server and no request to another origin.
let outline = null;
async function outlineArcs() {
  if (!outline) {
    outline = fetch('/console/vendor/world-atlas/countries-50m.json').then((r) => r.json()).then((topo) => {
      const [sx, sy] = topo.transform.scale;
      const [tx, ty] = topo.transform.translate;
      return topo.arcs.map((arc) => {
        let x = 0; let y = 0;
        return arc.map(([dx, dy]) => { x += dx; y += dy; return [y * sy + ty, x * sx + tx]; });
      });
    });
  }
  return outline;
}

export function addBasemap(map, config) {
  if (config.tile_url) {
    L.tileLayer(config.tile_url, {
      maxZoom: config.tile_max_zoom, attribution: config.tile_attribution || '', crossOrigin: false,
    }).addTo(map);
    return;
  }
  map.getContainer().classList.add('no-tiles');
  outlineArcs().then((arcs) => {
    L.polyline(arcs, {
      renderer: L.canvas({ padding: 0.2 }),
      color: getComputedStyle(document.documentElement).getPropertyValue('--outline').trim() || '#7d8590',
      weight: 1,
      interactive: false,
      className: 'outline', smoothFactor: 1.5,
    }).addTo(map);
  }).catch(() => {});
}

export function createMap(element, config, options = {}) {
  const map = L.map(element, {
    worldCopyJump: true, zoomControl: true, attributionControl: Boolean(config.tile_url), maxZoom: config.tile_max_zoom || 19,
    preferCanvas: true, keyboard: true, ...options,
  });
  addBasemap(map, config);
  L.control.scale({ imperial: false }).addTo(map);
  return map;
}

// Every vehicle on one canvas (never one DOM node per vehicle). Below `clusterBelowZoom`,
// vehicles sharing a screen cell are drawn as one disc with their count, coloured by the
// most urgent state among them.
export const VehicleLayer = L.Layer.extend({
  initialize(options) {
    this.options = { cell: 56, clusterBelowZoom: 13, ...options };
    this.filter = () => true;
    this.selected = null;
    this.hits = [];
    this._frame = null;
  },

  onAdd(map) {
    this._map = map;
    this._canvas = L.DomUtil.create('canvas', 'vehicle-canvas leaflet-zoom-hide');
    this._canvas.setAttribute('aria-hidden', 'true');
    map.getPanes().overlayPane.appendChild(this._canvas);
    map.on('moveend zoomend resize viewreset', this._reset, this);
    this._reset();
  },

  onRemove(map) {
    map.off('moveend zoomend resize viewreset', this._reset, this);
    this._canvas.remove();
    if (this._frame) cancelAnimationFrame(this._frame);
  },

  _reset() {
    const size = this._map.getSize();
    const ratio = window.devicePixelRatio || 1;
    this._canvas.width = size.x * ratio;
    this._canvas.height = size.y * ratio;
    this._canvas.style.width = `${size.x}px`;
    this._canvas.style.height = `${size.y}px`;
    L.DomUtil.setPosition(this._canvas, this._map.containerPointToLayerPoint([0, 0]));
    this._draw();
  },

  redraw() {
    if (this._frame || !this._map) return;
    this._frame = requestAnimationFrame(() => { this._frame = null; this._draw(); });
  },

  _draw() {
    const started = performance.now();
    const map = this._map;
    const ctx = this._canvas.getContext('2d');
    const ratio = window.devicePixelRatio || 1;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const size = map.getSize();
    ctx.clearRect(0, 0, size.x, size.y);
    const zoom = map.getZoom();
    const cluster = zoom < this.options.clusterBelowZoom;
    const cell = this.options.cell;
    const cells = new Map();
    const singles = [];
    for (const row of fleet.rows) {
      if (row.lat === null || row.lon === null || !this.filter(row)) continue;
      const p = map.latLngToContainerPoint([row.lat, row.lon]);
      if (p.x < -20 || p.y < -20 || p.x > size.x + 20 || p.y > size.y + 20) continue;
      if (!cluster) { singles.push([p, row]); continue; }
      const key = `${Math.floor(p.x / cell)}:${Math.floor(p.y / cell)}`;
      let c = cells.get(key);
      if (!c) { c = { x: 0, y: 0, n: 0, state: 'offline', rows: [] }; cells.set(key, c); }
      c.x += p.x; c.y += p.y; c.n += 1; c.rows.push(row);
      if (STATE_RANK[row.state] > STATE_RANK[c.state]) c.state = row.state;
    }
    const hits = [];
    for (const c of cells.values()) {
      if (c.n === 1) { singles.push([{ x: c.x, y: c.y }, c.rows[0]]); continue; }
      const x = c.x / c.n; const y = c.y / c.n;
      const r = Math.min(28, 10 + Math.log2(c.n) * 3);
      ctx.beginPath();
      ctx.arc(x, y, r, 0, Math.PI * 2);
      ctx.fillStyle = STATE_COLORS[c.state];
      ctx.globalAlpha = 0.85;
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.lineWidth = 2;
      ctx.strokeStyle = '#ffffff';
      ctx.stroke();
      ctx.fillStyle = '#ffffff';
      ctx.font = 'bold 12px system-ui, sans-serif';
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(String(c.n), x, y);
      hits.push({ x, y, r, cluster: c });
    }
    for (const [p, row] of singles) {
      drawVehicle(ctx, p.x, p.y, row, row.id === this.selected);
      hits.push({ x: p.x, y: p.y, r: 8, row });
    }
    this.hits = hits;
    this.drawn = singles.length + [...cells.values()].reduce((n, c) => n + (c.n > 1 ? c.n : 0), 0);
    this._canvas.dataset.drawn = String(this.drawn);
    // For the benchmark and the curious: how long a frame took, and when the loaded fleet was first drawn.
    this._canvas.dataset.drawMs = (performance.now() - started).toFixed(1);
    if (fleet.loadedAt && !this._canvas.dataset.fleetDrawnAt) {
      this._canvas.dataset.fleetDrawnAt = performance.now().toFixed(0);
    }
  },

  hitTest(containerPoint) {
    let best = null;
    let bestD = Infinity;
    for (const h of this.hits) {
      const d = Math.hypot(h.x - containerPoint.x, h.y - containerPoint.y);
      if (d <= h.r + 4 && d < bestD) { best = h; bestD = d; }
    }
    return best;
  },
});

function drawVehicle(ctx, x, y, row, selected) {
  const color = STATE_COLORS[row.state] || STATE_COLORS.offline;
  if (row.heading !== null && row.heading !== undefined && row.state !== 'offline') {
    const a = (row.heading * Math.PI) / 180;
    ctx.save();
    ctx.translate(x, y);
    ctx.rotate(a);
    ctx.beginPath();
    ctx.moveTo(0, -14);
    ctx.lineTo(5, -6);
    ctx.lineTo(-5, -6);
    ctx.closePath();
    ctx.fillStyle = color;
    ctx.fill();
    ctx.restore();
  }
  ctx.beginPath();
  ctx.arc(x, y, 6, 0, Math.PI * 2);
  ctx.fillStyle = color;
  ctx.fill();
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = '#ffffff';
  ctx.stroke();
  if (selected) {
    ctx.beginPath();
    ctx.arc(x, y, 11, 0, Math.PI * 2);
    ctx.lineWidth = 3;
    ctx.strokeStyle = '#f0b400';
    ctx.stroke();
  }
}

export function zoneLayer(name, zone, options = {}) {
  const style = { color: '#d4a72c', weight: 2, fillOpacity: 0.08, ...options };
  const layer = zone.kind === 'circle'
    ? L.circle([zone.lat, zone.lon], { radius: zone.radius_m, ...style })
    : L.polygon(zone.vertices.map((v) => [v.lat, v.lon]), style);
  layer.bindTooltip(name, { sticky: true });
  return layer;
}

// GET /api/v1/zones answers {"items": {name: zone}} (or a list of zones with names).
export function zoneEntries(data) {
  const items = data && data.items !== undefined ? data.items : data;
  if (Array.isArray(items)) return items.map((z) => [z.name, z]);
  return Object.entries(items || {});
}
