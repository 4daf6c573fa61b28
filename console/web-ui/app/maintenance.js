// Maintenance: which vehicles are due (overdue first), record a service, and the schedules.
import { html, useEffect, useState, num, when, ErrorNote } from './ui.js';
import { api, get, query, vid } from './api.js';

// Due points move with the vehicles' meters and the clock, so the open page re-reads them.
const REFRESH_MS = 10_000;

const STATUS_LABELS = { overdue: 'Overdue', due_soon: 'Due soon', ok: 'OK' };

function left(row) {
  const parts = [];
  if (row.remaining_km !== undefined) parts.push(`${num(row.remaining_km, 0)} km`);
  if (row.remaining_engine_hours !== undefined) parts.push(`${num(row.remaining_engine_hours, 1)} engine h`);
  if (row.remaining_days !== undefined) parts.push(`${num(row.remaining_days, 1)} days`);
  return parts.join(' · ');
}

export function MaintenancePage({ session }) {
  const [status, setStatus] = useState('due');
  const [rows, setRows] = useState(null);
  const [schedules, setSchedules] = useState([]);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const canWrite = session.permissions.includes('maintenance:write');

  async function load() {
    try {
      setRows((await get(`/api/v1/maintenance/due${query({ status: status === 'all' ? undefined : status, limit: 500 })}`)).items);
      setSchedules((await get('/api/v1/maintenance/schedules?limit=200')).items);
      setError(null);
    } catch (err) { setError(err); }
  }
  useEffect(() => {
    load();
    const timer = setInterval(load, REFRESH_MS);
    return () => clearInterval(timer);
  }, [status]);

  async function record(row) {
    const note = window.prompt(`Service "${row.schedule_id}" done on ${row.vehicle_id}. Note (optional):`, '');
    if (note === null) return;
    try {
      const { data } = await api(`/api/v1/vehicles/${vid(row.vehicle_id)}/services`, {
        method: 'POST', body: note ? { schedule: row.schedule_id, note } : { schedule: row.schedule_id },
      });
      setDone(data);
      load();
    } catch (err) { setError(err); }
  }

  return html`<section class="maintenance-page">
    <header class="page-head"><h1>Maintenance</h1>
      <label>Show <select value=${status} onChange=${(e) => setStatus(e.target.value)} aria-label="Which vehicles">
        <option value="due">Due (overdue and due soon)</option><option value="overdue">Overdue</option>
        <option value="due_soon">Due soon</option><option value="all">All</option></select></label>
    </header>
    <${ErrorNote} error=${error} />
    ${done && html`<p class="note" role="status">Service recorded for ${done.vehicle_id} at ${num(done.odometer_km, 1, ' km')}; the next interval starts now.</p>`}
    ${rows === null ? html`<p>Loading…</p>` : rows.length === 0 ? html`<p class="empty">No vehicle is due.</p>` : html`
    <table class="maintenance-due">
      <thead><tr><th>Status</th><th>Vehicle</th><th>Schedule</th><th>Odometer</th><th>Engine hours</th><th>Left</th><th>Due at</th>${canWrite && html`<th></th>`}</tr></thead>
      <tbody>${rows.map((r) => html`<tr key=${`${r.vehicle_id}/${r.schedule_id}`} class=${`due-${r.status}`}>
        <td>${STATUS_LABELS[r.status] || r.status}</td>
        <td><a href=${`#/vehicle/${vid(r.vehicle_id)}`}>${r.vehicle_id}</a></td>
        <td>${r.schedule_id}</td>
        <td>${num(r.odometer_km, 1, ' km')}</td>
        <td>${num(r.engine_hours, 1, ' h')}</td>
        <td>${left(r)}</td>
        <td>${r.next_due_at ? when(r.next_due_at) : ''}</td>
        ${canWrite && html`<td><button onClick=${() => record(r)}>Record service…</button></td>`}
      </tr>`)}</tbody>
    </table>`}
    <h2>Schedules</h2>
    <ul class="schedules">${schedules.map((s) => html`<li key=${s.id}><strong>${s.schedule.name}</strong> (${s.id}):
      ${[s.schedule.every_km && `every ${num(s.schedule.every_km)} km`, s.schedule.every_engine_hours && `every ${num(s.schedule.every_engine_hours)} engine h`,
         s.schedule.every_days && `every ${num(s.schedule.every_days)} days`].filter(Boolean).join(' or ')}
      ${s.schedule.selector && s.schedule.selector.fleet ? ` · fleet ${s.schedule.selector.fleet}` : ''}</li>`)}</ul>
  </section>`;
}
