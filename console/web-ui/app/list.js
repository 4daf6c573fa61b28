// The vehicle list: sortable, filterable, virtualised. Only the rows in view exist in the DOM;
// a live batch re-renders those rows, and the order is recomputed at most every few seconds.
import {
  html, useEffect, useMemo, useRef, useState, STATES, STATE_LABELS, age, num, parseTime,
} from './ui.js';
import { fleet } from './fleet.js';

const ROW_H = 36;
const OVERSCAN = 8;
const RESORT_MS = 3000;

const COLUMNS = [
  { key: 'id', label: 'Vehicle', cls: 'c-id' },
  { key: 'fleet', label: 'Fleet', cls: 'c-fleet' },
  { key: 'state', label: 'State', cls: 'c-state' },
  { key: 'speed', label: 'Speed', cls: 'c-num' },
  { key: 'soc', label: 'Battery', cls: 'c-num' },
  { key: 'last_seen', label: 'Last seen', cls: 'c-seen' },
  { key: 'alerts', label: 'Alerts', cls: 'c-num' },
];

const SEEN = { '': 0, '5m': 300, '1h': 3600, '1d': 86400 };

function compare(key, dir) {
  return (a, b) => {
    let x = a[key]; let y = b[key];
    if (key === 'last_seen') { x = parseTime(x); y = parseTime(y); }
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    if (x < y) return -dir;
    if (x > y) return dir;
    return a.id < b.id ? -1 : 1;
  };
}

export function ListView() {
  const [filters, setFilters] = useState({
    text: '', fleet: '', state: '', tag: '', socBelow: '', seen: '',
  });
  const [sort, setSort] = useState({ key: 'id', dir: 1 });
  const [version, setVersion] = useState(0);
  const [, setTick] = useState(0);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  const viewport = useRef(null);

  useEffect(() => {
    let last = Date.now();
    let pending = null;
    const offReset = fleet.on('reset', () => setVersion((v) => v + 1));
    const offUpdate = fleet.on('update', () => {
      setTick((t) => t + 1);
      if (sort.key !== 'id' || filters.state || filters.socBelow || filters.seen) {
        const wait = Math.max(0, RESORT_MS - (Date.now() - last));
        if (!pending) pending = setTimeout(() => { pending = null; last = Date.now(); setVersion((v) => v + 1); }, wait);
      }
    });
    const measure = () => viewport.current && setHeight(viewport.current.clientHeight);
    measure();
    window.addEventListener('resize', measure);
    return () => { offReset(); offUpdate(); clearTimeout(pending); window.removeEventListener('resize', measure); };
  }, [sort.key, filters]);

  const visible = useMemo(() => {
    const text = filters.text.trim().toLowerCase();
    const [tagKey, tagValue] = filters.tag.includes('=') ? filters.tag.split('=', 2).map((s) => s.trim()) : [filters.tag.trim(), null];
    const socBelow = filters.socBelow === '' ? null : Number(filters.socBelow);
    const seenS = SEEN[filters.seen] || 0;
    const now = Date.now() / 1000;
    const out = fleet.rows.filter((row) => {
      if (text && !row.id.toLowerCase().includes(text)) return false;
      if (filters.fleet && row.fleet !== filters.fleet) return false;
      if (filters.state && row.state !== filters.state) return false;
      if (tagKey && (tagValue === null ? !(tagKey in (row.tags || {})) : (row.tags || {})[tagKey] !== tagValue)) return false;
      if (socBelow !== null && !(row.soc !== null && row.soc < socBelow)) return false;
      if (seenS && !(row.last_seen !== null && now - parseTime(row.last_seen) > seenS)) return false;
      return true;
    });
    out.sort(compare(sort.key, sort.dir));
    return out;
  }, [version, filters, sort]);

  const set = (key) => (e) => setFilters({ ...filters, [key]: e.target.value });
  const first = Math.max(0, Math.floor(scrollTop / ROW_H) - OVERSCAN);
  const count = Math.ceil(height / ROW_H) + OVERSCAN * 2;
  const slice = visible.slice(first, first + count);
  const now = Date.now() / 1000;

  function sortBy(key) {
    setSort((s) => ({ key, dir: s.key === key ? -s.dir : 1 }));
  }

  return html`<section class="list-page">
    <form class="filters" onSubmit=${(e) => e.preventDefault()} aria-label="Filter vehicles">
      <label>Vehicle <input type="search" value=${filters.text} onInput=${set('text')} placeholder="id contains…" /></label>
      <label>Fleet <select value=${filters.fleet} onChange=${set('fleet')}>
        <option value="">any</option>
        ${fleet.fleets.map((f) => html`<option key=${f} value=${f}>${f}</option>`)}
      </select></label>
      <label>State <select value=${filters.state} onChange=${set('state')}>
        <option value="">any</option>
        ${STATES.map((s) => html`<option key=${s} value=${s}>${STATE_LABELS[s]}</option>`)}
      </select></label>
      <label>Tag <input value=${filters.tag} onInput=${set('tag')} placeholder="depot=north" /></label>
      <label>Battery below <input type="number" min="0" max="100" value=${filters.socBelow} onInput=${set('socBelow')} placeholder="%" /></label>
      <label>Not seen for <select value=${filters.seen} onChange=${set('seen')}>
        <option value="">any</option><option value="5m">5 min</option><option value="1h">1 hour</option><option value="1d">1 day</option>
      </select></label>
      <output aria-live="polite">${visible.length} of ${fleet.rows.length}</output>
    </form>
    <div class="vtable" role="table" aria-rowcount=${visible.length + 1} aria-label="Vehicles">
      <div class="vhead" role="row">
        ${COLUMNS.map((c) => html`<div key=${c.key} role="columnheader" class=${c.cls}
          aria-sort=${sort.key === c.key ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none'}>
          <button type="button" onClick=${() => sortBy(c.key)}>${c.label}${sort.key === c.key ? (sort.dir > 0 ? ' ▲' : ' ▼') : ''}</button>
        </div>`)}
      </div>
      <div class="vbody" ref=${viewport} onScroll=${(e) => setScrollTop(e.target.scrollTop)}>
        <div style=${`height:${visible.length * ROW_H}px;position:relative`}>
          ${slice.map((row, i) => html`<div key=${row.id} role="row" class="vrow" aria-rowindex=${first + i + 2}
            style=${`transform:translateY(${(first + i) * ROW_H}px)`}>
            <div role="cell" class="c-id"><a href=${`#/vehicle/${encodeURIComponent(row.id)}`}>${row.id}</a></div>
            <div role="cell" class="c-fleet">${row.fleet}</div>
            <div role="cell" class="c-state"><span class=${`badge state-${row.state}`}>${STATE_LABELS[row.state]}</span></div>
            <div role="cell" class="c-num">${num(row.speed, 0, ' km/h')}</div>
            <div role="cell" class="c-num">${num(row.soc, 0, ' %')}</div>
            <div role="cell" class="c-seen">${age(row.last_seen, now)}</div>
            <div role="cell" class="c-num">${row.alerts ? html`<span class=${`sev sev-${row.severity}`}>${row.alerts}</span>` : '0'}</div>
          </div>`)}
        </div>
      </div>
    </div>
  </section>`;
}
