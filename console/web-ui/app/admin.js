// Admin pages: the audit log, users and API tokens.
import {
  html, useEffect, useState, when, ErrorNote, Confirm,
} from './ui.js';
import { api, get, query } from './api.js';

export function AuditPage() {
  const [filters, setFilters] = useState({ actor: '', action: '', vehicle: '' });
  const [entries, setEntries] = useState(null);
  const [error, setError] = useState(null);
  async function load(e) {
    if (e) e.preventDefault();
    try { setEntries((await get(`/api/v1/audit${query({ ...filters, limit: 200 })}`)).items); setError(null); } catch (err) { setError(err); }
  }
  useEffect(() => { load(); }, []);
  const set = (key) => (e) => setFilters({ ...filters, [key]: e.target.value });
  return html`<section>
    <header class="page-head"><h1>Audit log</h1></header>
    <form class="filters" onSubmit=${load}>
      <label>Actor <input value=${filters.actor} onInput=${set('actor')} /></label>
      <label>Action <input value=${filters.action} onInput=${set('action')} placeholder="twin.desired" /></label>
      <label>Vehicle <input value=${filters.vehicle} onInput=${set('vehicle')} /></label>
      <button type="submit">Search</button>
    </form>
    <${ErrorNote} error=${error} />
    <div class="card"><table class="kv audit"><thead><tr><th>When</th><th>Actor</th><th>Action</th><th>Vehicle / target</th><th>From</th><th>Detail</th></tr></thead>
      <tbody>${(entries || []).map((e) => html`<tr key=${e.id}><td>${when(e.ts)}</td><td>${e.actor}</td><td><code>${e.action}</code></td>
        <td>${e.vehicle_id || e.target || ''}</td><td>${e.remote}</td><td><code class="detail">${JSON.stringify(e.detail)}</code></td></tr>`)}</tbody></table>
      ${entries && entries.length === 0 && html`<p>No entries.</p>`}</div>
  </section>`;
}

export function UsersPage({ session }) {
  const [users, setUsers] = useState([]);
  const [tokens, setTokens] = useState([]);
  const [error, setError] = useState(null);
  const [form, setForm] = useState({ name: '', role: 'viewer', fleets: '', password: '' });
  const [tokenForm, setTokenForm] = useState({ user: '', label: '', days: '30' });
  const [issued, setIssued] = useState(null);
  const [confirm, setConfirm] = useState(null);
  const isAdmin = session.permissions.includes('users:admin');

  async function load() {
    try {
      if (isAdmin) setUsers((await get('/api/v1/users')).items);
      setTokens((await get(`/api/v1/tokens${query({ user: tokenForm.user || undefined })}`)).items);
      setError(null);
    } catch (err) { setError(err); }
  }
  useEffect(() => { load(); }, [tokenForm.user]);
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });

  async function addUser(e) {
    e.preventDefault();
    try {
      await api('/api/v1/users', {
        method: 'POST',
        body: {
          name: form.name, role: form.role, fleets: form.fleets.split(',').map((s) => s.trim()).filter(Boolean), password: form.password || undefined,
        },
      });
      setForm({ name: '', role: 'viewer', fleets: '', password: '' });
      load();
    } catch (err) { setError(err); }
  }

  async function issue(e) {
    e.preventDefault();
    try {
      const { data } = await api('/api/v1/tokens', {
        method: 'POST', body: { user: tokenForm.user || undefined, label: tokenForm.label, ttl_s: Number(tokenForm.days) * 86400 },
      });
      setIssued(data);
      load();
    } catch (err) { setError(err); }
  }

  async function run(action) {
    setConfirm(null);
    try { await action(); load(); } catch (err) { setError(err); }
  }

  return html`<section>
    <header class="page-head"><h1>${isAdmin ? 'Users and tokens' : 'Your API tokens'}</h1></header>
    <${ErrorNote} error=${error} />
    ${isAdmin && html`<div class="card">
      <h2>Users</h2>
      <table class="kv"><thead><tr><th>Name</th><th>Role</th><th>Fleets</th><th>Password</th><th></th></tr></thead><tbody>
        ${users.map((u) => html`<tr key=${u.name}><td>${u.name}</td><td>${u.role}</td><td>${u.fleets.join(', ')}</td><td>${u.has_password ? 'yes' : 'no'}</td>
          <td><button type="button" class="small" onClick=${() => setTokenForm({ ...tokenForm, user: u.name })}>Tokens</button>
          ${u.name !== session.user && html`<button type="button" class="small danger" onClick=${() => setConfirm({ title: `Delete user ${u.name}?`, action: () => api(`/api/v1/users/${encodeURIComponent(u.name)}`, { method: 'DELETE' }) })}>Delete</button>`}</td></tr>`)}
      </tbody></table>
      <form class="row" onSubmit=${addUser} aria-label="Add a user">
        <label>Name <input required value=${form.name} onInput=${set('name')} /></label>
        <label>Role <select value=${form.role} onChange=${set('role')}>${['viewer', 'maintenance', 'operator', 'admin'].map((r) => html`<option key=${r} value=${r}>${r}</option>`)}</select></label>
        <label>Fleets <input required value=${form.fleets} onInput=${set('fleets')} placeholder="acme, beta (or *)" /></label>
        <label>Password <input type="password" value=${form.password} onInput=${set('password')} autocomplete="new-password" /></label>
        <button type="submit" class="primary">Add user</button>
      </form>
    </div>`}
    <div class="card">
      <h2>API tokens ${tokenForm.user ? `of ${tokenForm.user}` : '(yours)'}</h2>
      <table class="kv"><thead><tr><th>Label</th><th>Created</th><th>Expires</th><th>State</th><th></th></tr></thead><tbody>
        ${tokens.map((t) => html`<tr key=${t.id}><td>${t.label || t.id}</td><td>${when(t.created_at)}</td><td>${when(t.expires_at)}</td>
          <td>${t.revoked_at ? `revoked ${when(t.revoked_at)}` : 'active'}</td>
          <td>${!t.revoked_at && html`<button type="button" class="small danger" onClick=${() => setConfirm({ title: 'Revoke this token?', action: () => api(`/api/v1/tokens/${encodeURIComponent(t.id)}`, { method: 'DELETE' }) })}>Revoke</button>`}</td></tr>`)}
      </tbody></table>
      <form class="row" onSubmit=${issue} aria-label="Issue a token">
        <label>Label <input value=${tokenForm.label} onInput=${(e) => setTokenForm({ ...tokenForm, label: e.target.value })} /></label>
        <label>Valid for (days) <input type="number" min="1" value=${tokenForm.days} onInput=${(e) => setTokenForm({ ...tokenForm, days: e.target.value })} /></label>
        <button type="submit" class="primary">Issue token</button>
        ${tokenForm.user && html`<button type="button" onClick=${() => setTokenForm({ ...tokenForm, user: '' })}>Back to mine</button>`}
      </form>
      ${issued && html`<div class="issued" role="status"><p>Copy this token now; it is not shown again:</p><pre>${issued.token}</pre>
        <button type="button" onClick=${() => setIssued(null)}>Done</button></div>`}
    </div>
    ${confirm && html`<${Confirm} title=${confirm.title} danger onConfirm=${() => run(confirm.action)} onCancel=${() => setConfirm(null)}><p>This cannot be undone.</p></${Confirm}>`}
  </section>`;
}
