// Rules: list, edit with validation messages placed at their line and column, and a backtest
// over one vehicle's stored history.
import {
  html, useEffect, useRef, useState, when, ErrorNote, Confirm,
} from './ui.js';
import { api, get } from './api.js';

const EMPTY = {
  name: '', when: '', clear_when: '', for: '', clear_for: '', cooldown: '', severity: 'warning', message: '', enabled: true, selector: '',
};
const TEXT_FIELDS = ['when', 'clear_when', 'message'];

function toForm(rule) {
  return {
    ...EMPTY,
    ...rule,
    clear_when: rule.clear_when || '',
    for: rule.for || '',
    clear_for: rule.clear_for || '',
    cooldown: rule.cooldown || '',
    selector: rule.selector ? JSON.stringify(rule.selector) : '',
  };
}

function toBody(form) {
  const body = { when: form.when, severity: form.severity, enabled: form.enabled };
  for (const k of ['clear_when', 'for', 'clear_for', 'cooldown', 'message']) if (form[k]) body[k] = form[k];
  if (form.selector) body.selector = JSON.parse(form.selector);
  return body;
}

function offset(text, line, column) {
  const lines = text.split('\n');
  let at = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length); i += 1) at += lines[i].length + 1;
  return at + Math.max(0, column - 1);
}

// The field's text with the problem marked where it is, and the caret moved there.
function Problem({ problem, text }) {
  const lines = (text || '').split('\n');
  const line = problem.line ? lines[problem.line - 1] || '' : null;
  return html`<div class="problem" role="alert" data-field=${problem.field} data-line=${problem.line} data-column=${problem.column}>
    <p><b>${problem.field}</b>${problem.line ? ` line ${problem.line}, column ${problem.column}` : ''}: ${problem.message}</p>
    ${line !== null && html`<pre>${`${line}\n${' '.repeat(Math.max(0, (problem.column || 1) - 1))}^`}</pre>`}
  </div>`;
}

export function RulesPage({ session }) {
  const [rules, setRules] = useState([]);
  const [form, setForm] = useState(null);
  const [isNew, setIsNew] = useState(false);
  const [problems, setProblems] = useState([]);
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(null);
  const [confirm, setConfirm] = useState(false);
  const [test, setTest] = useState({ vehicle_id: '', hours: '24' });
  const [result, setResult] = useState(null);
  const refs = { when: useRef(null), clear_when: useRef(null), message: useRef(null) };
  const canWrite = session.permissions.includes('rules:write');

  async function load() {
    try { setRules((await get('/api/v1/rules')).items); } catch (err) { setError(err); }
  }
  useEffect(() => { load(); }, []);

  function open(rule) {
    setForm(toForm(rule)); setIsNew(false); setProblems([]); setResult(null); setSaved(null); setError(null);
  }
  function fresh() {
    setForm({ ...EMPTY }); setIsNew(true); setProblems([]); setResult(null); setSaved(null); setError(null);
  }
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.type === 'checkbox' ? e.target.checked : e.target.value });

  function place(list) {
    setProblems(list);
    const first = list.find((p) => TEXT_FIELDS.includes(p.field) && p.line);
    if (first && refs[first.field].current) {
      const el = refs[first.field].current;
      const at = offset(form[first.field], first.line, first.column);
      el.focus();
      el.setSelectionRange(at, at + 1);
    }
  }

  async function validate() {
    setError(null);
    let body;
    try { body = { name: form.name || 'draft', ...toBody(form) }; } catch (err) { setError(new Error('selector must be JSON, e.g. {"fleet": "default"}')); return false; }
    const { data } = await api('/api/v1/rules/validate', { method: 'POST', body });
    place(data.errors);
    return data.valid;
  }

  async function save(e) {
    e.preventDefault();
    setSaved(null);
    try {
      if (!(await validate())) return;
      await api(`/api/v1/rules/${encodeURIComponent(form.name)}`, { method: 'PUT', body: toBody(form) });
      setSaved(`Saved ${form.name}.`);
      setIsNew(false);
      load();
    } catch (err) {
      if (err.problem && err.problem.errors) place(err.problem.errors); else setError(err);
    }
  }

  async function remove() {
    setConfirm(false);
    try { await api(`/api/v1/rules/${encodeURIComponent(form.name)}`, { method: 'DELETE' }); setForm(null); load(); } catch (err) { setError(err); }
  }

  async function backtest(e) {
    e.preventDefault();
    setResult(null);
    try {
      const from = new Date(Date.now() - Number(test.hours) * 3600 * 1000).toISOString();
      const { data } = await api(`/api/v1/rules/${encodeURIComponent(form.name || 'draft')}/test`, {
        method: 'POST', body: { vehicle_id: test.vehicle_id, from, rule: toBody(form) },
      });
      setResult(data);
    } catch (err) {
      if (err.problem && err.problem.errors) place(err.problem.errors); else setError(err);
    }
  }

  const problemsOf = (field) => problems.filter((p) => p.field === field);
  const other = problems.filter((p) => !['name', 'when', 'clear_when', 'message', 'for', 'clear_for', 'cooldown', 'selector'].includes(p.field));
  const textField = (key, label, rows = 2) => html`<label class="block">${label}
    <textarea ref=${refs[key]} rows=${rows} value=${form[key]} onInput=${set(key)} readOnly=${!canWrite} name=${key}
      aria-invalid=${problemsOf(key).length > 0} spellcheck="false"></textarea></label>
    ${problemsOf(key).map((p, i) => html`<${Problem} key=${i} problem=${p} text=${form[key]} />`)}`;

  return html`<section class="rules-page">
    <header class="page-head"><h1>Rules</h1>${canWrite && html`<button type="button" onClick=${fresh}>New rule</button>`}<a href="#/map">Zones are on the map</a></header>
    <div class="split">
      <ul class="card rule-list">
        ${rules.map((r) => html`<li key=${r.name}><button type="button" class=${form && form.name === r.name && !isNew ? 'selected' : ''} onClick=${() => open(r)}>
          ${r.name} <small class=${`sev sev-${r.severity || 'warning'}`}>${r.severity || 'warning'}</small>${r.enabled === false ? html` <small>(off)</small>` : ''}</button></li>`)}
        ${rules.length === 0 && html`<li>No rules yet.</li>`}
      </ul>
      ${form && html`<div>
        <form class="card rule-form" onSubmit=${save}>
          <label class="block">Name <input value=${form.name} onInput=${set('name')} readOnly=${!isNew} required name="name" /></label>
          ${textField('when', 'When (condition)', 3)}
          ${textField('clear_when', 'Clear when (optional)', 2)}
          <div class="row">
            <label>For <input value=${form.for} onInput=${set('for')} placeholder="30s" readOnly=${!canWrite} /></label>
            <label>Clear for <input value=${form.clear_for} onInput=${set('clear_for')} placeholder="1m" readOnly=${!canWrite} /></label>
            <label>Cooldown <input value=${form.cooldown} onInput=${set('cooldown')} placeholder="10m" readOnly=${!canWrite} /></label>
            <label>Severity <select value=${form.severity} onChange=${set('severity')} disabled=${!canWrite}>
              ${['critical', 'major', 'minor', 'warning', 'info'].map((s) => html`<option key=${s} value=${s}>${s}</option>`)}</select></label>
            <label class="inline"><input type="checkbox" checked=${form.enabled} onChange=${set('enabled')} disabled=${!canWrite} /> enabled</label>
          </div>
          ${textField('message', 'Message', 1)}
          <label class="block">Selector (JSON, optional) <input value=${form.selector} onInput=${set('selector')} placeholder='{"fleet": "default"}' readOnly=${!canWrite} /></label>
          ${['name', 'for', 'clear_for', 'cooldown', 'selector'].flatMap((f) => problemsOf(f)).concat(other).map((p, i) => html`<${Problem} key=${`o${i}`} problem=${p} text="" />`)}
          <p class="row">
            <button type="button" onClick=${() => validate().catch(setError)}>Check</button>
            ${canWrite && html`<button type="submit" class="primary">Save rule</button>`}
            ${canWrite && !isNew && html`<button type="button" class="danger" onClick=${() => setConfirm(true)}>Delete</button>`}
            ${problems.length === 0 && saved && html`<span class="ok">${saved}</span>`}
          </p>
          <${ErrorNote} error=${error} />
        </form>
        <form class="card" onSubmit=${backtest} aria-label="Backtest">
          <h2>Backtest</h2>
          <p class="row">
            <label>Vehicle <input required value=${test.vehicle_id} onInput=${(e) => setTest({ ...test, vehicle_id: e.target.value })} placeholder="veh-0001" /></label>
            <label>Over the last <select value=${test.hours} onChange=${(e) => setTest({ ...test, hours: e.target.value })}>
              <option value="1">hour</option><option value="24">day</option><option value="168">week</option></select></label>
            <button type="submit">Replay history</button>
          </p>
          ${result && html`<p>${result.rows} rows replayed${result.truncated ? ' (stopped at the limit)' : ''}: ${result.events.length} events.</p>
            <ul class="events">${result.events.map((ev, i) => html`<li key=${i}><span class="badge">${ev.event}</span> ${when(ev.ts)} ${ev.message}</li>`)}</ul>`}
        </form>
      </div>`}
    </div>
    ${confirm && html`<${Confirm} title=${`Delete rule ${form.name}?`} danger confirmLabel="Delete" onConfirm=${remove} onCancel=${() => setConfirm(false)}>
      <p>Its open alerts are cleared.</p></${Confirm}>`}
  </section>`;
}
