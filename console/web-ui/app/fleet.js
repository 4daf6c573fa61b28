// The fleet as the browser holds it: one mutable row object per vehicle, loaded in bulk from
// /api/v1/console/fleet and kept current by the live stream. Views subscribe to what they
// need: 'reset' (a full reload), 'update' (the ids that changed in one batch), 'alerts' and
// 'commands' (events), 'status' (the live connection). Rows change in place, so a view
// re-renders only what it shows.
import { api } from './api.js';

const COLUMNS = ['fleet', 'lat', 'lon', 'heading', 'speed', 'soc', 'state', 'last_seen', 'alerts', 'severity', 'tags'];

export const fleet = {
  rows: [],
  byId: new Map(),
  fleets: [],
  status: 'connecting',
  loadedAt: 0,
  loadMs: 0,
  listeners: new Map(),

  on(kind, fn) {
    if (!this.listeners.has(kind)) this.listeners.set(kind, new Set());
    this.listeners.get(kind).add(fn);
    return () => this.listeners.get(kind).delete(fn);
  },

  emit(kind, payload) {
    for (const fn of this.listeners.get(kind) || []) {
      try { fn(payload); } catch (e) { console.error(e); }
    }
  },

  async load() {
    const started = performance.now();
    const { data } = await api('/api/v1/console/fleet');
    const cols = data.vehicles;
    const rows = new Array(cols.id.length);
    const byId = new Map();
    for (let i = 0; i < cols.id.length; i += 1) {
      const row = { id: cols.id[i] };
      for (const c of COLUMNS) row[c] = cols[c][i];
      rows[i] = row;
      byId.set(row.id, row);
    }
    this.rows = rows;
    this.byId = byId;
    this.fleets = [...new Set(cols.fleet)].sort();
    this.loadedAt = Date.now();
    this.loadMs = performance.now() - started;
    document.body.dataset.fleetLoadMs = this.loadMs.toFixed(0);
    this.emit('reset', rows);
    return rows;
  },

  apply(cols) {
    const changed = [];
    let added = false;
    for (let i = 0; i < cols.id.length; i += 1) {
      const id = cols.id[i];
      let row = this.byId.get(id);
      if (!row) {
        row = { id };
        this.byId.set(id, row);
        this.rows.push(row);
        added = true;
      }
      for (const c of COLUMNS) row[c] = cols[c][i];
      changed.push(id);
    }
    if (added) {
      this.rows.sort((a, b) => (a.id < b.id ? -1 : 1));
      this.fleets = [...new Set(this.rows.map((r) => r.fleet))].sort();
      this.emit('reset', this.rows);
    } else if (changed.length) {
      this.emit('update', changed);
    }
  },

  // Vehicles whose twin was deleted from the database.
  remove(ids) {
    const gone = new Set(ids.filter((id) => this.byId.delete(id)));
    if (!gone.size) return;
    this.rows = this.rows.filter((r) => !gone.has(r.id));
    this.fleets = [...new Set(this.rows.map((r) => r.fleet))].sort();
    this.emit('reset', this.rows);
  },
};

// The live stream. EventSource reconnects by itself; every (re)connection after the first
// reloads the fleet from the REST API, so nothing missed while away stays missing.
let source = null;
let connections = 0;

function setStatus(status) {
  fleet.status = status;
  fleet.emit('status', status);
}

export function startLive() {
  if (source) return;
  source = new EventSource('/api/v1/console/live');
  source.addEventListener('hello', () => {
    connections += 1;
    setStatus('live');
    if (connections > 1) {
      fleet.load().catch(() => {});
      fleet.emit('resync');
    }
  });
  source.addEventListener('batch', (event) => {
    const batch = JSON.parse(event.data);
    if (batch.vehicles && batch.vehicles.id.length) fleet.apply(batch.vehicles);
    if (batch.removed && batch.removed.length) fleet.remove(batch.removed);
    if (batch.alerts && batch.alerts.length) fleet.emit('alerts', batch.alerts);
    if (batch.commands && batch.commands.length) fleet.emit('commands', batch.commands);
    if (batch.resync) fleet.emit('resync');
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused (503, 401): EventSource gives up; try again a little later.
      setStatus('offline');
      source = null;
      setTimeout(startLive, 5000);
    } else {
      setStatus('reconnecting');
    }
  };
}

export function stopLive() {
  if (source) source.close();
  source = null;
  connections = 0;
}
