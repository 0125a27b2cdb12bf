// chart.js: what the trend and query pages share for charts: dygraphs
// (vendored 2.2.1, a classic script that sets window.Dygraph), series
// merged into its row format, and CSV of what a chart shows.

import { fmtMs, fmtNumber } from './ui.js';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b',
  '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

/** Dygraphs puts labels in its legend as HTML: keep them plain text. */
export function safeLabel(text) {
  return String(text).replace(/[<>&"']/g, '_');
}

/**
 * Merges series (arrays of [x ms, y], y a number, [lo, mid, hi] or null)
 * into dygraphs rows [Date, y1, y2, …], null where a series has no point at
 * that time; `edges` (x values) add empty rows that stretch the time axis.
 */
export function mergeSeries(series, edges = []) {
  const width = series.length + 1;
  const byX = new Map();
  const rowAt = (x) => {
    let row = byX.get(x);
    if (!row) {
      row = new Array(width).fill(null);
      row[0] = x;
      byX.set(x, row);
    }
    return row;
  };
  series.forEach((points, i) => {
    for (const [x, y] of points) rowAt(x)[i + 1] = y;
  });
  for (const x of edges) if (Number.isFinite(x)) rowAt(x);
  const rows = [...byX.values()].sort((a, b) => a[0] - b[0]);
  for (const row of rows) row[0] = new Date(row[0]);
  return rows;
}

/**
 * A new chart in node (emptied first); legendNode (optional) gets the
 * legend. Dygraphs' own legend is HTML with style attributes, which the
 * node's Content-Security-Policy blocks, so the legend is drawn here.
 */
export function newChart(node, rows, labels, { customBars = false, legendNode = null, ...extra } = {}) {
  const Dygraph = dygraphs();
  node.replaceChildren();
  let graph = null;
  const legend = (x, points) => legendNode && graph && drawLegend(legendNode, graph, x, points);
  graph = new Dygraph(node, rows, {
    labels: labels.map(safeLabel),
    customBars,
    connectSeparatedPoints: true,
    colors: COLORS,
    strokeWidth: 1.5,
    highlightCallback: (ev, x, points) => legend(x, points),
    unhighlightCallback: () => legend(null, []),
    animatedZooms: false,
    axisLabelFontSize: 12,
    xRangePad: 2,
    ...extra,
  });
  legend(null, []);
  return graph;
}

/** window.Dygraph without its legend plugin (it sets style attributes, which the CSP refuses). */
function dygraphs() {
  const Dygraph = window.Dygraph;
  if (!Dygraph) throw new Error('the chart library did not load (/ui/vendor/dygraph.min.js)');
  const legend = Dygraph.Plugins && Dygraph.Plugins.Legend;
  if (legend) Dygraph.PLUGINS = Dygraph.PLUGINS.filter((p) => p !== legend);
  return Dygraph;
}

/** The legend: each series' colour and name, with the values under the mouse. */
function drawLegend(node, graph, x, points) {
  const names = graph.getLabels().slice(1);
  const colors = graph.getColors();
  const values = new Map(points.map((p) => [p.name, p.yval]));
  const items = names.map((name, i) => {
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.backgroundColor = colors[i];
    const item = document.createElement('span');
    item.className = 'legend-item';
    const v = values.get(name);
    item.append(swatch, Number.isFinite(v) ? `${name}: ${fmtNumber(v)}` : name);
    return item;
  });
  const time = document.createElement('span');
  time.className = 'legend-time';
  time.textContent = x === null ? '' : fmtMs(x);
  node.replaceChildren(time, ...items);
}

function csvField(value) {
  if (value === null || value === undefined) return '';
  const text = value instanceof Date ? value.toISOString() : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * CSV text of dygraphs rows between x0 and x1 (ms): a header line, then one
 * line per row that has a value; [lo, mid, hi] cells become three columns.
 */
export function toCsv(labels, rows, { customBars = false, x0 = -Infinity, x1 = Infinity } = {}) {
  const head = [labels[0]];
  for (const l of labels.slice(1)) {
    if (customBars) head.push(`${l} min`, `${l} avg`, `${l} max`);
    else head.push(l);
  }
  const lines = [head.map(csvField).join(',')];
  for (const row of rows) {
    const x = row[0].getTime();
    if (x < x0 || x > x1 || row.slice(1).every((v) => v === null)) continue;
    const cells = [row[0]];
    for (const v of row.slice(1)) {
      if (customBars) cells.push(...(v ? [v[0], v[1], v[2]] : [null, null, null]));
      else cells.push(v);
    }
    lines.push(cells.map(csvField).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** Offers text as a file download (a Blob and an <a download>). */
export function download(filename, text, type = 'text/csv') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A value as a chart number: numbers, bools as 0/1, anything else null. */
export function toNumber(value) {
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  return null;
}
