// The vehicle page: twin (reported with per-key age, desired with status, delta), presence,
// a chart from the history endpoints, trips with a replay slider, recent alerts and commands,
// and the actions the role allows: edit desired (with If-Match) and send a command.
import {
  html, useEffect, useRef, useState, age, when, num, json, flatten, lookup, nest, ErrorNote, Confirm,
  useInterval, STATE_LABELS,
} from './ui.js';
import { api, get, query, vid } from './api.js';
import { fleet } from './fleet.js';
import { L, createMap, STATE_COLORS } from './mapcore.js';
import uPlot from '../vendor/uplot/uPlot.esm.js';

const TERMINAL = new Set(['succeeded', 'failed', 'rejected', 'expired', 'cancelled', 'precondition_failed']);
const COMMAND_NAMES = ['locate', 'lock', 'unlock', 'honk', 'immobilize', 'set_charge_limit'];
const PERIODS = {
  '1h': { s: 3600, bucket: '1m' }, '6h': { s: 21600, bucket: '5m' }, '24h': { s: 86400, bucket: '5m' }, '7d': { s: 604800, bucket: '1h' },
};

function Twin({ twin, canWrite, onEdit }) {
  const reported = flatten(twin.reported);
  const desired = flatten(twin.desired);
  const delta = flatten(twin.delta);
  const now = Date.now() / 1000;
  return html`<div class="grid2">
    <div class="card">
      <h2>Reported</h2>
      <table class="kv"><thead><tr><th>Key</th><th>Value</th><th>Age</th></tr></thead><tbody>
        ${reported.map(([k, v]) => html`<tr key=${k}><td><code>${k}</code></td><td>${json(v)}</td>
          <td>${age((lookup(twin.metadata.reported, k) || {}).ts, now)}</td></tr>`)}
      </tbody></table>
    </div>
    <div class="card">
      <h2>Desired</h2>
      <table class="kv" data-testid="desired"><thead><tr><th>Key</th><th>Value</th><th>Status</th>${canWrite && html`<th></th>`}</tr></thead><tbody>
        ${desired.map(([k, v]) => {
          const meta = lookup(twin.metadata.desired, k) || {};
          return html`<tr key=${k}><td><code>${k}</code></td><td>${json(v)}</td>
            <td><span class=${`badge status-${meta.status}`} title=${meta.reason || ''}>${meta.status || '–'}</span>
              ${meta.reason ? html` <small>${meta.reason}</small>` : ''}</td>
            ${canWrite && html`<td><button type="button" class="small" onClick=${() => onEdit(k, v)}>Edit</button></td>`}</tr>`;
        })}
        ${desired.length === 0 && html`<tr><td colspan="4">Nothing desired.</td></tr>`}
      </tbody></table>
      <h3>Delta (not yet applied)</h3>
      <p data-testid="delta">${delta.length ? delta.map(([k, v]) => html`<code key=${k}>${k} = ${json(v)}</code> `) : html`<span class="ok">none: the vehicle has applied everything</span>`}</p>
    </div>
  </div>`;
}

function DesiredEditor({ twin, initial, onDone }) {
  const [key, setKey] = useState(initial ? initial.key : '');
  const [value, setValue] = useState(initial ? json(initial.value) : '');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => { if (initial) { setKey(initial.key); setValue(json(initial.value)); } }, [initial]);
  async function submit(e) {
    e.preventDefault();
    setError(null);
    let parsed;
    try { parsed = JSON.parse(value); } catch (err) { parsed = value; }
    setBusy(true);
    // The twin's version also moves with every report, so a conflict is retried with the new
    // version as long as desired state itself is still what this page showed; a change to desired
    // by someone else stops the write and is shown instead.
    const seen = JSON.stringify(twin.desired);
    let version = twin.version;
    try {
      for (let attempt = 0; ; attempt += 1) {
        try {
          await api(`/api/v1/vehicles/${vid(twin.vehicle_id)}/twin/desired`, {
            method: 'PATCH', body: nest(key.trim(), parsed), headers: { 'If-Match': `"${version}"` },
          });
          break;
        } catch (err) {
          if (err.status !== 409 || attempt >= 4) throw err;
          const fresh = await get(`/api/v1/vehicles/${vid(twin.vehicle_id)}/twin`);
          if (JSON.stringify(fresh.desired) !== seen) {
            throw new Error('Desired state was changed by someone else meanwhile; the page shows it now: check and try again.');
          }
          version = fresh.version;
        }
      }
      onDone();
    } catch (err) {
      setError(err);
      onDone();
    } finally { setBusy(false); }
  }
  return html`<form class="card inline-form" onSubmit=${submit} aria-label="Change a desired value">
    <h2>Change a desired value</h2>
    <label>Key <input required value=${key} onInput=${(e) => setKey(e.target.value)} placeholder="charge_limit" name="desired-key" /></label>
    <label>Value (JSON) <input required value=${value} onInput=${(e) => setValue(e.target.value)} placeholder="80" name="desired-value" /></label>
    <button type="submit" class="primary" disabled=${busy}>Set desired</button>
    <p class="hint">Sent with If-Match (refused if desired state changed meanwhile); the value null removes the key.</p>
    <${ErrorNote} error=${error} />
  </form>`;
}

function CommandPanel({ vehicleId, onSent }) {
  const [name, setName] = useState('locate');
  const [args, setArgs] = useState('{}');
  const [ttl, setTtl] = useState('300');
  const [confirm, setConfirm] = useState(false);
  const [error, setError] = useState(null);
  function ask(e) {
    e.preventDefault();
    setError(null);
    try { JSON.parse(args || '{}'); } catch (err) { setError(new Error('Arguments must be a JSON object')); return; }
    setConfirm(true);
  }
  async function send() {
    setConfirm(false);
    try {
      const { data } = await api(`/api/v1/vehicles/${vid(vehicleId)}/commands`, {
        method: 'POST', body: { name, args: JSON.parse(args || '{}'), ttl_s: Number(ttl) || undefined },
      });
      onSent(data);
    } catch (err) { setError(err); }
  }
  return html`<form class="card inline-form" onSubmit=${ask} aria-label="Send a command">
    <h2>Send a command</h2>
    <label>Command <input list="command-names" value=${name} onInput=${(e) => setName(e.target.value)} name="command-name" required /></label>
    <datalist id="command-names">${COMMAND_NAMES.map((n) => html`<option key=${n} value=${n} />`)}</datalist>
    <label>Arguments (JSON) <input value=${args} onInput=${(e) => setArgs(e.target.value)} name="command-args" /></label>
    <label>Expires after (s) <input type="number" min="1" value=${ttl} onInput=${(e) => setTtl(e.target.value)} /></label>
    <button type="submit" class="primary" data-testid="send-command">Send…</button>
    <${ErrorNote} error=${error} />
    ${confirm && html`<${Confirm} title=${`Send "${name}" to ${vehicleId}?`} confirmLabel="Send command"
      onConfirm=${send} onCancel=${() => setConfirm(false)}>
      <p>Arguments: <code>${args || '{}'}</code>. The vehicle acts on it as soon as it is online.</p></${Confirm}>`}
  </form>`;
}

function Lifecycle({ command }) {
  const steps = (command.history || []).map((h) => h.state);
  return html`<div class="lifecycle" data-testid="command-lifecycle" data-state=${command.state}>
    <b>${command.name}</b> <code>${command.id.slice(0, 10)}</code>:
    ${steps.map((s, i) => html`<span key=${i} class=${`badge cmd-${s}`}>${s}</span>${i < steps.length - 1 ? ' → ' : ''}`)}
    ${command.detail ? html` <small>${command.detail}</small>` : ''}
  </div>`;
}

function Chart({ vehicleId, fields }) {
  const [field, setField] = useState('');
  const [period, setPeriod] = useState('1h');
  const [error, setError] = useState(null);
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => { if (!field && fields.length) setField(fields.includes('soc') ? 'soc' : fields[0]); }, [fields.join(',')]);
  useEffect(() => {
    if (!field) return undefined;
    let cancelled = false;
    const p = PERIODS[period];
    const from = new Date(Date.now() - p.s * 1000).toISOString();
    get(`/api/v1/vehicles/${vid(vehicleId)}/history/aggregate${query({ bucket: p.bucket, agg: `${field}:avg,${field}:max`, from })}`)
      .then((data) => {
        if (cancelled) return;
        const xs = []; const avg = []; const max = [];
        for (const b of data.items) {
          xs.push(Date.parse(b.bucket) / 1000);
          avg.push(b.values[`${field}:avg`]);
          max.push(b.values[`${field}:max`]);
        }
        if (plot.current) plot.current.destroy();
        const width = box.current.clientWidth || 600;
        plot.current = new uPlot({
          width, height: 220,
          series: [{}, { label: `${field} avg`, stroke: '#1f6feb', width: 2 }, { label: `${field} max`, stroke: '#cf222e', dash: [4, 4] }],
          axes: [{ stroke: 'currentColor', grid: { stroke: 'rgba(128,128,128,.2)' } }, { stroke: 'currentColor', grid: { stroke: 'rgba(128,128,128,.2)' } }],
        }, [xs, avg, max], box.current);
        setError(null);
      })
      .catch((err) => !cancelled && setError(err));
    return () => { cancelled = true; };
  }, [field, period, vehicleId]);
  useEffect(() => () => plot.current && plot.current.destroy(), []);
  return html`<div class="card">
    <h2>History</h2>
    <p class="row">
      <label>Field <select value=${field} onChange=${(e) => setField(e.target.value)}>
        ${fields.map((f) => html`<option key=${f} value=${f}>${f}</option>`)}</select></label>
      <label>Period <select value=${period} onChange=${(e) => setPeriod(e.target.value)}>
        ${Object.keys(PERIODS).map((k) => html`<option key=${k} value=${k}>last ${k}</option>`)}</select></label>
    </p>
    <div ref=${box} class="chart" aria-label=${`Chart of ${field}`}></div>
    <${ErrorNote} error=${error} />
  </div>`;
}

function Trips({ vehicleId, config }) {
  const [trips, setTrips] = useState(null);
  const [chosen, setChosen] = useState(null);
  const [points, setPoints] = useState([]);
  const [pos, setPos] = useState(0);
  const [error, setError] = useState(null);
  const el = useRef(null);
  const map = useRef(null);
  const marker = useRef(null);
  useEffect(() => {
    const from = new Date(Date.now() - 86400 * 1000).toISOString();
    get(`/api/v1/vehicles/${vid(vehicleId)}/trips${query({ from })}`).then((d) => setTrips(d.trips)).catch(setError);
  }, [vehicleId]);
  useEffect(() => {
    if (!chosen) return;
    get(`/api/v1/vehicles/${vid(vehicleId)}/history${query({ from: chosen.start, to: chosen.end, fields: 'gps,speed', limit: 10000 })}`)
      .then((d) => {
        const pts = d.items.filter((r) => r.data.gps && r.data.gps.lat !== undefined)
          .map((r) => ({ lat: r.data.gps.lat, lon: r.data.gps.lon, ts: r.ts, speed: r.data.speed }));
        setPoints(pts);
        setPos(0);
      }).catch(setError);
  }, [chosen]);
  useEffect(() => {
    if (!points.length || !el.current) return;
    if (!map.current) map.current = createMap(el.current, config);
    const m = map.current;
    m.eachLayer((layer) => { if (layer instanceof L.Polyline && !(layer.options.className === 'outline')) m.removeLayer(layer); });
    const line = L.polyline(points.map((p) => [p.lat, p.lon]), { color: STATE_COLORS.moving, weight: 4 }).addTo(m);
    m.fitBounds(line.getBounds().pad(0.2));
    if (marker.current) marker.current.remove();
    marker.current = L.circleMarker([points[0].lat, points[0].lon], { radius: 8, color: '#f0b400', weight: 3 }).addTo(m);
  }, [points]);
  useEffect(() => () => map.current && map.current.remove(), []);
  useEffect(() => {
    const p = points[pos];
    if (p && marker.current) marker.current.setLatLng([p.lat, p.lon]);
  }, [pos]);
  const point = points[pos];
  return html`<div class="card">
    <h2>Trips (last 24 h)</h2>
    ${trips === null && !error && html`<p>Loading…</p>`}
    ${trips && trips.length === 0 && html`<p>No trips.</p>`}
    ${trips && trips.length > 0 && html`<ul class="trips">${trips.slice(-12).reverse().map((t) => html`<li key=${t.start}>
      <button type="button" class=${chosen === t ? 'small selected' : 'small'} onClick=${() => setChosen(t)}>
        ${when(t.start)} · ${num(t.duration_s / 60, 0, ' min')} · ${num(t.distance_km, 1, ' km')}${t.ongoing ? ' · ongoing' : ''}
      </button></li>`)}</ul>`}
    ${chosen && html`<div ref=${el} class="trip-map"></div>
      ${points.length > 0 && html`<label class="replay">Replay
        <input type="range" min="0" max=${points.length - 1} value=${pos} onInput=${(e) => setPos(Number(e.target.value))} />
        <output>${point ? `${when(point.ts)} · ${num(point.speed, 0, ' km/h')}` : ''}</output></label>`}`}
    <${ErrorNote} error=${error} />
  </div>`;
}

export function VehiclePage({ id, session, config }) {
  const [twin, setTwin] = useState(null);
  const [error, setError] = useState(null);
  const [presence, setPresence] = useState(null);
  const [alerts, setAlerts] = useState([]);
  const [commands, setCommands] = useState([]);
  const [watching, setWatching] = useState(null);
  const [editing, setEditing] = useState(null);
  const perms = session.permissions;
  const canWrite = perms.includes('twins:write');
  const canSend = perms.includes('commands:send');

  async function loadTwin() {
    try { setTwin(await get(`/api/v1/vehicles/${vid(id)}/twin`)); setError(null); } catch (err) { setError(err); }
  }
  async function loadSide() {
    get(`/api/v1/vehicles/${vid(id)}/presence${query({ order: 'desc', limit: 10 })}`).then(setPresence).catch(() => {});
    if (perms.includes('alerts:read')) get(`/api/v1/alerts${query({ vehicle: id, limit: 10 })}`).then((d) => setAlerts(d.items)).catch(() => {});
    if (perms.includes('commands:read')) get(`/api/v1/vehicles/${vid(id)}/commands${query({ limit: 10 })}`).then((d) => setCommands(d.items)).catch(() => {});
  }
  useEffect(() => { setTwin(null); loadTwin(); loadSide(); }, [id]);
  useEffect(() => {
    let timer = null;
    const offUpdate = fleet.on('update', (ids) => {
      if (ids.includes(id) && !timer) timer = setTimeout(() => { timer = null; loadTwin(); }, 300);
    });
    const offCommands = fleet.on('commands', (events) => {
      for (const c of events) {
        if (c.vehicle_id !== id) continue;
        setWatching((w) => (w && w.id === c.id ? { ...w, ...c } : w));
        loadSide();
      }
    });
    return () => { offUpdate(); offCommands(); clearTimeout(timer); };
  }, [id]);
  // The command being watched is also read back until it ends, in case an event was missed.
  useInterval(async () => {
    if (watching && !TERMINAL.has(watching.state)) {
      try { setWatching(await get(`/api/v1/vehicles/${vid(id)}/commands/${watching.id}`)); } catch (err) { /* next time */ }
    }
  }, 1000);
  useInterval(loadTwin, 10000);

  if (error && !twin) return html`<section><h1>${id}</h1><${ErrorNote} error=${error} /><p><a href="#/list">Back to the list</a></p></section>`;
  if (!twin) return html`<section><h1>${id}</h1><p>Loading…</p></section>`;
  const row = fleet.byId.get(id);
  const numeric = flatten(twin.reported).filter(([, v]) => typeof v === 'number').map(([k]) => k);
  const conn = twin.connection;
  return html`<section class="vehicle-page">
    <header class="page-head">
      <h1>${id}</h1>
      ${row && html`<span class=${`badge state-${row.state}`}>${STATE_LABELS[row.state]}</span>`}
      <span>fleet <b>${twin.fleet}</b> · version ${twin.version}</span>
      <span class=${conn.connected ? 'ok' : 'muted'}>${conn.connected ? `online since ${when(conn.since)}` : `offline since ${when(conn.since)}${conn.disconnect_reason ? ` (${conn.disconnect_reason})` : ''}`}</span>
      <a href=${`#/map?vehicle=${encodeURIComponent(id)}`}>Show on map</a>
    </header>
    ${Object.keys(twin.tags || {}).length > 0 && html`<p class="tags">${Object.entries(twin.tags).map(([k, v]) => html`<span key=${k} class="tag">${k}=${json(v)}</span>`)}</p>`}
    <${Twin} twin=${twin} canWrite=${canWrite} onEdit=${(key, value) => setEditing({ key, value })} />
    <div class="grid2">
      ${canWrite && html`<${DesiredEditor} twin=${twin} initial=${editing} onDone=${() => { setEditing(null); loadTwin(); }} />`}
      ${canSend && html`<div>
        <${CommandPanel} vehicleId=${id} onSent=${(c) => { setWatching(c); loadSide(); }} />
        ${watching && html`<div class="card"><h2>Command status</h2><${Lifecycle} command=${watching} /></div>`}
      </div>`}
    </div>
    <${Chart} vehicleId=${id} fields=${numeric} />
    <div class="grid2">
      <${Trips} vehicleId=${id} config=${config} />
      <div class="card">
        <h2>Presence</h2>
        ${presence ? html`<ul class="events">${presence.items.map((e, i) => html`<li key=${i}>
          <span class=${e.connected ? 'ok' : 'muted'}>${e.connected ? 'online' : `offline${e.reason ? ` (${e.reason})` : ''}`}</span> ${when(e.ts)}</li>`)}
          ${presence.items.length === 0 && html`<li>No connection events yet.</li>`}</ul>` : html`<p>Loading…</p>`}
      </div>
    </div>
    <div class="grid2">
      <div class="card">
        <h2>Recent alerts</h2>
        <ul class="events">${alerts.map((a) => html`<li key=${a.id}><span class=${`sev sev-${a.severity}`}>${a.severity}</span> ${a.rule}: ${a.message} <small>${a.state} · ${when(a.raised_at)}</small></li>`)}
          ${alerts.length === 0 && html`<li>None.</li>`}</ul>
      </div>
      <div class="card">
        <h2>Recent commands</h2>
        <ul class="events">${commands.map((c) => html`<li key=${c.id}><b>${c.name}</b> <span class=${`badge cmd-${c.state}`}>${c.state}</span> <small>${when(c.created_at)} by ${c.requested_by}</small></li>`)}
          ${commands.length === 0 && html`<li>None.</li>`}</ul>
      </div>
    </div>
  </section>`;
}
