// Quiver console: one static page, hash routes (#/registry, #/runs?view=…), data from the
// server's read-only JSON API. No framework, no build step, nothing loaded from elsewhere.
// Plots are SVG drawn here (lineChart); every string from the server goes in as text, never HTML.
'use strict';

const TOKEN_KEY = 'quiver.token';
const SVG = 'http://www.w3.org/2000/svg';
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

// ---------- DOM helpers ----------

function build(ns, tag, attrs, kids) {
  const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  const add = (kid) => {
    if (kid === null || kid === undefined || kid === false) return;
    if (Array.isArray(kid)) kid.forEach(add);
    else el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  };
  kids.forEach(add);
  return el;
}
// Replaces el's children with kids (nested arrays flattened; null, undefined, false skipped).
function fill(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
}
const h = (tag, attrs, ...kids) => build(null, tag, attrs, kids);
const s = (tag, attrs, ...kids) => build(SVG, tag, attrs, kids);

// ---------- formatting ----------

function fmtNum(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return v.toLocaleString('en-US', { maximumFractionDigits: digits });
}
function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  const a = Math.abs(seconds);
  const sign = seconds < 0 ? '−' : '';
  if (a < 120) return `${sign}${a.toFixed(a < 10 ? 1 : 0)} s`;
  if (a < 7200) return `${sign}${(a / 60).toFixed(0)} min`;
  if (a < 172800) return `${sign}${(a / 3600).toFixed(1)} h`;
  return `${sign}${(a / 86400).toFixed(1)} d`;
}
function fmtMs(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  const ms = seconds * 1000;
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}
function fmtTime(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
const parseTime = (t) => (t ? Date.parse(t) : NaN);

function badge(word) {
  return h('span', { class: `badge ${word}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), word);
}
function tags(map) {
  return Object.entries(map || {}).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`));
}
function table(headers, rows, opts = {}) {
  return h('div', { class: 'scroll' }, h('table', { class: opts.class },
    opts.caption ? h('caption', { class: 'muted' }, opts.caption) : null,
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label || c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((cell, i) =>
      h('td', { class: headers[i] && headers[i].num ? 'num' : null }, cell))))))); 
}
function errorBox(e) {
  return h('div', { class: 'error', role: 'alert' }, e && e.message ? e.message : String(e));
}
function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter((p) => p[1] !== null && p[1] !== undefined && p[1] !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// ---------- the API ----------

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  const response = await fetch(path, { ...init, headers });
  const text = await response.text();
  let body = text;
  try { body = JSON.parse(text); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    let message = body && body.error ? body.error : (typeof body === 'string' ? body : JSON.stringify(body));
    if (typeof body === 'string') {
      // Feast's shape: a JSON string holding {module, class, message}.
      try { const j = JSON.parse(body); if (j && j.message) message = `${j.class}: ${j.message}`; } catch (_) { /* plain */ }
    }
    if (response.status === 401) askToken(`The server answered: ${message}`);
    throw new HttpError(response.status, `${response.status} ${response.statusText || ''} — ${message}`.replace('  ', ' '));
  }
  return init.raw ? { body, text } : body;
}

// The served version's whole registry, read once per version.
const registryCache = new Map();
async function current() {
  const overview = await api('/registry/overview');
  let version = registryCache.get(overview.version);
  if (!version) {
    version = await api(`/registry/versions/${overview.version}`);
    registryCache.set(overview.version, version);
  }
  return { overview, registry: version.registry, version };
}

// ---------- token ----------

function askToken(why) {
  const dialog = document.getElementById('token-dialog');
  if (why) document.getElementById('token-why').textContent =
    `${why}. Any token with a read scope works; it is kept in this tab's session storage only.`;
  document.getElementById('token-input').value = '';
  if (!dialog.open) dialog.showModal();
}
function setupToken() {
  const dialog = document.getElementById('token-dialog');
  document.getElementById('token-button').addEventListener('click', () => askToken(null));
  dialog.addEventListener('close', () => {
    const value = document.getElementById('token-input').value.trim();
    if (dialog.returnValue === 'save' && value) sessionStorage.setItem(TOKEN_KEY, value);
    else if (dialog.returnValue === 'clear') sessionStorage.removeItem(TOKEN_KEY);
    else return;
    registryCache.clear();
    route();
  });
}

// ---------- charts ----------

function niceTicks(min, max, count = 5) {
  if (!(max > min)) {
    if (min === 0) max = 1;
    else { const d = Math.abs(min); min -= d / 2; max += d / 2; }
  }
  const step0 = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= step0) || step0;
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  return { ticks, min: Math.min(min, ticks[0] ?? min), max: Math.max(max, ticks[ticks.length - 1] ?? max) };
}
function timeTick(ms, span) {
  const iso = new Date(ms).toISOString();
  if (span < 2 * 86400e3) return iso.slice(11, 19).replace(/:00$/, '');
  if (span < 300 * 86400e3) return iso.slice(5, 10);
  return iso.slice(0, 10);
}

// A line plot of `series` ([{name, points: [[x, y]…]}]); x is a time in ms unless `xTime`
// is false. Each point is a circle with its value as a tooltip; the figure says how many.
function lineChart({ title, series, yFormat = fmtNum, xTime = true, height = 220, yZero = true }) {
  const W = 640, H = height, L = 62, R = 14, T = 12, B = 30;
  const all = series.flatMap((se) => se.points.filter((p) => Number.isFinite(p[1])));
  const fig = h('figure', { class: 'panel', 'data-points': String(all.length) }, h('figcaption', {}, h('strong', {}, title)));
  if (!all.length) {
    fig.append(h('p', { class: 'muted' }, 'No data points yet.'));
    return fig;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x0 === x1) { x0 -= 30e3; x1 += 30e3; }
  const yt = niceTicks(yZero ? Math.min(0, ...ys) : Math.min(...ys), Math.max(...ys));
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - (y - yt.min) / (yt.max - yt.min)) * (H - T - B);
  const xFmt = xTime ? (x) => timeTick(x, x1 - x0) : (x) => fmtNum(x);
  const xTicks = Array.from({ length: 5 }, (_, i) => x0 + ((x1 - x0) * i) / 4);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}: ${all.length} points` },
    yt.ticks.map((v) => [
      s('line', { class: 'grid', x1: L, x2: W - R, y1: Y(v), y2: Y(v) }),
      s('text', { x: L - 6, y: Y(v) + 4, 'text-anchor': 'end' }, yFormat(v)),
    ]),
    s('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }),
    s('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }),
    xTicks.map((x, i) => s('text', { x: X(x), y: H - 10, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, xFmt(x))),
    series.map((se, i) => {
      const color = se.color || COLORS[i % COLORS.length];
      const pts = se.points.filter((p) => Number.isFinite(p[1]));
      return s('g', { 'data-series': se.name },
        pts.length > 1 ? s('polyline', { fill: 'none', stroke: color, 'stroke-width': 2, points: pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ') }) : null,
        pts.map((p) => s('circle', { class: 'point', cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: pts.length > 200 ? 1.5 : 3, fill: color },
          s('title', {}, `${se.name}: ${yFormat(p[1])} at ${xTime ? fmtTime(p[0]) : fmtNum(p[0])}`))));
    }));
  fig.append(svg);
  if (series.length > 1 || series[0].name !== title) {
    fig.append(h('div', { class: 'legend' }, series.map((se, i) =>
      h('span', { style: null, 'data-color': se.color || COLORS[i % COLORS.length] }, se.name))));
    fig.querySelectorAll('.legend span').forEach((el) => el.style.setProperty('--c', el.dataset.color));
  }
  return fig;
}

// ---------- pages ----------

const pages = {};

pages.overview = async (main) => {
  const { overview: o } = await current();
  document.getElementById('foot-text').textContent =
    `Quiver ${o.server_version} · project ${o.project} · registry version ${o.version} · read-only`;
  const store = o.online_store;
  const counts = Object.entries(o.counts).map(([k, n]) =>
    h('div', { class: 'card' }, h('div', { class: 'n' }, fmtNum(n)), h('div', { class: 'k' }, k.replace(/_/g, ' '))));
  const order = { stale: 0, never: 1, aging: 2, fresh: 3, offline: 4 };
  const views = [...o.views].sort((a, b) => order[a.freshness] - order[b.freshness] || a.name.localeCompare(b.name));
  const summary = ['fresh', 'aging', 'stale', 'never'].map((w) => [w, o.views.filter((v) => v.freshness === w).length])
    .filter(([, n]) => n).map(([w, n]) => h('span', { style: null }, badge(w), ` ${n}  `));
  fill(main, 
    h('h1', {}, `Project ${o.project}`),
    h('div', { class: 'panel' }, kv([
      ['Registry version', h('span', {}, `${o.version} `, h('a', { href: '#/versions' }, 'history'))],
      ['Applied at', o.applied_at ? `${o.applied_at} (${fmtAge((Date.now() - parseTime(o.applied_at)) / 1e3)} ago)` : '–'],
      ['Content hash', h('code', {}, (o.hash || '').slice(0, 16))],
      ['Online store', h('span', {}, `${store.kind}${store.location ? ` — ${store.location}` : ''} · `,
        h('strong', { class: store.status === 'ok' ? 'ok' : 'stale' }, store.status))],
      ['Online data', o.online_data],
      ['Registry', o.registry],
      ['Ready', o.ready ? h('strong', { class: 'ok' }, 'yes') : h('strong', { class: 'stale' }, 'no')],
    ])),
    h('div', { class: 'cards' }, counts),
    h('h2', {}, 'Freshness'),
    h('p', { class: 'muted' }, summary.length ? summary : 'No online views.',
      h('br'), 'Age = now − the view\'s materialization watermark. Fresh: within half the ttl; aging: within the ttl; stale: older than the ttl (values served as expired); never: no watermark in this generation.'),
    table(['View', 'Freshness', { label: 'Age', num: true }, 'ttl', 'Watermark', 'Last run', { label: 'Keys written', num: true }, ''],
      views.map((v) => [
        h('a', { href: `#/view/${encodeURIComponent(v.name)}` }, v.name),
        badge(v.freshness),
        fmtAge(v.age_seconds),
        v.ttl_seconds ? v.ttl : 'none',
        v.watermark || '–',
        v.last_run ? v.last_run.finished_at : '–',
        v.last_run ? fmtNum(v.last_run.keys_written) : '–',
        h('a', { href: `#/runs?view=${encodeURIComponent(v.name)}` }, 'runs'),
      ]), { class: 'freshness' }),
    o.runs_readable ? null : h('p', { class: 'muted' }, 'Run records could not be read from the registry store.'));
};

function matches(item, q) {
  if (!q) return true;
  const query = q.toLowerCase();
  const tag = query.match(/^tag:([^=]*)(?:=(.*))?$/);
  const t = item.tags || {};
  if (tag) return Object.entries(t).some(([k, v]) => k.toLowerCase() === tag[1] && (tag[2] === undefined || v.toLowerCase() === tag[2]));
  return [item.name, item.description, item.owner, ...Object.keys(t), ...Object.values(t)]
    .some((x) => x && x.toLowerCase().includes(query));
}

function viewCard(r, v) {
  const services = Object.values(r.feature_services).filter((sv) => sv.features.some((f) => f.view === v.name));
  return h('section', { class: 'panel', id: `view-${v.name}` },
    h('h3', {}, h('a', { href: `#/view/${encodeURIComponent(v.name)}` }, v.name), ' ', v.online ? null : h('span', { class: 'badge offline' }, 'offline only')),
    v.description ? h('p', {}, v.description) : null,
    kv([
      ['Entities', v.entities.join(', ')],
      ['Source', v.source],
      ['ttl', v.ttl],
      ['Owner', v.owner],
      ['Tags', Object.keys(v.tags || {}).length ? tags(v.tags) : null],
      ['Generation', String(v.generation)],
      ['Services', services.length ? services.map((sv, i) => [i ? ', ' : '', sv.name]) : null],
    ]),
    table(['Feature', 'Type', 'Description'], v.features.map((f) => [h('code', {}, f.name), f.type, f.description || ''])),
    v.query ? [h('h4', {}, 'Query'), h('pre', {}, v.query)] : null,
    v.aggregations ? [h('h4', {}, `Aggregations (hop ${v.aggregations.hop})`),
      table(['Output', 'Function', 'Column', 'Window'], v.aggregations.items.map((a) => [h('code', {}, a.name), a.function, a.column || '', a.window]))] : null);
}

function sourceCard(name, src, push) {
  const holder = h('div');
  const rows = push
    ? [['Kind', 'push source'], ['Schema', table(['Column', 'Type'], Object.entries(src.schema).map(([c, t]) => [h('code', {}, c), t]))],
      ['Timestamp', src.timestamp_field], ['Created', src.created_timestamp_field], ['Batch source', src.batch_source]]
    : [['Path', h('code', {}, src.path)], ['Timestamp', src.timestamp_field], ['Created', src.created_timestamp_field],
      ['Field mapping', Object.keys(src.field_mapping || {}).length ? Object.entries(src.field_mapping).map(([a, b]) => h('div', {}, `${a} → ${b}`)) : null],
      ['Partitions', (src.partition_columns || []).length ? src.partition_columns.map((p) => `${p.name} (${p.type})`).join(' / ') : null],
      ['Time partition', src.time_partition ? `${src.time_partition.column} as ${src.time_partition.format}${src.time_partition.hour_column ? ` + ${src.time_partition.hour_column}` : ''}${src.time_partition.lateness_ms ? `, lateness ${src.time_partition.lateness_ms} ms` : ''}` : null],
      ['Storage options', Object.keys(src.storage || {}).length ? Object.keys(src.storage).join(', ') : null]];
  const button = push ? null : h('button', { type: 'button', class: 'ghost', onclick: async () => {
    button.disabled = true;
    try {
      const sc = await api(`/registry/sources/${encodeURIComponent(name)}/schema`);
      fill(holder, sc.columns
        ? table(['Column', 'Arrow type', 'Nullable'], sc.columns.map((c) => [h('code', {}, c.name), c.type, c.nullable ? 'yes' : 'no']))
        : h('p', { class: 'muted' }, `Schema not read: ${sc.note}`));
    } catch (e) { fill(holder, errorBox(e)); button.disabled = false; }
  } }, 'Show file schema');
  return h('section', { class: 'panel' }, h('h3', {}, name), src.description ? h('p', {}, src.description) : null,
    kv(rows), Object.keys(src.tags || {}).length ? h('div', {}, tags(src.tags)) : null, button, holder);
}

function lineage(r) {
  const sources = [...Object.keys(r.sources), ...Object.keys(r.push_sources || {})];
  const views = Object.keys(r.feature_views);
  const services = Object.keys(r.feature_services);
  const colW = 210, gap = 90, rowH = 34, boxH = 26;
  const cols = [sources, views, services];
  const W = colW * 3 + gap * 2 + 4;
  const H = Math.max(1, ...cols.map((c) => c.length)) * rowH + 30;
  const pos = {};
  cols.forEach((names, ci) => names.forEach((n, i) => { pos[`${ci}:${n}`] = { x: 2 + ci * (colW + gap), y: 26 + i * rowH }; }));
  const edges = [];
  for (const v of Object.values(r.feature_views)) edges.push([`0:${v.source}`, `1:${v.name}`]);
  for (const sv of Object.values(r.feature_services)) {
    for (const view of new Set(sv.features.map((f) => f.view))) edges.push([`1:${view}`, `2:${sv.name}`]);
  }
  const short = (t) => (t.length > 26 ? `${t.slice(0, 25)}…` : t);
  const link = { 0: null, 1: (n) => `#/view/${encodeURIComponent(n)}`, 2: (n) => `#/lookup?service=${encodeURIComponent(n)}` };
  return s('svg', { class: 'chart lineage', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `Lineage: ${sources.length} sources, ${views.length} views, ${services.length} services` },
    ['Sources', 'Feature views', 'Feature services'].map((t, ci) => s('text', { x: 2 + ci * (colW + gap), y: 14, 'font-weight': 600 }, t)),
    edges.filter(([a, b]) => pos[a] && pos[b]).map(([a, b]) => {
      const p = pos[a], q = pos[b];
      const x1 = p.x + colW, y1 = p.y + boxH / 2, x2 = q.x, y2 = q.y + boxH / 2;
      return s('path', { d: `M${x1},${y1} C${x1 + gap / 2},${y1} ${x2 - gap / 2},${y2} ${x2},${y2}`, fill: 'none', stroke: '#8c959f', 'stroke-width': 1.4, 'data-edge': `${a.slice(2)}→${b.slice(2)}` });
    }),
    cols.map((names, ci) => names.map((n) => {
      const p = pos[`${ci}:${n}`];
      const push = ci === 0 && !(n in r.sources);
      const box = [s('rect', { x: p.x, y: p.y, width: colW, height: boxH, rx: 5, fill: ['#ddf4ff', '#fff8c5', '#dafbe1'][ci], stroke: '#8c959f' }),
        s('text', { x: p.x + 8, y: p.y + 17 }, short(n) + (push ? ' (push)' : '')), s('title', {}, n)];
      return link[ci] ? s('a', { href: link[ci](n), 'data-node': n }, box) : s('g', { 'data-node': n }, box);
    })));
}

pages.registry = async (main, _parts, params) => {
  const { registry: r } = await current();
  const q = params.get('q') || '';
  const section = params.get('tab') || 'views';
  const tabs = [['views', 'Feature views', Object.keys(r.feature_views).length], ['sources', 'Sources', Object.keys(r.sources).length + Object.keys(r.push_sources || {}).length],
    ['entities', 'Entities', Object.keys(r.entities).length], ['services', 'Feature services', Object.keys(r.feature_services).length], ['lineage', 'Lineage', null]];
  const go = (tab, query) => { location.hash = `#/registry?tab=${tab}${query ? `&q=${encodeURIComponent(query)}` : ''}`; };
  const search = h('input', { type: 'search', id: 'registry-search', value: q, placeholder: 'name, text or tag:key=value', 'aria-label': 'Search the registry' });
  const form = h('form', { class: 'row', role: 'search', onsubmit: (e) => { e.preventDefault(); go(section, search.value.trim()); } },
    h('div', {}, h('label', { for: 'registry-search' }, 'Filter by name, description, owner or tag'), search), h('button', { type: 'submit' }, 'Filter'));
  const body = h('div', { role: 'tabpanel', id: 'registry-panel' });
  const list = (items, card) => {
    const shown = items.filter((it) => matches(it, q));
    return shown.length ? shown.map(card) : h('p', { class: 'muted' }, q ? `Nothing matches “${q}”.` : 'None declared.');
  };
  if (section === 'views') body.append(...[list(Object.values(r.feature_views), (v) => viewCard(r, v))].flat());
  if (section === 'sources') {
    body.append(...[list(Object.entries(r.sources).map(([n, v]) => ({ ...v, name: n })), (src) => sourceCard(src.name, src, false))].flat());
    body.append(...[list(Object.entries(r.push_sources || {}).map(([n, v]) => ({ ...v, name: n })), (src) => sourceCard(src.name, src, true))].flat().filter((x) => x.tagName !== 'P'));
  }
  if (section === 'entities') body.append(...[list(Object.values(r.entities), (e) => h('section', { class: 'panel' }, h('h3', {}, e.name),
    e.description ? h('p', {}, e.description) : null, table(['Join key', 'Type'], e.join_keys.map((k) => [h('code', {}, k.name), k.type])), h('div', {}, tags(e.tags))))].flat());
  if (section === 'services') body.append(...[list(Object.values(r.feature_services), (sv) => {
    const byView = {};
    sv.features.forEach((f) => (byView[f.view] = byView[f.view] || []).push(f.feature));
    return h('section', { class: 'panel' }, h('h3', {}, sv.name, ' ', h('a', { href: `#/lookup?service=${encodeURIComponent(sv.name)}` }, 'look up')),
      sv.description ? h('p', {}, sv.description) : null,
      table(['View', 'Features'], Object.entries(byView).map(([v, fs]) => [h('a', { href: `#/view/${encodeURIComponent(v)}` }, v), fs.join(', ')])), h('div', {}, tags(sv.tags)));
  })].flat());
  if (section === 'lineage') body.append(h('div', { class: 'panel scroll' }, lineage(r)));
  fill(main, h('h1', {}, 'Registry'), form,
    h('div', { class: 'tabs', role: 'tablist' }, tabs.map(([id, label, n]) => h('button', { type: 'button', role: 'tab', 'aria-selected': String(id === section), 'aria-controls': 'registry-panel', onclick: () => go(id, q) }, label, n === null ? '' : ` (${n})`))),
    body);
};

pages.view = async (main, parts) => {
  const { registry: r, overview: o } = await current();
  const name = parts[0];
  const v = r.feature_views[name];
  if (!v) throw new Error(`No feature view named “${name}” in registry version ${o.version}.`);
  const f = o.views.find((x) => x.name === name);
  fill(main, h('h1', {}, `Feature view ${name}`),
    f ? h('p', {}, badge(f.freshness), ` age ${fmtAge(f.age_seconds)} · watermark ${f.watermark || 'none'} · `,
      h('a', { href: `#/runs?view=${encodeURIComponent(name)}` }, 'materialization runs')) : null,
    viewCard(r, v));
};

pages.versions = async (main, _parts, params) => {
  const { versions } = await api('/registry/versions');
  if (!versions.length) { fill(main, h('h1', {}, 'Versions'), h('p', {}, 'No versions applied yet.')); return; }
  const newest = versions[versions.length - 1].version;
  const to = Number(params.get('to') || newest);
  const from = Number(params.get('from') ?? Math.max(0, to - 1));
  const pick = (id, value, withNone) => h('select', { id },
    withNone ? h('option', { value: '0', selected: value === 0 }, '0 (empty)') : null,
    versions.map((v) => h('option', { value: v.version, selected: v.version === value }, `${v.version} — ${v.applied_at}`)));
  const fromSel = pick('diff-from', from, true), toSel = pick('diff-to', to, false);
  const diffBox = h('div', { id: 'diff' }, h('p', { class: 'muted' }, 'Loading the diff…'));
  fill(main, h('h1', {}, 'Version history'),
    h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); location.hash = `#/versions?from=${fromSel.value}&to=${toSel.value}`; } },
      h('div', {}, h('label', { for: 'diff-from' }, 'From'), fromSel), h('div', {}, h('label', { for: 'diff-to' }, 'To'), toSel),
      h('button', { type: 'submit' }, 'Show diff')),
    diffBox,
    h('h2', {}, 'Applied versions'),
    table([{ label: 'Version', num: true }, 'Applied at', 'Hash', { label: 'Views', num: true }, { label: 'Services', num: true }, ''],
      [...versions].reverse().map((v) => [String(v.version), v.applied_at, h('code', {}, v.hash.slice(0, 12)), String(v.feature_views), String(v.feature_services),
        h('a', { href: `#/versions?from=${v.version - 1}&to=${v.version}` }, v.version > 1 ? `diff with ${v.version - 1}` : 'as first applied')])));
  try {
    const d = await api(`/registry/diff?from=${from}&to=${to}`);
    const sign = { add: '+', change: '~', remove: '−' };
    fill(diffBox, h('h2', {}, `Changes from version ${d.from} to version ${d.to}`),
      d.changes.length ? h('ul', { class: 'panel diff' }, d.changes.map((c) => h('li', { class: `diff-${c.action}` },
        h('strong', {}, `${sign[c.action]} ${c.kind.replace('_', ' ')} `), h('code', {}, c.name),
        c.details.length ? h('ul', {}, c.details.map((dt) => h('li', {}, dt))) : null,
        c.rematerialize ? h('div', { class: 'stale' }, `! ${c.rematerialize}`) : null)))
        : h('p', { class: 'panel' }, 'No changes between these versions.'));
  } catch (e) { fill(diffBox, errorBox(e)); }
};

// Freshness (now − watermark, seconds) as it evolved: it grows while no run moves the
// watermark and drops when one does — a point at each run's end, one just before the next, and
// one for now.
function freshnessLine(runs, at) {
  const marks = runs.filter((run) => run.watermark).map((run) => [at(run), parseTime(run.watermark)]);
  const points = [];
  marks.forEach(([t, w], i) => {
    points.push([t, Math.max(0, (t - w) / 1e3)]);
    const next = i + 1 < marks.length ? marks[i + 1][0] : Date.now();
    if (next > t) points.push([next - (i + 1 < marks.length ? 1 : 0), Math.max(0, (next - w) / 1e3)]);
  });
  return points;
}

pages.runs = async (main, _parts, params) => {
  const { registry: r } = await current();
  const names = Object.keys(r.feature_views);
  const view = params.get('view') || names.find((n) => r.feature_views[n].online) || names[0];
  const select = h('select', { id: 'runs-view', onchange: () => { location.hash = `#/runs?view=${encodeURIComponent(select.value)}`; } },
    names.map((n) => h('option', { value: n, selected: n === view }, n)));
  const head = [h('h1', {}, 'Materialization'), h('div', { class: 'row' }, h('div', {}, h('label', { for: 'runs-view' }, 'Feature view'), select))];
  if (!view) { fill(main, ...head, h('p', {}, 'No feature views.')); return; }
  const { runs } = await api(`/registry/runs?view=${encodeURIComponent(view)}&limit=1000`);
  const at = (run) => parseTime(run.finished_at);
  const v = r.feature_views[view];
  const features = v ? v.features.map((f) => f.name) : [];
  const feature = params.get('feature') && features.includes(params.get('feature')) ? params.get('feature') : features[0];
  const fsel = h('select', { id: 'runs-feature', onchange: () => { location.hash = `#/runs?view=${encodeURIComponent(view)}&feature=${encodeURIComponent(fsel.value)}`; } },
    features.map((n) => h('option', { value: n, selected: n === feature }, n)));
  const stat = (k) => runs.filter((run) => run.features[feature]).map((run) => [at(run), run.features[feature][k] ?? NaN]);
  fill(main, ...head,
    h('p', { class: 'muted' }, `${runs.length} recorded run${runs.length === 1 ? '' : 's'} of ${view} (all generations; the current is ${v ? v.generation : '–'}).`),
    h('div', { class: 'charts' },
      lineChart({ title: 'Rows read and keys written', series: [
        { name: 'rows read', points: runs.map((run) => [at(run), run.rows_read]) },
        { name: 'keys written', points: runs.map((run) => [at(run), run.keys_written]) },
        { name: 'entities', points: runs.map((run) => [at(run), run.entities]) }] }),
      lineChart({ title: 'Duration (s)', series: [{ name: 'seconds', points: runs.map((run) => [at(run), run.seconds]) }] }),
      lineChart({ title: 'Freshness over time (now − watermark)', yFormat: fmtAge, series: [{ name: 'freshness', points: freshnessLine(runs, at) }] })),
    h('h2', {}, 'Feature statistics across runs'),
    features.length ? h('div', { class: 'row' }, h('div', {}, h('label', { for: 'runs-feature' }, 'Feature'), fsel)) : null,
    feature ? h('div', { class: 'charts' },
      lineChart({ title: `${feature}: null rate`, yFormat: (y) => `${(y * 100).toFixed(1)}%`,
        series: [{ name: 'null rate', points: runs.filter((run) => run.features[feature] && run.rows_read).map((run) => [at(run), run.features[feature].null_count / run.rows_read]) }] }),
      lineChart({ title: `${feature}: min, mean, max`, yZero: false, series: [
        { name: 'min', points: stat('min') }, { name: 'mean', points: stat('mean') }, { name: 'max', points: stat('max') }] })) : null,
    h('h2', {}, 'Runs, newest first'),
    table(['Finished', 'Range', { label: 'Rows read', num: true }, { label: 'Entities', num: true }, { label: 'Keys written', num: true }, { label: 'Seconds', num: true }, 'Watermark', 'Generation', 'Notes'],
      [...runs].reverse().map((run) => [run.finished_at, `${run.start || 'beginning'} → ${run.end}`, fmtNum(run.rows_read), fmtNum(run.entities), fmtNum(run.keys_written),
        fmtNum(run.seconds), run.watermark || '–', String(run.generation),
        [run.engine ? `engine ${run.engine}` : '', run.watermark_note || '', ...(run.warnings || [])].filter(Boolean).join('; ')]), { class: 'runs' }));
};

// ---------- online lookup ----------

const INT = /^(int32|int64)$/;
function keyColumns(r, refs) {
  const keys = [];
  for (const view of new Set(refs.map((f) => f.view))) {
    const v = r.feature_views[view];
    if (!v) continue;
    for (const e of v.entities) for (const k of (r.entities[e] || { join_keys: [] }).join_keys) {
      if (!keys.some((x) => x.name === k.name)) keys.push(k);
    }
  }
  return keys;
}
// JSON text of the entities, written by hand so int64 keys keep every digit.
function entitiesJson(keys, values) {
  return `{${keys.map((k) => {
    const cells = values[k.name].map((v) => (INT.test(k.type) ? v : JSON.stringify(v)));
    return `${JSON.stringify(k.name)}:[${cells.join(',')}]`;
  }).join(',')}}`;
}
function snippets(base, body, service, features, keys, values) {
  const auth = sessionStorage.getItem(TOKEN_KEY) ? ` -H "Authorization: Bearer $QUIVER_TOKEN"` : '';
  const py = (v, k) => (INT.test(k.type) ? v : JSON.stringify(v));
  const pyEntities = `{${keys.map((k) => `${JSON.stringify(k.name)}: [${values[k.name].map((v) => py(v, k)).join(', ')}]`).join(', ')}}`;
  const rows = values[keys[0].name].map((_, i) => `{${keys.map((k) => `${JSON.stringify(k.name)}: ${py(values[k.name][i], k)}`).join(', ')}}`);
  const what = service ? JSON.stringify(service) : `[${features.map((f) => JSON.stringify(f)).join(', ')}]`;
  const grpcValue = (k, v) => (INT.test(k.type) ? `{"${k.type}_val":"${v}"}` : `{"string_val":${JSON.stringify(v)}}`);
  const grpcBody = `{${service ? `"feature_service":${JSON.stringify(service)}` : `"features":{"val":[${features.map((f) => JSON.stringify(f)).join(',')}]}`},"entities":{${keys.map((k) => `"${k.name}":{"val":[${values[k.name].map((v) => grpcValue(k, v)).join(',')}]}`).join(',')}}}`;
  const host = new URL(base).host.replace(/:\d+$/, '');
  return [
    ['curl', `curl -s ${base}/get-online-features${auth} \\\n  -H 'Content-Type: application/json' \\\n  -d '${body}'`],
    ['Python (quiver package)', `import os, quiver\nclient = quiver.Client("${base}"${auth ? ', token=os.environ["QUIVER_TOKEN"]' : ''})\nclient.get_online_features(${what}, ${pyEntities}).to_dict()`],
    ['Python (Feast SDK, online_store: {type: remote, path: ' + base + '})', `from feast import FeatureStore\nstore = FeatureStore(repo_path=".")  # a Feast repo declaring the same views\nstore.get_online_features(\n    features=${service ? `store.get_feature_service(${JSON.stringify(service)})` : what},\n    entity_rows=[${rows.join(', ')}],\n).to_dict()`],
    ['grpcurl', `# the server's gRPC address: serving.grpc in quiver.yaml (127.0.0.1:6567 by default)\ngrpcurl -plaintext${auth ? ` -H "authorization: Bearer $QUIVER_TOKEN"` : ''} -import-path proto/proto \\\n  -proto feast/serving/ServingService.proto \\\n  -d '${grpcBody}' \\\n  ${host}:6567 feast.serving.ServingService/GetOnlineFeatures`],
  ];
}
function copyButton(text) {
  const b = h('button', { type: 'button', class: 'ghost', onclick: async () => {
    try { await navigator.clipboard.writeText(text); b.textContent = 'Copied'; } catch (_) { b.textContent = 'Select and copy (clipboard not allowed here)'; }
    setTimeout(() => { b.textContent = 'Copy'; }, 2000);
  } }, 'Copy');
  return b;
}

pages.lookup = async (main, _parts, params) => {
  const { registry: r } = await current();
  const services = Object.keys(r.feature_services);
  let service = params.has('features') ? '' : (params.get('service') || services[0] || '');
  const featuresText = params.get('features') || '';
  const refsOf = () => (service ? r.feature_services[service].features
    : featuresText.split(',').map((x) => x.trim()).filter(Boolean).map((x) => ({ view: x.split(':')[0], feature: x.split(':')[1] })));
  const keys = keyColumns(r, refsOf());
  const svcSel = h('select', { id: 'lookup-service' }, services.map((n) => h('option', { value: n, selected: n === service }, n)), h('option', { value: '', selected: !service }, '— features listed below —'));
  const featIn = h('input', { type: 'text', id: 'lookup-features', value: featuresText, placeholder: 'view:feature, view:feature', 'aria-label': 'Features' });
  const inputs = keys.map((k) => h('div', {}, h('label', { for: `key-${k.name}` }, `${k.name} (${k.type}; comma-separated for several rows)`),
    h('input', { type: 'text', id: `key-${k.name}`, 'data-key': k.name, value: params.get(k.name) || '' })));
  const result = h('div', { id: 'lookup-result' });
  const submit = (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (svcSel.value) q.set('service', svcSel.value); else q.set('features', featIn.value.trim());
    for (const i of document.querySelectorAll('#main input[data-key]')) q.set(i.dataset.key, i.value.trim());
    q.set('run', '1');
    location.hash = `#/lookup?${q}`;
  };
  svcSel.addEventListener('change', () => {
    const q = new URLSearchParams(svcSel.value ? { service: svcSel.value } : { features: featIn.value });
    location.hash = `#/lookup?${q}`;
  });
  fill(main, h('h1', {}, 'Online lookup'),
    h('form', { class: 'panel', onsubmit: submit },
      h('div', { class: 'row' }, h('div', {}, h('label', { for: 'lookup-service' }, 'Feature service'), svcSel),
        h('div', {}, h('label', { for: 'lookup-features' }, 'or features (with no service chosen)'), featIn)),
      keys.length ? h('div', { class: 'row' }, inputs) : h('p', { class: 'muted' }, 'Choose a service, or list features and press Look up to get their entity keys.'),
      h('button', { type: 'submit', id: 'lookup-submit' }, 'Look up')),
    result);
  if (params.get('run') !== '1' || !keys.length) return;
  const values = {};
  for (const k of keys) {
    values[k.name] = (params.get(k.name) || '').split(',').map((x) => x.trim()).filter((x) => x !== '');
    if (INT.test(k.type) && values[k.name].some((x) => !/^-?\d+$/.test(x))) {
      fill(result, errorBox(`${k.name} is ${k.type}: give whole numbers`)); return;
    }
  }
  const n = values[keys[0].name].length;
  if (!n || keys.some((k) => values[k.name].length !== n)) {
    fill(result, errorBox(`Give the same number of values (at least one) for every key: ${keys.map((k) => `${k.name} has ${values[k.name].length}`).join(', ')}`));
    return;
  }
  const features = service ? [] : refsOf().map((f) => `${f.view}:${f.feature}`);
  const body = `{${service ? `"feature_service":${JSON.stringify(service)}` : `"features":${JSON.stringify(features)}`},"entities":${entitiesJson(keys, values)}}`;
  fill(result, h('p', { class: 'muted' }, 'Asking the server…'));
  let answer;
  try {
    answer = await api('/get-online-features', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body, raw: true });
  } catch (e) { fill(result, errorBox(e)); return; }
  const raw = answer.text;
  answer = answer.body;
  const names = answer.metadata.feature_names;
  const cell = (col, i) => {
    const v = col.values[i];
    const shown = v === null ? 'null' : (typeof v === 'object' ? JSON.stringify(v) : String(v));
    const status = col.statuses ? col.statuses[i] : '';
    return h('div', {}, h('code', {}, shown), status && status !== 'PRESENT' ? [' ', h('span', { class: 'badge stale' }, status)] : (status ? [' ', h('span', { class: 'badge fresh' }, status)] : null),
      col.event_timestamps && col.event_timestamps[i] && !col.event_timestamps[i].startsWith('1970-01-01T00:00:00') ? h('div', { class: 'muted' }, col.event_timestamps[i]) : null);
  };
  const base = location.origin;
  fill(result, h('h2', {}, 'Feature vector'),
    table(names, Array.from({ length: n }, (_, i) => answer.results.map((col, c) => (c < keys.length ? h('code', {}, String(col.values[i])) : cell(col, i)))), { class: 'vector' }),
    h('details', {}, h('summary', {}, 'Response JSON, as the server sent it'), h('pre', { id: 'lookup-json' }, raw)),
    h('h2', {}, 'The same request'),
    snippets(base, body, service, features, keys, values).map(([title, code]) =>
      h('div', { class: 'panel' }, h('div', { class: 'row' }, h('strong', {}, title), copyButton(code)), h('pre', {}, code))));
};

// ---------- live serving ----------

function quantile(q, buckets) {
  // buckets: [[le, cumulative count]] sorted by le, the last +Inf.
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!(total > 0)) return NaN;
  const rank = q * total;
  let prevLe = 0, prevC = 0;
  for (const [le, c] of buckets) {
    if (c >= rank) {
      if (!Number.isFinite(le)) return prevLe;
      return prevLe + (le - prevLe) * ((rank - prevC) / Math.max(c - prevC, 1e-12));
    }
    prevLe = le; prevC = c;
  }
  return NaN;
}
function histograms(snap, name) {
  // endpoint → {count, sum, errors, buckets: Map(le → count)} (outcomes summed)
  const out = {};
  for (const x of snap.samples) {
    if (!x.name.startsWith(name)) continue;
    const key = x.labels.endpoint || '';
    const e = out[key] || (out[key] = { count: 0, sum: 0, errors: 0, buckets: new Map() });
    if (x.name === `${name}_count`) { e.count += x.value; if (x.labels.outcome === 'error') e.errors += x.value; }
    else if (x.name === `${name}_sum`) e.sum += x.value;
    else if (x.name === `${name}_bucket`) {
      const le = x.labels.le === '+Inf' ? Infinity : Number(x.labels.le);
      e.buckets.set(le, (e.buckets.get(le) || 0) + x.value);
    }
  }
  return out;
}
function delta(a, b) {
  // What happened between snapshots a (older) and b, per endpoint.
  const dt = b.unix_seconds - a.unix_seconds;
  const ha = histograms(a, 'quiver_request_duration_seconds'), hb = histograms(b, 'quiver_request_duration_seconds');
  const out = {};
  for (const [ep, e] of Object.entries(hb)) {
    const p = ha[ep] || { count: 0, errors: 0, buckets: new Map() };
    const buckets = [...e.buckets.entries()].sort((x, y) => x[0] - y[0]).map(([le, c]) => [le, c - (p.buckets.get(le) || 0)]);
    const n = e.count - p.count;
    out[ep] = { rate: n / dt, errors: (e.errors - p.errors) / dt, errorRatio: n > 0 ? (e.errors - p.errors) / n : NaN,
      p50: quantile(0.5, buckets), p95: quantile(0.95, buckets), p99: quantile(0.99, buckets), total: e.count };
  }
  return out;
}
const sumOf = (snap, name) => snap.samples.filter((x) => x.name === name).reduce((a, x) => a + x.value, 0);

pages.serving = async (main) => {
  const history = [];
  const body = h('div', {}, h('p', { class: 'muted' }, 'Reading the server\'s metrics…'));
  fill(main, h('h1', {}, 'Live serving'),
    h('p', { class: 'muted' }, 'From this server\'s own metrics (/serving-stats), read every 2 s while the page is open; rates and percentiles over the last 30 s.'),
    body);
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      history.push(await api('/serving-stats'));
      if (history.length > 150) history.shift();
      render();
    } catch (e) { fill(body, errorBox(e)); }
  };
  const render = () => {
    if (history.length < 2) { fill(body, h('p', { class: 'muted' }, 'Waiting for a second reading…')); return; }
    const last = history[history.length - 1];
    const windowStart = history.find((x) => last.unix_seconds - x.unix_seconds <= 30) || history[0];
    const recent = delta(windowStart === last ? history[history.length - 2] : windowStart, last);
    const steps = history.slice(1).map((b, i) => ({ at: b.unix_seconds * 1000, d: delta(history[i], b) }));
    const endpoints = [...new Set(steps.flatMap((x) => Object.keys(x.d)))].sort();
    const per = (f) => endpoints.map((ep) => ({ name: ep, points: steps.filter((x) => x.d[ep]).map((x) => [x.at, f(x.d[ep])]) }));
    const hits = sumOf(last, 'quiver_cache_hits_total'), misses = sumOf(last, 'quiver_cache_misses_total');
    const errorsByCode = last.samples.filter((x) => x.name === 'quiver_request_errors_total');
    fill(body, 
      h('div', { class: 'cards' },
        h('div', { class: 'card' }, h('div', { class: 'n', id: 'live-rate' }, fmtNum(Object.values(recent).reduce((a, x) => a + x.rate, 0), 1)), h('div', { class: 'k' }, 'requests/s (all endpoints)')),
        h('div', { class: 'card' }, h('div', { class: 'n' }, fmtNum(Object.values(recent).reduce((a, x) => a + x.errors, 0), 2)), h('div', { class: 'k' }, 'errors/s')),
        h('div', { class: 'card' }, h('div', { class: 'n' }, hits + misses ? `${((100 * hits) / (hits + misses)).toFixed(1)}%` : '–'), h('div', { class: 'k' }, 'cache hit rate (since start)')),
        h('div', { class: 'card' }, h('div', { class: 'n' }, fmtNum(sumOf(last, 'quiver_registry_version'))), h('div', { class: 'k' }, 'registry version served'))),
      table(['Endpoint', { label: 'req/s', num: true }, { label: 'p50', num: true }, { label: 'p95', num: true }, { label: 'p99', num: true }, { label: 'error ratio', num: true }, { label: 'requests since start', num: true }],
        Object.entries(recent).sort().map(([ep, x]) => [h('code', {}, ep), fmtNum(x.rate, 1), fmtMs(x.p50), fmtMs(x.p95), fmtMs(x.p99),
          Number.isFinite(x.errorRatio) ? `${(x.errorRatio * 100).toFixed(2)}%` : '–', fmtNum(x.total)]), { class: 'live' }),
      h('div', { class: 'charts' },
        lineChart({ title: 'Requests per second', series: per((x) => x.rate) }),
        lineChart({ title: 'p99 latency (ms)', series: per((x) => x.p99 * 1000) }),
        lineChart({ title: 'Error ratio', yFormat: (y) => `${(y * 100).toFixed(1)}%`, series: per((x) => x.errorRatio) })),
      h('h2', {}, 'Errors since start, by protocol and code'),
      errorsByCode.length ? table(['Protocol', 'Code', { label: 'Count', num: true }], errorsByCode.map((x) => [x.labels.protocol, x.labels.code, fmtNum(x.value)]))
        : h('p', { class: 'muted' }, 'None.'));
  };
  await tick();
  const timer = setInterval(tick, 2000);
  cleanups.push(() => { stopped = true; clearInterval(timer); });
};

// ---------- router ----------

let cleanups = [];
let generation = 0;
async function route() {
  cleanups.forEach((f) => f());
  cleanups = [];
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const name = parts[0] || 'overview';
  const params = new URLSearchParams(query);
  const nav = name === 'view' ? 'registry' : name;
  document.querySelectorAll('[data-nav]').forEach((a) => (a.dataset.nav === nav ? a.setAttribute('aria-current', 'page') : a.removeAttribute('aria-current')));
  const main = document.getElementById('main');
  const mine = ++generation;
  // Render into a detached element, shown only if no newer route started meanwhile.
  const target = h('div');
  const page = pages[name];
  document.title = `Quiver · ${name}`;
  try {
    if (!page) throw new Error(`No page “${name}”.`);
    await page(target, parts.slice(1), params);
  } catch (e) {
    fill(target, h('h1', {}, 'Quiver console'), errorBox(e),
      e.status === 401 ? h('p', {}, h('button', { type: 'button', onclick: () => askToken(null) }, 'Enter a token')) : null);
  }
  if (mine !== generation) return;
  fill(main, ...target.childNodes);
  main.dataset.page = name;
  main.dataset.ready = '1';
}

document.addEventListener('DOMContentLoaded', () => {
  setupToken();
  window.addEventListener('hashchange', () => { document.getElementById('main').dataset.ready = ''; route(); });
  route();
});
