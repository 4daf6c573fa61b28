// Preact with htm: components written as tagged templates, no build step.
import {
  html, render, h, Component, useState, useEffect, useRef, useMemo, useCallback, useReducer,
} from '../vendor/htm/preact-standalone.module.js';

export {
  html, render, h, Component, useState, useEffect, useRef, useMemo, useCallback, useReducer,
};

export const SEVERITIES = ['critical', 'major', 'minor', 'warning', 'info'];
export const STATES = ['moving', 'parked', 'charging', 'offline', 'alarm'];
export const STATE_LABELS = {
  moving: 'Moving', parked: 'Parked', charging: 'Charging', offline: 'Offline', alarm: 'In alarm',
};

export function parseTime(value) {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value === 'number') return value;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms / 1000;
}

export function age(ts, now = Date.now() / 1000) {
  const t = parseTime(ts);
  if (t === null) return '–';
  const s = Math.max(0, now - t);
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

export function when(ts) {
  const t = parseTime(ts);
  if (t === null) return '–';
  return new Date(t * 1000).toLocaleString();
}

export function num(value, digits = 0, unit = '') {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  return `${Number(value).toFixed(digits)}${unit}`;
}

export function json(value) {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

// Nested objects as [dotted path, value] leaves (arrays are leaves).
export function flatten(obj, prefix = '', out = []) {
  for (const [k, v] of Object.entries(obj || {})) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length) flatten(v, path, out);
    else out.push([path, v]);
  }
  return out;
}

export function lookup(obj, path) {
  let cur = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = cur[part];
  }
  return cur;
}

// {"a.b": 1} -> {"a": {"b": 1}}: the shape of a desired patch.
export function nest(path, value) {
  const parts = path.split('.');
  const root = {};
  let cur = root;
  parts.slice(0, -1).forEach((p) => { cur[p] = {}; cur = cur[p]; });
  cur[parts[parts.length - 1]] = value;
  return root;
}

export function useInterval(fn, ms) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    const id = setInterval(() => saved.current(), ms);
    return () => clearInterval(id);
  }, [ms]);
}

export function ErrorNote({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message || String(error)}</p>`;
}

// A modal confirm step, focus kept inside it; Escape cancels.
export function Confirm({ title, children, confirmLabel = 'Confirm', danger = false, onConfirm, onCancel }) {
  const ref = useRef(null);
  useEffect(() => {
    const first = ref.current && ref.current.querySelector('button.primary');
    if (first) first.focus();
    const onKey = (e) => { if (e.key === 'Escape') onCancel(); };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, []);
  return html`<div class="modal-backdrop">
    <div class="modal" role="dialog" aria-modal="true" aria-labelledby="confirm-title" ref=${ref}>
      <h2 id="confirm-title">${title}</h2>
      <div>${children}</div>
      <div class="actions">
        <button type="button" onClick=${onCancel}>Cancel</button>
        <button type="button" class=${danger ? 'primary danger' : 'primary'} onClick=${onConfirm}>${confirmLabel}</button>
      </div>
    </div>
  </div>`;
}
