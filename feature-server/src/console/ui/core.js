// Quiver console, part 1 of 4: DOM helpers, formatting, the API client, the token dialog and
// the hash router. One static page, hash routes (#/registry, #/runs?view=…), data from the
// server's read-only JSON API; no framework, no build step, nothing loaded from elsewhere.
// Every string from the server goes in as text, never HTML. The four files share the page's
// global scope (classic scripts, loaded in order with `defer`).
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
  let response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch (e) {
    throw new HttpError(0, `The server did not answer (is it running? is the network up?): ${e.message}`);
  }
  const text = await response.text();
  let body = text;
  try { body = parseJson(text); } catch (_) { /* not JSON */ }
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

// JSON.parse, except that an integer beyond 2^53 keeps every digit (as its decimal string):
// int64 keys and values must be shown as the server sent them.
// Whether this browser gives revivers the source text (Chrome 114+, Firefox 135+, Safari 18.4+).
const EXACT_INTEGERS = (() => {
  let seen = false;
  JSON.parse('1', (_k, v, context) => { seen = Boolean(context && context.source === '1'); return v; });
  return seen;
})();

function parseJson(text) {
  return JSON.parse(text, (_key, value, context) =>
    (typeof value === 'number' && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source || '')
      ? context.source : value));
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
  document.getElementById('foot-text').textContent =
    `Quiver ${overview.server_version} · project ${overview.project} · registry version ${overview.version} · read-only`;
  return { overview, registry: version.registry, version };
}

// ---------- token ----------

function askToken(why) {
  const dialog = document.getElementById('token-dialog');
  if (why) document.getElementById('token-why').textContent =
    `${why}. Any token with a read scope works; it is kept in this tab's session storage only.`;
  // Already asking: keep what is being typed.
  if (dialog.open) return;
  document.getElementById('token-input').value = '';
  dialog.showModal();
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

const pages = {};

// ---------- router ----------

let cleanups = [];
let generation = 0;
async function route() {
  cleanups.forEach((f) => f());
  cleanups = [];
  // What had the focus (a tab, a field), to give it back after the page is drawn again.
  const focused = document.activeElement && document.activeElement.id;
  const raw = location.hash.startsWith('#/') ? location.hash.slice(2) : '';
  const [path, query = ''] = raw.split('?');
  const decode = (p) => { try { return decodeURIComponent(p); } catch (_) { return p; } };
  const parts = path.split('/').filter(Boolean).map(decode);
  const name = parts[0] || 'overview';
  let params;
  try { params = new URLSearchParams(query); } catch (_) { params = new URLSearchParams(); }
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
  const again = focused && document.getElementById(focused);
  if (again && main.contains(again)) again.focus();
}

document.addEventListener('DOMContentLoaded', () => {
  setupToken();
  // Only `#/…` are routes (the skip link's `#main` is not).
  window.addEventListener('hashchange', () => {
    if (location.hash && !location.hash.startsWith('#/')) return;
    document.getElementById('main').dataset.ready = '';
    route();
  });
  document.querySelector('.skip').addEventListener('click', (e) => {
    e.preventDefault();
    document.getElementById('main').focus();
  });
  route();
});

