// Fleet jobs: create (with a confirm step), watch progress, pause, resume, cancel.
import {
  html, useEffect, useState, when, ErrorNote, Confirm, useInterval,
} from './ui.js';
import { api, get, query } from './api.js';
import { fleet } from './fleet.js';

const ACTIVE = new Set(['running', 'paused']);

function ProgressBar({ progress }) {
  const { total, finished, dispatched } = progress;
  const pct = (n) => (total ? Math.round((100 * n) / total) : 0);
  return html`<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax=${total} aria-valuenow=${finished}
    aria-label=${`${finished} of ${total} finished`}>
    <span class="done" style=${`width:${pct(finished)}%`}></span><span class="sent" style=${`width:${pct(dispatched - finished)}%`}></span>
  </div>
  <small>${finished} finished, ${dispatched} sent, ${total} vehicles · ${Object.entries(progress.states).map(([s, n]) => `${s} ${n}`).join(', ')}</small>`;
}

export function JobsPage({ session }) {
  const [jobs, setJobs] = useState(null);
  const [error, setError] = useState(null);
  const [form, setForm] = useState({
    fleet: '', tags: '', filter: '', vehicle_ids: '', name: 'locate', args: '{}', rate: '5', ttl_s: '3600',
  });
  const [confirm, setConfirm] = useState(null);
  const canSend = session.permissions.includes('commands:send');

  async function load() {
    try { setJobs((await get(`/api/v1/commands/jobs${query({ limit: 50 })}`)).items); setError(null); } catch (err) { setError(err); }
  }
  useEffect(() => { load(); }, []);
  useInterval(() => { if (jobs && jobs.some((j) => ACTIVE.has(j.state))) load(); }, 2000);

  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });

  function body() {
    const selector = {};
    if (form.fleet) selector.fleet = form.fleet;
    if (form.filter) selector.filter = form.filter;
    if (form.tags) selector.tags = Object.fromEntries(form.tags.split(',').map((t) => t.split('=').map((s) => s.trim())));
    if (form.vehicle_ids) selector.vehicle_ids = form.vehicle_ids.split(/[\s,]+/).filter(Boolean);
    return {
      selector, name: form.name, args: JSON.parse(form.args || '{}'), rate: Number(form.rate), ttl_s: Number(form.ttl_s) || undefined,
    };
  }

  function ask(e) {
    e.preventDefault();
    try { setConfirm(body()); setError(null); } catch (err) { setError(new Error('Arguments must be a JSON object')); }
  }

  async function create() {
    const sent = confirm;
    setConfirm(null);
    try { await api('/api/v1/commands', { method: 'POST', body: sent }); load(); } catch (err) { setError(err); }
  }

  async function control(job, action) {
    try { await api(`/api/v1/commands/jobs/${encodeURIComponent(job.id)}/${action}`, { method: 'POST' }); load(); } catch (err) { setError(err); }
  }

  return html`<section class="jobs-page">
    <header class="page-head"><h1>Fleet jobs</h1></header>
    ${canSend && html`<form class="card" onSubmit=${ask} aria-label="New fleet job">
      <h2>New job</h2>
      <div class="row">
        <label>Fleet <select value=${form.fleet} onChange=${set('fleet')}><option value="">(your fleet)</option>
          ${fleet.fleets.map((f) => html`<option key=${f} value=${f}>${f}</option>`)}</select></label>
        <label>Tags <input value=${form.tags} onInput=${set('tags')} placeholder="depot=north" /></label>
        <label>Filter <input value=${form.filter} onInput=${set('filter')} placeholder="soc > 20" /></label>
        <label>Vehicles <input value=${form.vehicle_ids} onInput=${set('vehicle_ids')} placeholder="veh-0001, veh-0002" /></label>
      </div>
      <div class="row">
        <label>Command <input value=${form.name} onInput=${set('name')} required /></label>
        <label>Arguments (JSON) <input value=${form.args} onInput=${set('args')} /></label>
        <label>Vehicles per second <input type="number" min="0.01" step="any" value=${form.rate} onInput=${set('rate')} required /></label>
        <label>Expires after (s) <input type="number" min="1" value=${form.ttl_s} onInput=${set('ttl_s')} /></label>
        <button type="submit" class="primary">Create…</button>
      </div>
    </form>`}
    <${ErrorNote} error=${error} />
    ${jobs && jobs.map((job) => html`<div class="card job" key=${job.id}>
      <h2>${job.name} <span class=${`badge job-${job.state}`}>${job.state}</span> <small>${when(job.created_at)} by ${job.requested_by}</small></h2>
      <${ProgressBar} progress=${job.progress} />
      ${canSend && html`<p class="row">
        ${job.state === 'running' && html`<button type="button" onClick=${() => control(job, 'pause')}>Pause</button>`}
        ${job.state === 'paused' && html`<button type="button" onClick=${() => control(job, 'resume')}>Resume</button>`}
        ${ACTIVE.has(job.state) && html`<button type="button" class="danger" onClick=${() => control(job, 'cancel')}>Cancel</button>`}
      </p>`}
    </div>`)}
    ${jobs && jobs.length === 0 && html`<p class="card">No jobs yet.</p>`}
    ${confirm && html`<${Confirm} title=${`Send "${confirm.name}" to a fleet?`} confirmLabel="Create job" onConfirm=${create} onCancel=${() => setConfirm(null)}>
      <p>Selector <code>${JSON.stringify(confirm.selector)}</code>, ${confirm.rate} vehicles per second.</p></${Confirm}>`}
  </section>`;
}
