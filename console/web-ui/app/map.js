// The fleet map: live vehicles on one canvas layer, search, follow, zones (drawn and edited by admins).
import {
  html, useEffect, useRef, useState, STATES, STATE_LABELS, age, num, ErrorNote, Confirm,
} from './ui.js';
import { api, get } from './api.js';
import { fleet } from './fleet.js';
import {
  L, createMap, VehicleLayer, STATE_COLORS, zoneLayer, zoneEntries,
} from './mapcore.js';

function counts() {
  const out = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const row of fleet.rows) out[row.state] = (out[row.state] || 0) + 1;
  return out;
}

export function MapView({ config, session, route }) {
  const element = useRef(null);
  const mapRef = useRef(null);
  const layerRef = useRef(null);
  const zonesRef = useRef(null);
  const [selected, setSelected] = useState(route.params.vehicle || null);
  const [follow, setFollow] = useState(Boolean(route.params.vehicle));
  const [hidden, setHidden] = useState(new Set());
  const [stateCounts, setStateCounts] = useState(counts());
  const [search, setSearch] = useState('');
  const [matches, setMatches] = useState([]);
  const [zones, setZones] = useState([]);
  const [, setTick] = useState(0);
  const followRef = useRef(follow);
  const selectedRef = useRef(selected);
  followRef.current = follow;
  selectedRef.current = selected;
  const canWriteZones = session.permissions.includes('rules:write');
  const canReadZones = session.permissions.includes('rules:read');

  async function loadZones() {
    if (!canReadZones) return;
    try { setZones(zoneEntries(await get('/api/v1/zones'))); } catch (e) { setZones([]); }
  }

  useEffect(() => {
    const map = createMap(element.current, config);
    mapRef.current = map;
    const layer = new VehicleLayer();
    layerRef.current = layer;
    layer.addTo(map);
    zonesRef.current = L.layerGroup().addTo(map);
    // The view follows the whole fleet (vehicles appearing later included) until the user moves the map.
    let interacted = false;
    let fitting = false;
    const fit = () => {
      const pts = fleet.rows.filter((r) => r.lat !== null).map((r) => [r.lat, r.lon]);
      fitting = true;
      if (pts.length) map.fitBounds(L.latLngBounds(pts).pad(0.1), { maxZoom: 14, animate: false });
      else map.setView([20, 0], 2, { animate: false });
      fitting = false;
    };
    map.on('dragstart zoomstart', () => { if (!fitting) interacted = true; });
    const focus = () => {
      const row = fleet.byId.get(selectedRef.current);
      if (row && row.lat !== null) map.setView([row.lat, row.lon], Math.max(map.getZoom(), 15));
    };
    if (selectedRef.current && fleet.byId.get(selectedRef.current)) focus(); else fit();
    map.on('click', (e) => {
      if (drawing.current) return;
      const hit = layer.hitTest(e.containerPoint);
      if (!hit) { setSelected(null); setFollow(false); layer.selected = null; layer.redraw(); return; }
      if (hit.cluster) {
        map.fitBounds(L.latLngBounds(hit.cluster.rows.map((r) => [r.lat, r.lon])).pad(0.2), { maxZoom: map.getZoom() + 3 });
        return;
      }
      setSelected(hit.row.id);
      layer.selected = hit.row.id;
      layer.redraw();
    });
    let countTimer = null;
    const offReset = fleet.on('reset', () => {
      if (!interacted && !selectedRef.current) fit();
      layer.redraw();
      setStateCounts(counts());
    });
    const offUpdate = fleet.on('update', (ids) => {
      layer.redraw();
      if (followRef.current && selectedRef.current && ids.includes(selectedRef.current)) {
        const row = fleet.byId.get(selectedRef.current);
        if (row && row.lat !== null) map.panTo([row.lat, row.lon], { animate: true, duration: 0.5 });
      }
      setTick((t) => t + 1);
      if (!countTimer) countTimer = setTimeout(() => { countTimer = null; setStateCounts(counts()); }, 1000);
    });
    layer.selected = selectedRef.current;
    loadZones();
    return () => { offReset(); offUpdate(); clearTimeout(countTimer); map.remove(); };
  }, []);

  useEffect(() => {
    const layer = layerRef.current;
    if (!layer) return;
    layer.filter = (row) => !hidden.has(row.state);
    layer.redraw();
  }, [hidden]);

  useEffect(() => {
    const group = zonesRef.current;
    if (!group) return;
    group.clearLayers();
    for (const [name, zone] of zones) {
      if (editing && editing.name === name) continue;
      zoneLayer(name, zone).addTo(group);
    }
  }, [zones]);

  function goTo(id) {
    const row = fleet.byId.get(id);
    if (!row) return;
    setSelected(id);
    layerRef.current.selected = id;
    layerRef.current.redraw();
    if (row.lat !== null) mapRef.current.setView([row.lat, row.lon], Math.max(mapRef.current.getZoom(), 15));
  }

  function onSearch(e) {
    const q = e.target.value.trim();
    setSearch(e.target.value);
    if (!q) { setMatches([]); return; }
    const needle = q.toLowerCase();
    const found = [];
    for (const row of fleet.rows) {
      if (row.id.toLowerCase().includes(needle)) { found.push(row.id); if (found.length >= 8) break; }
    }
    setMatches(found);
  }

  function onSearchKey(e) {
    if (e.key === 'Enter' && matches.length) { goTo(matches[0]); setMatches([]); }
  }

  function toggleState(state) {
    const next = new Set(hidden);
    if (next.has(state)) next.delete(state); else next.add(state);
    setHidden(next);
  }

  // -- zone drawing and editing (rules:write) ------------------------------------------
  const drawing = useRef(null);
  const [draft, setDraft] = useState(null);
  const [editing, setEditing] = useState(null);
  const [zoneError, setZoneError] = useState(null);
  const [confirmDelete, setConfirmDelete] = useState(null);
  const draftLayer = useRef(null);

  function clearDraftLayer() {
    if (draftLayer.current) { draftLayer.current.remove(); draftLayer.current = null; }
  }

  function showDraft(shape) {
    clearDraftLayer();
    const map = mapRef.current;
    const group = L.layerGroup().addTo(map);
    draftLayer.current = group;
    const style = { color: '#f0b400', weight: 3, dashArray: '6 4', fillOpacity: 0.12 };
    if (shape.kind === 'circle' && shape.lat !== undefined) {
      const circle = L.circle([shape.lat, shape.lon], { radius: shape.radius_m || 1, ...style }).addTo(group);
      const centre = L.marker([shape.lat, shape.lon], {
        draggable: true, keyboard: true, title: 'Zone centre (drag to move)',
        icon: L.divIcon({ className: 'vertex', iconSize: [14, 14] }),
      }).addTo(group);
      centre.on('drag', (ev) => circle.setLatLng(ev.target.getLatLng()));
      centre.on('dragend', (ev) => {
        const p = ev.target.getLatLng();
        setDraft((d) => ({ ...d, shape: { ...d.shape, lat: p.lat, lon: p.lng } }));
      });
    } else if (shape.kind === 'polygon' && shape.vertices.length) {
      const latlngs = shape.vertices.map((v) => [v.lat, v.lon]);
      const poly = (shape.vertices.length >= 3 ? L.polygon(latlngs, style) : L.polyline(latlngs, style)).addTo(group);
      shape.vertices.forEach((v, i) => {
        const m = L.marker([v.lat, v.lon], {
          draggable: true, keyboard: true, title: `Vertex ${i + 1} (drag to move)`,
          icon: L.divIcon({ className: 'vertex', iconSize: [12, 12] }),
        }).addTo(group);
        m.on('drag', () => {
          const ll = poly.getLatLngs();
          const ring = Array.isArray(ll[0]) ? ll[0] : ll;
          ring[i] = m.getLatLng();
          poly.setLatLngs(ring);
        });
        m.on('dragend', () => {
          const p = m.getLatLng();
          setDraft((d) => {
            const vertices = d.shape.vertices.slice();
            vertices[i] = { lat: p.lat, lon: p.lng };
            return { ...d, shape: { ...d.shape, vertices } };
          });
        });
      });
    }
  }

  useEffect(() => { if (draft) showDraft(draft.shape); else clearDraftLayer(); }, [draft]);

  useEffect(() => {
    const map = mapRef.current;
    if (!map) return undefined;
    const onClick = (e) => {
      const d = drawing.current;
      if (!d) return;
      const { lat, lng } = e.latlng;
      if (d.kind === 'circle') {
        if (d.lat === undefined) {
          drawing.current = { ...d, lat, lon: lng };
          setDraft((x) => ({ ...x, shape: { kind: 'circle', lat, lon: lng, radius_m: 200 } }));
        } else {
          const radius = map.distance([d.lat, d.lon], e.latlng);
          drawing.current = null;
          setDraft((x) => ({ ...x, shape: { ...x.shape, radius_m: Math.round(radius) } }));
          map.getContainer().classList.remove('drawing');
        }
      } else {
        setDraft((x) => ({ ...x, shape: { ...x.shape, vertices: [...x.shape.vertices, { lat, lon: lng }] } }));
      }
    };
    map.on('click', onClick);
    return () => map.off('click', onClick);
  }, [mapRef.current]);

  function startDraw(kind) {
    setZoneError(null);
    setEditing(null);
    drawing.current = { kind };
    mapRef.current.getContainer().classList.add('drawing');
    setDraft({ name: '', isNew: true, shape: kind === 'circle' ? { kind } : { kind, vertices: [] } });
  }

  function finishPolygon() {
    drawing.current = null;
    mapRef.current.getContainer().classList.remove('drawing');
  }

  function editZone(name, zone) {
    setZoneError(null);
    drawing.current = null;
    setEditing({ name });
    setDraft({ name, isNew: false, shape: JSON.parse(JSON.stringify(zone)) });
    const layer = zoneLayer(name, zone);
    mapRef.current.fitBounds(layer.getBounds().pad(0.3));
  }

  function cancelDraft() {
    drawing.current = null;
    mapRef.current.getContainer().classList.remove('drawing');
    setDraft(null);
    setEditing(null);
    loadZones();
  }

  async function saveDraft(e) {
    e.preventDefault();
    const { name, shape } = draft;
    const body = shape.kind === 'circle'
      ? { kind: 'circle', lat: shape.lat, lon: shape.lon, radius_m: Number(shape.radius_m) }
      : { kind: 'polygon', vertices: shape.vertices };
    try {
      await api(`/api/v1/zones/${encodeURIComponent(name)}`, { method: 'PUT', body });
      cancelDraft();
    } catch (err) { setZoneError(err); }
  }

  async function deleteZone(name) {
    setConfirmDelete(null);
    try { await api(`/api/v1/zones/${encodeURIComponent(name)}`, { method: 'DELETE' }); loadZones(); } catch (err) { setZoneError(err); }
  }

  const row = selected ? fleet.byId.get(selected) : null;
  const drawnCount = layerRef.current ? layerRef.current.drawn : 0;
  const shape = draft && draft.shape;
  const draftReady = shape && (shape.kind === 'circle' ? shape.lat !== undefined && shape.radius_m > 0 : shape.vertices.length >= 3);

  return html`<section class="map-page">
    <div class="map-wrap">
      <div ref=${element} class="map" role="application"
        aria-label=${`Fleet map: ${fleet.rows.length} vehicles; use the search box or the vehicle list to reach one by keyboard`}></div>
      <div class="map-search">
        <label class="sr-only" for="map-search">Find a vehicle</label>
        <input id="map-search" type="search" placeholder="Find a vehicle…" value=${search}
          onInput=${onSearch} onKeyDown=${onSearchKey} autocomplete="off" />
        ${matches.length > 0 && html`<ul class="matches" role="listbox">
          ${matches.map((id) => html`<li key=${id}><button type="button" onClick=${() => { goTo(id); setMatches([]); }}>${id}</button></li>`)}
        </ul>`}
      </div>
      <div class="legend" aria-label="Vehicle states">
        ${STATES.map((s) => html`<label key=${s}>
          <input type="checkbox" checked=${!hidden.has(s)} onChange=${() => toggleState(s)} />
          <span class="dot" style=${`background:${STATE_COLORS[s]}`}></span>${STATE_LABELS[s]} <b>${stateCounts[s] || 0}</b>
        </label>`)}
        ${!config.tile_url && html`<p class="hint">Offline basemap (Natural Earth outlines). Set <code>console.tile_url</code> for tiles.</p>`}
      </div>
    </div>
    <aside class="map-side">
      ${row ? html`<div class="card vehicle-card">
        <h2><a href=${`#/vehicle/${encodeURIComponent(row.id)}`}>${row.id}</a></h2>
        <p><span class=${`badge state-${row.state}`}>${STATE_LABELS[row.state]}</span> · fleet ${row.fleet}</p>
        <dl class="facts">
          <dt>Speed</dt><dd>${num(row.speed, 0, ' km/h')}</dd>
          <dt>Heading</dt><dd>${num(row.heading, 0, '°')}</dd>
          <dt>Battery</dt><dd>${num(row.soc, 0, ' %')}</dd>
          <dt>Last seen</dt><dd>${age(row.last_seen)} ago</dd>
          <dt>Open alerts</dt><dd>${row.alerts}${row.severity ? ` (${row.severity})` : ''}</dd>
        </dl>
        <label class="inline"><input type="checkbox" checked=${follow} onChange=${(e) => setFollow(e.target.checked)} /> Follow on the map</label>
        <p><a class="button" href=${`#/vehicle/${encodeURIComponent(row.id)}`}>Open vehicle page</a></p>
      </div>` : html`<div class="card"><p>${fleet.rows.length} vehicles, ${drawnCount} on screen. Select a vehicle on the map, or search for one.</p></div>`}
      ${canReadZones && html`<div class="card">
        <h2>Zones</h2>
        <ul class="zone-list">
          ${zones.map(([name, zone]) => html`<li key=${name}>
            <span>${name} <small>${zone.kind}</small></span>
            ${canWriteZones && html`<span>
              <button type="button" class="small" onClick=${() => editZone(name, zone)}>Edit</button>
              <button type="button" class="small danger" onClick=${() => setConfirmDelete(name)}>Delete</button>
            </span>`}
          </li>`)}
          ${zones.length === 0 && html`<li>No zones.</li>`}
        </ul>
        ${canWriteZones && !draft && html`<p class="row">
          <button type="button" onClick=${() => startDraw('circle')}>Draw a circle</button>
          <button type="button" onClick=${() => startDraw('polygon')}>Draw a polygon</button>
        </p>`}
        ${draft && html`<form class="zone-form" onSubmit=${saveDraft}>
          <p class="hint">${shape.kind === 'circle'
            ? (shape.lat === undefined ? 'Click the map for the centre, then click again for the radius.' : 'Drag the centre to move it; set the radius below.')
            : 'Click the map to add vertices; drag them to adjust.'}</p>
          ${draft.isNew && html`<label>Name <input required pattern="[A-Za-z0-9_.\\-]{1,64}" value=${draft.name}
            onInput=${(e) => setDraft({ ...draft, name: e.target.value })} /></label>`}
          ${!draft.isNew && html`<p>Editing <b>${draft.name}</b></p>`}
          ${shape.kind === 'circle' && shape.lat !== undefined && html`<label>Radius (m)
            <input type="number" min="1" value=${shape.radius_m}
              onInput=${(e) => setDraft({ ...draft, shape: { ...shape, radius_m: Number(e.target.value) } })} /></label>`}
          ${shape.kind === 'polygon' && html`<p>${shape.vertices.length} vertices
            ${drawing.current && shape.vertices.length >= 3 && html` <button type="button" class="small" onClick=${finishPolygon}>Done adding</button>`}</p>`}
          <p class="row">
            <button type="submit" class="primary" disabled=${!draftReady}>Save zone</button>
            <button type="button" onClick=${cancelDraft}>Cancel</button>
          </p>
        </form>`}
        <${ErrorNote} error=${zoneError} />
      </div>`}
    </aside>
    ${confirmDelete && html`<${Confirm} title=${`Delete zone ${confirmDelete}?`} danger confirmLabel="Delete"
      onConfirm=${() => deleteZone(confirmDelete)} onCancel=${() => setConfirmDelete(null)}>
      <p>Rules that name this zone no longer hold for it.</p></${Confirm}>`}
  </section>`;
}
