// Quiver console, part 2 of 4: plots and the lineage graph, drawn as SVG here (no charting
// library to vendor: a line plot with axes, points and tooltips is all the pages need).
'use strict';


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
  if (span < 10 * 86400e3) return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
  if (span < 300 * 86400e3) return iso.slice(5, 10);
  return iso.slice(0, 10);
}

// A line plot of `series` ([{name, points: [[x, y]…]}]); x is a time in ms unless `xTime`
// is false. Each point is a circle with its value as a tooltip; the figure says how many.
function lineChart({ title, series, yFormat = fmtNum, xTime = true, height = 220, yZero = true, xRange = null }) {
  const W = 640, H = height, L = 62, R = 14, T = 12, B = 30;
  const all = series.flatMap((se) => se.points.filter((p) => Number.isFinite(p[1])));
  const fig = h('figure', { class: 'panel', 'data-points': String(all.length) }, h('figcaption', {}, h('strong', {}, title)));
  if (!all.length) {
    fig.append(h('p', { class: 'muted' }, 'No data points yet.'));
    return fig;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let [x0, x1] = xRange || [Math.min(...xs), Math.max(...xs)];
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

