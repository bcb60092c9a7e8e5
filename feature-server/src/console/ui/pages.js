// Quiver console, part 3 of 4: the overview, registry, versions and materialization pages.
'use strict';

pages.overview = async (main) => {
  const { overview: o } = await current();
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
      h('br'), 'Age = now − the newer of the view\'s materialization watermark and the newest event pushed through this server. Fresh: within half the ttl; aging: within the ttl; stale: older than the ttl (values served as expired); never: no watermark in this generation.'),
    table(['View', 'Freshness', { label: 'Age', num: true }, 'ttl', 'Watermark', 'Newest push here', 'Last run', { label: 'Keys written', num: true }, ''],
      views.map((v) => [
        h('a', { href: `#/view/${encodeURIComponent(v.name)}` }, v.name),
        badge(v.freshness),
        fmtAge(v.age_seconds),
        v.ttl_seconds ? v.ttl : 'none',
        v.watermark || '–',
        v.newest_push || '–',
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
  // A push source's columns, a batch source's path are found too.
  return [item.name, item.description, item.owner, item.path, ...Object.keys(item.schema || {}), ...Object.keys(t), ...Object.values(t)]
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
      ['ttl', v.ttl === '0' ? 'none (values never expire)' : v.ttl],
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
    const all = [...Object.entries(r.sources).map(([n, v]) => ({ ...v, name: n, push: false })),
      ...Object.entries(r.push_sources || {}).map(([n, v]) => ({ ...v, name: n, push: true }))];
    body.append(...[list(all, (src) => sourceCard(src.name, src, src.push))].flat());
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
    h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Registry sections', onkeydown: (e) => {
      // Left and right arrows move between tabs (and show the one reached).
      const step = { ArrowLeft: -1, ArrowRight: 1 }[e.key];
      if (!step) return;
      e.preventDefault();
      const ids = tabs.map((t) => t[0]);
      const next = ids[(ids.indexOf(section) + step + ids.length) % ids.length];
      document.getElementById(`tab-${next}`).focus();
      go(next, q);
    } }, tabs.map(([id, label, n]) => h('button', { type: 'button', role: 'tab', id: `tab-${id}`, tabindex: id === section ? '0' : '-1', 'aria-selected': String(id === section), 'aria-controls': 'registry-panel', onclick: () => go(id, q) }, label, n === null ? '' : ` (${n})`))),
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
  const number = (text, fallback) => (/^\d+$/.test(text || '') ? Number(text) : fallback);
  const to = number(params.get('to'), newest);
  const from = number(params.get('from'), Math.max(0, to - 1));
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
  const { registry: r, overview } = await current();
  const names = Object.keys(r.feature_views);
  const view = params.get('view') || names.find((n) => r.feature_views[n].online) || names[0];
  const select = h('select', { id: 'runs-view', onchange: () => { location.hash = `#/runs?view=${encodeURIComponent(select.value)}`; } },
    names.map((n) => h('option', { value: n, selected: n === view }, n)));
  const head = [h('h1', {}, 'Materialization'), h('div', { class: 'row' }, h('div', {}, h('label', { for: 'runs-view' }, 'Feature view'), select))];
  if (!view) { fill(main, ...head, h('p', {}, 'No feature views.')); return; }
  const { runs, total } = await api(`/registry/runs?view=${encodeURIComponent(view)}&limit=1000`);
  const at = (run) => parseTime(run.finished_at);
  const v = r.feature_views[view];
  const features = v ? v.features.map((f) => f.name) : [];
  const feature = params.get('feature') && features.includes(params.get('feature')) ? params.get('feature') : features[0];
  const fsel = h('select', { id: 'runs-feature', onchange: () => { location.hash = `#/runs?view=${encodeURIComponent(view)}&feature=${encodeURIComponent(fsel.value)}`; } },
    features.map((n) => h('option', { value: n, selected: n === feature }, n)));
  const stat = (k) => runs.filter((run) => run.features[feature]).map((run) => [at(run), run.features[feature][k] ?? NaN]);
  fill(main, ...head,
    overview.registry !== 'ok' ? h('div', { class: 'error', role: 'alert' }, `The registry store: ${overview.registry}. Run records may be missing.`) : null,
    h('p', { class: 'muted' }, runs.length < (total ?? 0)
      ? `The newest ${fmtNum(runs.length)} of ${fmtNum(total)} recorded runs of ${view}`
      : `${fmtNum(runs.length)} recorded run${runs.length === 1 ? '' : 's'} of ${view}${total === null && runs.length >= 1000 ? ' (the newest; there may be more)' : ''}`,
    ` (all generations; the current is ${v ? v.generation : '–'}).`),
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

