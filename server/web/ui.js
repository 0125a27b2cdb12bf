// ui.js: small DOM and formatting helpers shared by the pages.
// Everything that comes from the server is put in the page with
// textContent or attributes, never as HTML.

// The node's clock less this browser's (ms), from the last session answer.
// "Now" for staleness, trend windows and "ago" is the node's: readings are
// stamped by the nodes, and a PC whose clock is off would otherwise mark
// every value stale, or none.
let nodeClockAheadMs = 0;

/** Takes the node's time (µs) from a session answer just received. */
export function setNodeClock(nowUs) {
  if (Number.isFinite(nowUs)) nodeClockAheadMs = nowUs / 1000 - Date.now();
}

/** The node's time now, in epoch ms. */
export function nodeNow() {
  return Date.now() + nodeClockAheadMs;
}

/** How far the node's clock is ahead of this browser's (ms; negative: behind). */
export function nodeClockAhead() {
  return nodeClockAheadMs;
}

/** Creates an element: el('td', {class: 'x', text: 'y', data: {tag: 't'}}, child...). */
export function el(name, attrs = {}, ...children) {
  const node = document.createElement(name);
  for (const [key, value] of Object.entries(attrs)) {
    setAttr(node, key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function setAttr(node, key, value) {
  if (value === null || value === undefined || value === false) return;
  if (key === 'text') node.textContent = String(value);
  else if (key === 'class') node.className = value;
  else if (key === 'data') Object.assign(node.dataset, value);
  else if (key === 'hidden' || key === 'disabled' || key === 'checked') node[key] = Boolean(value);
  else if (key === 'value') node.value = value;
  else node.setAttribute(key, value === true ? '' : String(value));
}

/** Removes every child of a node. */
export function clear(node) {
  node.replaceChildren();
  return node;
}

/** Sets textContent only when it changes (saves layout work). */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** Sets or removes the title attribute only when it changes. */
export function setTitle(node, title) {
  if ((node.getAttribute('title') || '') === title) return;
  if (title) node.setAttribute('title', title);
  else node.removeAttribute('title');
}

const TS_RE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/;

/** Milliseconds since the epoch of RFC 3339 text (microseconds kept as a fraction); NaN if not a time. */
export function parseTs(text) {
  if (typeof text !== 'string') return NaN;
  const m = TS_RE.exec(text);
  if (!m) return Date.parse(text);
  const frac = m[2] ? Number(`0.${m[2]}`) * 1000 : 0;
  return Date.parse(m[1] + m[3]) + frac;
}

function pad(n, width = 2) {
  return String(n).padStart(width, '0');
}

/** Local time as `YYYY-MM-DD HH:MM:SS.mmm` from epoch milliseconds. */
export function fmtMs(ms) {
  if (!Number.isFinite(ms)) return '';
  const d = new Date(ms);
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `${date} ${time}.${pad(d.getMilliseconds(), 3)}`;
}

/** Local time of RFC 3339 text; the text itself when it does not parse. */
export function fmtTs(text) {
  if (text === null || text === undefined) return '';
  const ms = parseTs(text);
  return Number.isFinite(ms) ? fmtMs(ms) : String(text);
}

/** A reading's value for a table cell. */
export function fmtValue(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'number') return fmtNumber(value);
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** Numbers: integers as they are, others to 7 significant digits. */
export function fmtNumber(n) {
  if (Number.isInteger(n)) return String(n);
  if (!Number.isFinite(n)) return String(n);
  return String(Number.parseFloat(n.toPrecision(7)));
}

/** Milliseconds as a short duration: 850 ms, 4.2 s, 3 min, 2 h. */
export function fmtDuration(ms) {
  if (!Number.isFinite(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** A tag name for a URL hash: escaped, but with its slashes kept. */
export function urlName(name) {
  return encodeURIComponent(name).replace(/%2F/g, '/');
}

/** Thousands separators for counts. */
export function fmtCount(n) {
  return Number.isFinite(n) ? n.toLocaleString('en-US') : String(n ?? '');
}

/** The text to show for an error thrown by api.js (or anything else). */
export function errorText(err) {
  if (err && typeof err.message === 'string' && err.message) return err.message;
  return String(err);
}

/** Shows an error in a message element (hidden when err is null). */
export function showError(node, err) {
  if (!node) return;
  node.hidden = !err;
  node.textContent = err ? errorText(err) : '';
}

/**
 * Keeps a table body's rows in step with a list of items, by key: rows of
 * keys no longer listed are removed, new ones built, all updated, in order.
 * `build(item)` returns a new <tr>; `update(tr, item)` refreshes its cells.
 */
export function syncRows(tbody, items, key, build, update) {
  const old = new Map();
  for (const tr of tbody.rows) old.set(tr.dataset.key, tr);
  let prev = null;
  for (const item of items) {
    const k = String(key(item));
    let tr = old.get(k);
    if (tr) old.delete(k);
    else {
      tr = build(item);
      tr.dataset.key = k;
    }
    update(tr, item);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
}

/** A <thead> row of column headings. */
export function headRow(titles) {
  return el('thead', {}, el('tr', {}, ...titles.map((t) => el('th', { text: t }))));
}

/** Runs fn every ms milliseconds until the returned stop() (first run now). */
export function every(ms, fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try {
      await fn();
    } catch (err) {
      console.error(err);
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
