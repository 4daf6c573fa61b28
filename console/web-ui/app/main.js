// The console's shell: configuration and login, navigation by URL hash, the live connection.
import { html, render, useEffect, useState, ErrorNote } from './ui.js';
import { api, get, setCsrfToken, setUnauthorizedHandler } from './api.js';
import { fleet, startLive, stopLive } from './fleet.js';
import { MapView } from './map.js';
import { ListView } from './list.js';
import { VehiclePage } from './vehicle.js';
import { AlertInbox } from './alerts.js';
import { RulesPage } from './rules.js';
import { JobsPage } from './jobs.js';
import { MaintenancePage } from './maintenance.js';
import { AuditPage, UsersPage } from './admin.js';

function parseRoute() {
  const raw = window.location.hash.replace(/^#\/?/, '') || 'map';
  const [path, search = ''] = raw.split('?');
  const parts = path.split('/').map(decodeURIComponent);
  return { name: parts[0], arg: parts[1], params: Object.fromEntries(new URLSearchParams(search)) };
}

const NAV = [
  { name: 'map', label: 'Map', perm: 'twins:read' },
  { name: 'list', label: 'Vehicles', perm: 'twins:read' },
  { name: 'alerts', label: 'Alerts', perm: 'alerts:read' },
  { name: 'rules', label: 'Rules', perm: 'rules:read' },
  { name: 'jobs', label: 'Jobs', perm: 'commands:read' },
  { name: 'maintenance', label: 'Maintenance', perm: 'maintenance:read' },
  { name: 'audit', label: 'Audit', perm: 'audit:read' },
  { name: 'users', label: 'Users & tokens', perm: 'tokens:own' },
];

function Login({ onLogin }) {
  const [mode, setMode] = useState('password');
  const [form, setForm] = useState({ username: '', password: '', token: '' });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(e) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = mode === 'token' ? { token: form.token } : { username: form.username, password: form.password };
      const { data } = await api('/api/v1/session', { method: 'POST', body });
      onLogin(data);
    } catch (err) { setError(err); } finally { setBusy(false); }
  }
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });
  return html`<main class="login">
    <form class="card" onSubmit=${submit} aria-labelledby="login-title">
      <h1 id="login-title">fleethub console</h1>
      <p role="tablist" class="row">
        <button type="button" role="tab" aria-selected=${mode === 'password'} class=${mode === 'password' ? 'selected' : ''} onClick=${() => setMode('password')}>User and password</button>
        <button type="button" role="tab" aria-selected=${mode === 'token'} class=${mode === 'token' ? 'selected' : ''} onClick=${() => setMode('token')}>API token</button>
      </p>
      ${mode === 'password' ? html`
        <label class="block">User name <input name="username" autocomplete="username" required value=${form.username} onInput=${set('username')} /></label>
        <label class="block">Password <input name="password" type="password" autocomplete="current-password" required value=${form.password} onInput=${set('password')} /></label>` : html`
        <label class="block">API token <input name="token" type="password" autocomplete="off" required value=${form.token} onInput=${set('token')} placeholder="fh_…" /></label>`}
      <button type="submit" class="primary" disabled=${busy}>Log in</button>
      <${ErrorNote} error=${error} />
      <p class="hint">The session is kept in an HttpOnly cookie; your password or token is not stored in the browser.</p>
    </form>
  </main>`;
}

function LiveStatus() {
  const [status, setStatus] = useState(fleet.status);
  useEffect(() => fleet.on('status', setStatus), []);
  const label = { live: 'live', reconnecting: 'reconnecting…', offline: 'offline', connecting: 'connecting…' }[status] || status;
  return html`<span class=${`live live-${status}`} role="status" title="Live updates">● ${label}</span>`;
}

function Shell({ config, session, onLogout }) {
  const [route, setRoute] = useState(parseRoute());
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState(null);
  const [menu, setMenu] = useState(false);
  useEffect(() => {
    const onHash = () => { setRoute(parseRoute()); setMenu(false); };
    window.addEventListener('hashchange', onHash);
    fleet.load().then(() => setLoaded(true)).catch(setError);
    startLive();
    return () => { window.removeEventListener('hashchange', onHash); stopLive(); };
  }, []);
  const can = (perm) => session.permissions.includes(perm);
  const nav = NAV.filter((n) => can(n.perm));
  let page;
  if (!loaded && !error) page = html`<p class="boot">Loading the fleet…</p>`;
  else if (route.name === 'list') page = html`<${ListView} />`;
  else if (route.name === 'vehicle' && route.arg) page = html`<${VehiclePage} key=${route.arg} id=${route.arg} session=${session} config=${config} />`;
  else if (route.name === 'alerts') page = html`<${AlertInbox} session=${session} />`;
  else if (route.name === 'rules') page = html`<${RulesPage} session=${session} />`;
  else if (route.name === 'jobs') page = html`<${JobsPage} session=${session} />`;
  else if (route.name === 'maintenance') page = html`<${MaintenancePage} session=${session} />`;
  else if (route.name === 'audit' && can('audit:read')) page = html`<${AuditPage} />`;
  else if (route.name === 'users') page = html`<${UsersPage} session=${session} />`;
  else page = html`<${MapView} key=${route.params.vehicle || 'map'} config=${config} session=${session} route=${route} />`;
  return html`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <a class="brand" href="#/map">fleethub</a>
      <button type="button" class="menu-toggle" aria-expanded=${menu} aria-controls="nav" onClick=${() => setMenu(!menu)}>Menu</button>
      <nav id="nav" class=${menu ? 'open' : ''} aria-label="Console">
        ${nav.map((n) => html`<a key=${n.name} href=${`#/${n.name}`} aria-current=${route.name === n.name ? 'page' : undefined}>${n.label}</a>`)}
      </nav>
      <${LiveStatus} />
      ${config.auth_enabled
        ? html`<span class="who">${session.user} <small>(${session.role}${session.fleets.includes('*') ? '' : `: ${session.fleets.join(', ')}`})</small></span>
          <button type="button" class="small" onClick=${onLogout}>Log out</button>`
        : html`<span class="devmode" role="note" title="auth.enabled = false">Development mode: no login, every request acts as an admin</span>`}
    </header>
    <main id="main" tabindex="-1">
      <${ErrorNote} error=${error} />
      ${page}
    </main>
  </div>`;
}

function App() {
  const [config, setConfig] = useState(null);
  const [session, setSession] = useState(null);
  const [error, setError] = useState(null);
  async function boot() {
    try {
      const [cfg, sess] = await Promise.all([get('/api/v1/console/config'), get('/api/v1/session')]);
      setCsrfToken(sess.csrf_token);
      setConfig(cfg);
      setSession(sess);
    } catch (err) { setError(err); }
  }
  useEffect(() => {
    boot();
    setUnauthorizedHandler(() => { stopLive(); setSession((s) => (s && s.auth_enabled ? { ...s, authenticated: false } : s)); });
  }, []);
  async function logout() {
    try { await api('/api/v1/session', { method: 'DELETE' }); } catch (e) { /* logged out anyway */ }
    stopLive();
    setCsrfToken(null);
    setSession({ authenticated: false, auth_enabled: true, permissions: [] });
  }
  if (error) return html`<main class="login"><div class="card"><h1>fleethub console</h1><${ErrorNote} error=${error} /></div></main>`;
  if (!config || !session) return html`<p class="boot">Loading the fleethub console…</p>`;
  if (!session.authenticated) {
    return html`<${Login} onLogin=${(s) => { setCsrfToken(s.csrf_token); setSession(s); }} />`;
  }
  return html`<${Shell} config=${config} session=${session} onLogout=${logout} />`;
}

render(html`<${App} />`, document.getElementById('app'));
