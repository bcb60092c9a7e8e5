// Quiver console, part 4 of 4: the online lookup and live serving pages.
'use strict';

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
// A shell word: single-quoted, each ' written as '\''.
const shellQuote = (t) => `'${t.replace(/'/g, "'\\''")}'`;

function snippets(base, body, service, features, keys, values, grpc) {
  const auth = sessionStorage.getItem(TOKEN_KEY) ? ` -H "Authorization: Bearer $QUIVER_TOKEN"` : '';
  const py = (v, k) => (INT.test(k.type) ? v : JSON.stringify(v));
  const pyEntities = `{${keys.map((k) => `${JSON.stringify(k.name)}: [${values[k.name].map((v) => py(v, k)).join(', ')}]`).join(', ')}}`;
  const rows = values[keys[0].name].map((_, i) => `{${keys.map((k) => `${JSON.stringify(k.name)}: ${py(values[k.name][i], k)}`).join(', ')}}`);
  const what = service ? JSON.stringify(service) : `[${features.map((f) => JSON.stringify(f)).join(', ')}]`;
  const grpcValue = (k, v) => (INT.test(k.type) ? `{"${k.type}_val":"${v}"}` : `{"string_val":${JSON.stringify(v)}}`);
  const grpcBody = `{${service ? `"feature_service":${JSON.stringify(service)}` : `"features":{"val":[${features.map((f) => JSON.stringify(f)).join(',')}]}`},"entities":{${keys.map((k) => `"${k.name}":{"val":[${values[k.name].map((v) => grpcValue(k, v)).join(',')}]}`).join(',')}}}`;
  // The server's own gRPC port, on the host this page was loaded from.
  const tls = base.startsWith('https:');
  const grpcTarget = grpc.address ? `${new URL(base).hostname}:${grpc.address.split(':').pop()}` : null;
  return [
    ['curl', `${tls ? '# a private CA: add --cacert ca.pem\n' : ''}curl -s ${base}/get-online-features${auth} \\\n  -H 'Content-Type: application/json' \\\n  -d ${shellQuote(body)}`],
    ['Python (quiver package)', `import os, quiver\nclient = quiver.Client("${base}"${auth ? ', token=os.environ["QUIVER_TOKEN"]' : ''})\nclient.get_online_features(${what}, ${pyEntities}).to_dict()`],
    ['Python (Feast SDK, online_store: {type: remote, path: ' + base + '})', `from feast import FeatureStore\nstore = FeatureStore(repo_path=".")  # a Feast repo declaring the same views\nstore.get_online_features(\n    features=${service ? `store.get_feature_service(${JSON.stringify(service)})` : what},\n    entity_rows=[${rows.join(', ')}],\n).to_dict()`],
    ['grpcurl', grpcTarget
      ? `${grpc.tls ? '# a private CA: add -cacert ca.pem\n' : ''}grpcurl${grpc.tls ? '' : ' -plaintext'}${auth ? ` -H "authorization: Bearer $QUIVER_TOKEN"` : ''} -import-path proto/proto \\\n  -proto feast/serving/ServingService.proto \\\n  -d ${shellQuote(grpcBody)} \\\n  ${grpcTarget} feast.serving.ServingService/GetOnlineFeatures`
      : '# this server serves no gRPC port (serving.grpc / --grpc is off)'],
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
  const { registry: r, overview } = await current();
  const grpc = { address: overview.grpc, tls: overview.tls };
  const services = Object.keys(r.feature_services);
  let service = params.has('features') ? '' : (params.get('service') || services[0] || '');
  const featuresText = params.get('features') || '';
  // `view:feature`, or a view's name for all its features (as in a service).
  const refsOf = () => (service ? r.feature_services[service].features
    : featuresText.split(',').map((x) => x.trim()).filter(Boolean).flatMap((x) => {
      const [view, feature] = x.split(':');
      if (feature !== undefined) return [{ view, feature }];
      const v = r.feature_views[view];
      return v ? v.features.map((f) => ({ view, feature: f.name })) : [{ view, feature: '' }];
    }));
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
  const features = service ? [] : refsOf().map((f) => (f.feature ? `${f.view}:${f.feature}` : f.view));
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
    EXACT_INTEGERS ? null : h('p', { class: 'error' }, 'This browser rounds integers beyond 2^53 when it reads JSON: compare int64 values with the response JSON below.'),
    table(names, Array.from({ length: n }, (_, i) => answer.results.map((col, c) => (c < keys.length ? h('code', {}, String(col.values[i])) : cell(col, i)))), { class: 'vector' }),
    h('details', {}, h('summary', {}, 'Response JSON, as the server sent it'), h('pre', { id: 'lookup-json' }, raw)),
    h('h2', {}, 'The same request'),
    snippets(base, body, service, features, keys, values, grpc).map(([title, code]) =>
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
    h('p', { class: 'muted' }, 'From this server\'s own metrics (/serving-stats), read every 2 s while the page is open; rates and percentiles over the last 30 s (or since the page opened, when that is shorter).'),
    body);
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      const next = await api('/serving-stats');
      // A counter that went down means the server restarted: rates start again from here.
      const total = (x) => sumOf(x, 'quiver_request_duration_seconds_count');
      if (history.length && total(next) < total(history[history.length - 1])) history.length = 0;
      history.push(next);
      if (history.length > 150) history.shift();
      render();
    } catch (e) {
      if (e.status === 401 || e.status === 403) {
        // Asking again every 2 s would only fail again (and count as auth failures): stop
        // until the page is opened again (a token entered in the dialog reopens it).
        stopped = true;
        fill(body, errorBox(e), e.status === 403
          ? h('p', {}, 'This server keeps its metrics for admin tokens (serving.auth.metrics_public: false): live serving needs a token with the admin scope.')
          : null);
        return;
      }
      fill(body, errorBox(e));
    }
  };
  const render = () => {
    if (history.length < 2) { fill(body, h('p', { class: 'muted' }, 'Waiting for a second reading…')); return; }
    const last = history[history.length - 1];
    const windowStart = history.find((x) => last.unix_seconds - x.unix_seconds <= 30) || history[0];
    const recent = delta(windowStart === last ? history[history.length - 2] : windowStart, last);
    const steps = history.slice(1).map((b, i) => ({ at: b.unix_seconds * 1000, d: delta(history[i], b) }));
    const endpoints = [...new Set(steps.flatMap((x) => Object.keys(x.d)))].sort();
    // Every plot over the same span: from the first step to the last reading.
    const xRange = [steps[0].at, steps[steps.length - 1].at];
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
        lineChart({ title: 'Requests per second', series: per((x) => x.rate), xRange }),
        lineChart({ title: 'p99 latency (ms)', series: per((x) => x.p99 * 1000), xRange }),
        lineChart({ title: 'Error ratio', yFormat: (y) => `${(y * 100).toFixed(1)}%`, series: per((x) => x.errorRatio), xRange })),
      h('h2', {}, 'Errors since start, by protocol and code'),
      errorsByCode.length ? table(['Protocol', 'Code', { label: 'Count', num: true }], errorsByCode.map((x) => [x.labels.protocol, x.labels.code, fmtNum(x.value)]))
        : h('p', { class: 'muted' }, 'None.'));
  };
  // One reading at a time, the next 2 s after the last one ended; stopped (before the first
  // reading returns, too) when the page is left.
  let timer = null;
  cleanups.push(() => { stopped = true; clearTimeout(timer); });
  const loop = async () => {
    await tick();
    if (!stopped) timer = setTimeout(loop, 2000);
  };
  await loop();
};

