// The alert inbox: open alerts live, grouped by severity, with acknowledge and clear for roles
// that may, and an optional sound for critical ones (WebAudio: no sound file to fetch).
import {
  html, useEffect, useState, when, SEVERITIES, ErrorNote,
} from './ui.js';
import { api, get, query } from './api.js';
import { fleet } from './fleet.js';

let audio = null;
function beep() {
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.2, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.6);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.6);
  } catch (e) { /* no audio device */ }
}

export function AlertInbox({ session }) {
  const [alerts, setAlerts] = useState(null);
  const [error, setError] = useState(null);
  const [notes, setNotes] = useState({});
  const [sound, setSound] = useState(localStorage.getItem('fleethub.sound') === 'on');
  const canAck = session.permissions.includes('alerts:ack');

  async function load() {
    try { setAlerts((await get(`/api/v1/alerts${query({ state: 'open', limit: 1000 })}`)).items); setError(null); } catch (err) { setError(err); }
  }
  useEffect(() => {
    load();
    const offAlerts = fleet.on('alerts', (events) => {
      setAlerts((current) => {
        const byId = new Map((current || []).map((a) => [a.id, a]));
        for (const e of events) {
          if (e.state === 'cleared') byId.delete(e.id); else byId.set(e.id, e);
        }
        return [...byId.values()].sort((a, b) => (a.raised_at < b.raised_at ? 1 : -1));
      });
    });
    const offResync = fleet.on('resync', load);
    return () => { offAlerts(); offResync(); };
  }, []);
  useEffect(() => {
    if (!sound) return undefined;
    return fleet.on('alerts', (events) => {
      if (events.some((e) => e.event === 'raised' && e.severity === 'critical')) beep();
    });
  }, [sound]);

  function toggleSound(e) {
    setSound(e.target.checked);
    localStorage.setItem('fleethub.sound', e.target.checked ? 'on' : 'off');
    if (e.target.checked) beep();
  }

  async function act(alert, action) {
    try {
      const { data } = await api(`/api/v1/alerts/${encodeURIComponent(alert.id)}/${action}`, {
        method: 'POST', body: { note: notes[alert.id] || undefined },
      });
      setAlerts((list) => (data.state === 'cleared' ? list.filter((a) => a.id !== data.id) : list.map((a) => (a.id === data.id ? data : a))));
      setError(null);
    } catch (err) { setError(err); load(); }
  }

  const groups = SEVERITIES.map((s) => [s, (alerts || []).filter((a) => a.severity === s)]);
  return html`<section class="alerts-page">
    <header class="page-head">
      <h1>Alerts</h1>
      <span>${alerts ? `${alerts.length} open` : 'Loading…'}</span>
      <label class="inline"><input type="checkbox" checked=${sound} onChange=${toggleSound} /> Sound for critical alerts</label>
    </header>
    <${ErrorNote} error=${error} />
    ${groups.filter(([, list]) => list.length).map(([severity, list]) => html`<div class="card" key=${severity}>
      <h2><span class=${`sev sev-${severity}`}>${severity}</span> ${list.length}</h2>
      <ul class="alert-list">${list.map((a) => html`<li key=${a.id} class=${`alert state-${a.state}`} data-alert=${a.id}>
        <div>
          <b>${a.rule}</b> on <a href=${`#/vehicle/${encodeURIComponent(a.vehicle_id)}`}>${a.vehicle_id}</a>
          <span class="badge">${a.state}</span>
          <p>${a.message}</p>
          <small>raised ${when(a.raised_at)}${a.acknowledged_by ? ` · acknowledged by ${a.acknowledged_by}${a.note ? `: ${a.note}` : ''}` : ''}</small>
        </div>
        ${canAck && html`<div class="alert-actions">
          <label class="sr-only" for=${`note-${a.id}`}>Note</label>
          <input id=${`note-${a.id}`} placeholder="note" value=${notes[a.id] || ''} onInput=${(e) => setNotes({ ...notes, [a.id]: e.target.value })} />
          ${a.state === 'active' && html`<button type="button" class="primary" onClick=${() => act(a, 'ack')}>Acknowledge</button>`}
          <button type="button" onClick=${() => act(a, 'clear')}>Clear</button>
        </div>`}
      </li>`)}</ul>
    </div>`)}
    ${alerts && alerts.length === 0 && html`<p class="card ok">No open alerts.</p>`}
  </section>`;
}
