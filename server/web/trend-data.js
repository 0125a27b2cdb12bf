// trend-data.js: the data behind a trend. Counts the readings of the tags
// in the range first; when they fit in the chart's pixel budget it reads
// them raw, otherwise it reads time buckets (min, max, avg per bucket, drawn
// as dygraphs customBars) of a whole number of seconds chosen so that no
// series has more buckets than its share of the pixels. Live readings are
// merged in afterwards (addLive) and the window slides (trim).

import * as api from './api.js';
import { parseTs } from './ui.js';
import { toNumber } from './chart.js';

/** A SQL string literal (single quotes doubled). */
export function sqlString(text) {
  return `'${String(text).replace(/'/g, "''")}'`;
}

/** RFC 3339 UTC text of epoch milliseconds. */
export function iso(ms) {
  return new Date(ms).toISOString();
}

function whereClause(tags, from, to) {
  const list = tags.map(sqlString).join(', ');
  return `tag IN (${list}) AND ts >= ${sqlString(iso(from))} AND ts < ${sqlString(iso(to))}`;
}

export function countSql(tags, from, to) {
  return `SELECT tag, count(*) FROM readings WHERE ${whereClause(tags, from, to)} GROUP BY tag`;
}

export function rawSql(tags, from, to) {
  return `SELECT tag, ts, value FROM readings WHERE ${whereClause(tags, from, to)} ORDER BY ts`;
}

export function bucketSql(tags, from, to, seconds) {
  return `SELECT tag, time_bucket(INTERVAL '${seconds} seconds', ts) AS t, min(value), max(value), avg(value), count(*) `
    + `FROM readings WHERE ${whereClause(tags, from, to)} GROUP BY tag, t ORDER BY t`;
}

/** Whole seconds per bucket so that a range fits in `budget` buckets (epoch-aligned buckets may straddle both ends). */
export function bucketSeconds(rangeMs, budget) {
  return Math.max(1, Math.ceil(rangeMs / 1000 / Math.max(1, budget - 1)));
}

/** Readings per tag in the range: Map tag -> count. */
async function countPoints(tags, from, to) {
  const answer = await api.query(countSql(tags, from, to));
  return new Map(answer.rows.map((r) => [r[0], Number(r[1]) || 0]));
}

/**
 * Loads a trend: {mode: 'raw'|'buckets', bucketMs, from, to, tags,
 * series: Map tag -> points}. Raw points are {x, v}; bucket points
 * {x, lo, mid, hi, n}. budget is the chart's width in pixels.
 */
export async function loadTrend(tags, from, to, budget) {
  const counts = await countPoints(tags, from, to);
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const data = { tags, from, to, budget, series: new Map(tags.map((t) => [t, []])), lastX: new Map() };
  if (total <= budget) {
    data.mode = 'raw';
    data.bucketMs = 0;
    fillRaw(data, await api.query(rawSql(tags, from, to)));
  } else {
    const withData = [...counts.values()].filter((n) => n > 0).length || 1;
    const seconds = bucketSeconds(to - from, Math.floor(budget / withData));
    data.mode = 'buckets';
    data.bucketMs = seconds * 1000;
    fillBuckets(data, await api.query(bucketSql(tags, from, to, seconds)));
  }
  return data;
}

function fillRaw(data, answer) {
  for (const [tag, ts, value] of answer.rows) {
    const points = data.series.get(tag);
    const x = parseTs(ts);
    if (!points || !Number.isFinite(x)) continue;
    points.push({ x, v: toNumber(value) });
    data.lastX.set(tag, x);
  }
}

function fillBuckets(data, answer) {
  for (const [tag, t, min, max, avg, count] of answer.rows) {
    const points = data.series.get(tag);
    const x = parseTs(t);
    if (!points || !Number.isFinite(x)) continue;
    const lo = toNumber(min);
    const hi = toNumber(max);
    let mid = toNumber(avg);
    if (mid === null && lo !== null && hi !== null) mid = (lo + hi) / 2;
    points.push({ x, lo, mid, hi, n: Number(count) || 1 });
  }
}

/** Merges one live reading; true when the chart changed. */
export function addLive(data, reading) {
  const points = data.series.get(reading.tag);
  const x = parseTs(reading.ts);
  const v = toNumber(reading.value);
  if (!points || !Number.isFinite(x) || x < data.to) return false;
  if (data.mode === 'raw') return addRaw(data, points, reading.tag, x, v);
  if (v === null || reading.quality === 'bad') return false;
  return addToBucket(data, points, x, v);
}

function addRaw(data, points, tag, x, v) {
  const last = data.lastX.get(tag);
  if (last !== undefined && x <= last) return false;
  points.push({ x, v });
  data.lastX.set(tag, x);
  return true;
}

function addToBucket(data, points, x, v) {
  const start = Math.floor(x / data.bucketMs) * data.bucketMs;
  const last = points[points.length - 1];
  if (last && last.x === start) {
    last.lo = last.lo === null ? v : Math.min(last.lo, v);
    last.hi = last.hi === null ? v : Math.max(last.hi, v);
    last.mid = last.mid === null ? v : (last.mid * last.n + v) / (last.n + 1);
    last.n += 1;
    return true;
  }
  if (last && start < last.x) return false;
  points.push({ x: start, lo: v, mid: v, hi: v, n: 1 });
  return true;
}

/** Drops points before a new window start. */
export function trim(data, from) {
  data.from = from;
  const keepFrom = data.mode === 'raw' ? from : from - data.bucketMs;
  for (const points of data.series.values()) {
    let i = 0;
    while (i < points.length && points[i].x < keepFrom) i += 1;
    if (i) points.splice(0, i);
  }
}

/** Points drawn (values that are not null). */
export function pointCount(data) {
  let n = 0;
  for (const points of data.series.values()) {
    for (const p of points) if ((data.mode === 'raw' ? p.v : p.mid) !== null) n += 1;
  }
  return n;
}

/** The series as chart input: arrays of [x, y] with y a number or [lo, mid, hi]. */
export function chartSeries(data) {
  return data.tags.map((tag) => data.series.get(tag).map((p) => (
    data.mode === 'raw' ? [p.x, p.v] : [p.x, p.mid === null ? null : [p.lo, p.mid, p.hi]])));
}
