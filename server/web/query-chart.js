// query-chart.js: decides whether a query result can be charted, and how.
// A chart when the first column is a timestamp and at least one other is
// numeric; when the result also has a text column `tag` (a grouped query:
// tag, time bucket, aggregate) there is one series per tag. Numeric means
// type int or float, or `any` (a reading's value) holding numbers.

import { parseTs } from './ui.js';
import { toNumber } from './chart.js';

const MAX_SERIES = 50;

function isNumeric(columns, rows, i) {
  const type = columns[i].type;
  if (type === 'int' || type === 'float') return true;
  if (type !== 'any') return false;
  let numbers = 0;
  for (const row of rows) {
    const v = row[i];
    if (typeof v === 'number') numbers += 1;
    else if (v !== null && typeof v !== 'boolean') return false;
  }
  return numbers > 0;
}

/** {labels, series} for chart.js's mergeSeries, or null when there is nothing to draw. */
export function chartPlan(columns, rows) {
  if (!rows.length || columns.length < 2) return null;
  let x = columns[0].type === 'timestamp' ? 0 : -1;
  const tag = columns.findIndex((c) => c.name === 'tag' && c.type === 'text');
  if (x < 0 && tag >= 0) x = columns.findIndex((c) => c.type === 'timestamp');
  if (x < 0) return null;
  const values = columns.map((_, i) => i).filter((i) => i !== x && i !== tag && isNumeric(columns, rows, i));
  if (!values.length) return null;
  return tag >= 0 ? byTag(columns, rows, x, tag, values) : plain(columns, rows, x, values);
}

function plain(columns, rows, x, values) {
  const series = values.map(() => []);
  for (const row of rows) {
    const t = parseTs(row[x]);
    if (!Number.isFinite(t)) continue;
    values.forEach((i, k) => series[k].push([t, toNumber(row[i])]));
  }
  return { labels: values.map((i) => columns[i].name), series };
}

function byTag(columns, rows, x, tag, values) {
  const index = new Map(); // series label -> position
  const series = [];
  for (const row of rows) {
    const t = parseTs(row[x]);
    if (!Number.isFinite(t)) continue;
    for (const i of values) {
      const label = values.length === 1 ? String(row[tag]) : `${row[tag]} ${columns[i].name}`;
      if (!index.has(label)) {
        if (index.size >= MAX_SERIES) continue;
        index.set(label, series.length);
        series.push([]);
      }
      series[index.get(label)].push([t, toNumber(row[i])]);
    }
  }
  return { labels: [...index.keys()], series };
}
