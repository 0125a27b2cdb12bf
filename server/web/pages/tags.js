// pages/tags.js: the tag browser (#/tags). A lazy tree on the left, a
// search by glob, and a table (#tag-table) of one folder's tags or of the
// search results, at most 2,000 rows a page (#tag-more for the next page).
// Values come from POST /api/current, then live from /ws. Live readings
// are queued per tag and painted once per animation frame, touching only
// the cells that changed; window.bifrostPerf records what that costs.
// Rows are marked `bad` (quality bad) and `stale` (older than the tag's
// stale_after_ms by the node's clock, checked every second).
//
// Hash parameters: #/tags?folder=plant/sim00001/ or #/tags?glob=plant/*/temp

import * as api from '../api.js';
import { el, setText, setTitle, fmtValue, fmtTs, parseTs, fmtCount, showError, urlName, nodeNow } from '../ui.js';
import { LiveFeed } from '../live.js';
import { Tree } from './tree.js';
import { openWrite, updateCurrent } from '../write.js';

const TABLE_LIMIT = 2000;
const PERF_CAP = 5000;
const MANY_ROWS = 200; // beyond this, rows out of sight are not rendered (style.css, .many)
const COLUMNS = ['', 'Tag', 'Value', 'Units', 'Quality', 'Time', 'Device', 'Owner', ''];

export function mount(view, ctx) {
  return new TagsPage(view, ctx);
}

/** Appends values to one of bifrostPerf's arrays, keeping the last PERF_CAP. */
function pushCapped(list, values) {
  list.push(...values);
  if (list.length > PERF_CAP) list.splice(0, list.length - PERF_CAP);
}

/** True when reading a is newer than reading b. */
function newer(a, b) {
  if (Number.isFinite(a.revision) && Number.isFinite(b.revision)) return a.revision > b.revision;
  return parseTs(a.ts) > parseTs(b.ts);
}

class TagsPage {
  constructor(view, { session, params }) {
    this.session = session;
    this.rows = new Map(); // tag name -> row record (see buildRow)
    this.pending = new Map(); // tag name -> {reading, arrived}
    this.picked = new Set();
    this.seq = 0;
    this.next = null;
    this.stopped = false;
    this.lastFrame = null;
    this.live = new LiveFeed((readings, arrived) => this.queue(readings, arrived), {
      onStarted: (tags) => this.fetchCurrent(tags, this.seq),
    });
    this.build(view);
    this.tree = new Tree(this.treeBox, {
      onFolder: (path) => this.go('folder', path),
      onTag: (tag) => this.go('glob', tag.name),
    });
    this.frame = () => this.onFrame();
    this.raf = requestAnimationFrame(this.frame);
    this.staleTimer = setInterval(() => this.markStale(), 1000);
    this.update(params);
  }

  build(view) {
    this.treeBox = el('div', { id: 'tag-tree', class: 'tree-box' });
    this.search = el('input', { id: 'tag-search', type: 'search', placeholder: 'glob: plant/*/temp, line1/**', spellcheck: 'false' });
    const form = el('form', { class: 'tag-search-form' }, this.search,
      el('button', { id: 'tag-search-go', type: 'submit', text: 'Search' }));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (this.search.value.trim()) this.go('glob', this.search.value.trim());
    });
    this.caption = el('span', { class: 'caption', text: 'Pick a folder, or search.' });
    this.error = el('span', { id: 'tag-error', class: 'error', hidden: true });
    this.more = el('button', { id: 'tag-more', type: 'button', hidden: true, text: `Next ${fmtCount(TABLE_LIMIT)} ›` });
    this.more.addEventListener('click', () => this.next && this.next());
    this.trendBtn = el('button', { id: 'trend-selected', type: 'button', disabled: true, text: 'Trend checked' });
    this.trendBtn.addEventListener('click', () => this.openTrend());
    this.tbody = el('tbody');
    this.pickAll = el('input', { id: 'tag-pick-all', type: 'checkbox', title: 'check all', 'aria-label': 'check all' });
    this.pickAll.addEventListener('change', () => this.checkAll(this.pickAll.checked));
    this.table = el('table', { id: 'tag-table', class: 'grid tag-table' }, this.head(), this.tbody);
    this.table.addEventListener('click', (ev) => this.tableClick(ev));
    this.table.addEventListener('change', (ev) => this.pickChange(ev));
    view.append(el('div', { class: 'tags-page' },
      el('aside', { class: 'tree-pane' }, form, this.treeBox),
      el('section', { class: 'table-pane' },
        el('div', { class: 'toolbar' }, this.caption, this.error, el('span', { class: 'spacer' }), this.more, this.trendBtn),
        el('div', { class: 'table-scroll' }, this.table))));
  }

  head() {
    const cells = COLUMNS.map((t) => el('th', { text: t }));
    cells[0].append(this.pickAll);
    return el('thead', {}, el('tr', {}, ...cells));
  }

  /** Navigates (through the hash) to a folder or a glob. */
  go(kind, value) {
    const hash = `#/tags?${kind}=${urlName(value)}`;
    if (location.hash === hash) this.update(new URLSearchParams(`${kind}=${urlName(value)}`));
    else location.hash = hash;
  }

  /** Loads what the hash names (the router calls this on a new hash). */
  update(params) {
    const folder = params.get('folder');
    const glob = params.get('glob');
    if (folder !== null) {
      this.loadPage(() => this.folderPage(folder, undefined, 0));
      this.tree.reveal(folder);
    }
    else if (glob) {
      this.search.value = glob;
      this.loadPage(() => this.searchPage(glob, undefined, 0));
    }
  }

  /** Runs a page loader, showing its error; answers of older loads are dropped. */
  async loadPage(loader) {
    showError(this.error, null);
    this.more.disabled = true;
    try {
      await loader();
    } catch (err) {
      showError(this.error, err);
    } finally {
      this.more.disabled = false;
    }
  }

  async folderPage(path, after, start) {
    const seq = ++this.seq;
    const answer = await api.tree(path, after, TABLE_LIMIT);
    if (seq !== this.seq) return;
    const tags = answer.children.filter((c) => c.kind === 'tag').map((c) => c.tag || { name: c.path });
    const last = answer.children[answer.children.length - 1];
    this.next = answer.more && last ? () => this.loadPage(() => this.folderPage(path, last.path, start + tags.length)) : null;
    this.fill(tags, `${path || '/'}: ${this.range(start, tags.length)}${answer.more ? ', more in the folder' : ''}`);
  }

  async searchPage(glob, after, start) {
    const seq = ++this.seq;
    let answer;
    try {
      answer = await api.search(glob, TABLE_LIMIT, after);
    } catch (err) {
      if (!after || err.status !== 400) throw err;
      throw new Error(`this node does not page search results (${err.message}): narrow the glob`);
    }
    if (seq !== this.seq) return;
    // A node that does not page searches answers the first page again.
    const tags = after ? answer.tags.filter((t) => t.name > after) : answer.tags;
    const last = tags[tags.length - 1];
    this.next = answer.more && last ? () => this.loadPage(() => this.searchPage(glob, last.name, start + tags.length)) : null;
    const more = answer.more ? ', more match (narrow the glob or page on)' : '';
    this.fill(tags, `${glob}: ${this.range(start, tags.length)}${more}`);
  }

  range(start, n) {
    if (!n) return 'no tags';
    if (!start) return `${fmtCount(n)} tag${n === 1 ? '' : 's'}`;
    return `tags ${fmtCount(start + 1)}–${fmtCount(start + n)}`;
  }

  /** Replaces the table's rows, the subscription and the current values. */
  fill(tags, caption) {
    this.caption.textContent = caption;
    this.more.hidden = !this.next;
    this.rows = new Map();
    this.pending.clear();
    const frag = document.createDocumentFragment();
    for (const tag of tags) {
      const row = this.buildRow(tag);
      this.rows.set(tag.name, row);
      frag.append(row.tr);
    }
    this.tbody.replaceChildren(frag);
    this.table.classList.toggle('many', tags.length > MANY_ROWS);
    this.pickAll.checked = false;
    const names = tags.map((t) => t.name);
    this.live.setTags(names);
    this.fetchCurrent(names, this.seq);
  }

  buildRow(tag) {
    const value = el('td', { class: 'tag-value' });
    const quality = el('td', { class: 'tag-quality' });
    const ts = el('td', { class: 'tag-ts' });
    const pick = el('input', { type: 'checkbox', class: 'trend-pick', value: tag.name, checked: this.picked.has(tag.name), 'aria-label': `trend ${tag.name}` });
    const canWrite = tag.can_write === true && this.session.can.write !== false;
    const write = canWrite ? el('button', { type: 'button', class: 'write-btn', text: 'Write…' }) : null;
    const tr = el('tr', { class: 'tag-row' },
      el('td', { class: 'tag-pick' }, pick),
      el('td', { class: 'tag-name', text: tag.name, title: tag.description || tag.name }),
      value,
      el('td', { class: 'tag-units', text: tag.units || '' }),
      quality, ts,
      el('td', { class: 'tag-device', text: tag.device ?? '' }),
      el('td', { class: 'tag-owner', text: tag.owner ?? '—', title: tag.owner == null ? 'no node polls it' : `node ${tag.owner}` }),
      el('td', { class: 'tag-actions' }, write));
    tr.dataset.tag = tag.name;
    const staleMs = Number.isFinite(tag.stale_after_ms) ? tag.stale_after_ms : null;
    return { tag, tr, value, quality, ts, staleMs, reading: null, tsMs: NaN, stale: false, bad: false };
  }

  /** Asks for the current values of tags (on a new table, or a new subscription). */
  async fetchCurrent(names, seq) {
    if (!names.length) return;
    try {
      const readings = await api.current(names);
      if (seq !== this.seq || this.stopped) return;
      this.queue(readings, performance.now(), true);
    } catch (err) {
      if (seq === this.seq) showError(this.error, err);
    }
  }

  /** Queues readings for the next frame, keeping the newest per tag. */
  queue(readings, arrived, fromFetch = false) {
    for (const r of readings) {
      if (!this.rows.has(r.tag)) continue;
      const old = this.pending.get(r.tag);
      if (old && !newer(r, old.reading)) continue;
      this.pending.set(r.tag, { reading: r, arrived, live: !fromFetch });
    }
  }

  onFrame() {
    if (this.stopped) return;
    const now = performance.now();
    if (this.lastFrame !== null) pushCapped(window.bifrostPerf.frameMs, [now - this.lastFrame]);
    this.lastFrame = now;
    if (this.pending.size) this.flush();
    this.raf = requestAnimationFrame(this.frame);
  }

  /** Paints every queued reading and records the lag of the live ones. */
  flush() {
    const arrivals = [];
    const wall = nodeNow();
    for (const [name, p] of this.pending) {
      const row = this.rows.get(name);
      if (row && this.paint(row, p.reading, wall) && p.live) arrivals.push(p.arrived);
    }
    this.pending.clear();
    if (!arrivals.length) return;
    const painted = performance.now();
    const perf = window.bifrostPerf;
    perf.updates += arrivals.length;
    pushCapped(perf.lagMs, arrivals.map((a) => painted - a));
  }

  /** Puts a reading in its row's cells; false when the row has a newer one. */
  paint(row, r, wall) {
    if (row.reading && !newer(r, row.reading)) return false;
    row.reading = r;
    setText(row.value, fmtValue(r.value));
    setText(row.quality, r.quality || '');
    setTitle(row.quality, r.reason || '');
    setText(row.ts, fmtTs(r.ts));
    row.tsMs = parseTs(r.ts);
    const bad = r.quality === 'bad';
    if (bad !== row.bad) {
      row.bad = bad;
      row.tr.classList.toggle('bad', bad);
    }
    row.tr.classList.toggle('uncertain', r.quality === 'uncertain');
    this.markRowStale(row, wall);
    updateCurrent(row.tag.name, r);
    return true;
  }

  markRowStale(row, wall) {
    const stale = row.staleMs !== null && Number.isFinite(row.tsMs) && wall - row.tsMs > row.staleMs;
    if (stale === row.stale) return;
    row.stale = stale;
    row.tr.classList.toggle('stale', stale);
  }

  markStale() {
    const wall = nodeNow();
    for (const row of this.rows.values()) this.markRowStale(row, wall);
  }

  tableClick(ev) {
    const button = ev.target.closest('button.write-btn');
    if (!button) return;
    const row = this.rows.get(button.closest('tr').dataset.tag);
    if (row) openWrite(row.tag, row.reading);
  }

  pickChange(ev) {
    const box = ev.target;
    if (!box.classList || !box.classList.contains('trend-pick')) return;
    if (box.checked) this.picked.add(box.value);
    else this.picked.delete(box.value);
    this.showPicked();
  }

  checkAll(on) {
    for (const box of this.tbody.querySelectorAll('input.trend-pick')) {
      box.checked = on;
      if (on) this.picked.add(box.value);
      else this.picked.delete(box.value);
    }
    this.showPicked();
  }

  showPicked() {
    const n = this.picked.size;
    this.trendBtn.disabled = n === 0;
    this.trendBtn.textContent = n ? `Trend checked (${n})` : 'Trend checked';
  }

  openTrend() {
    if (!this.picked.size) return;
    location.hash = `#/trend?tags=${[...this.picked].map(urlName).join(',')}&range=1h`;
  }

  unmount() {
    this.stopped = true;
    cancelAnimationFrame(this.raf);
    clearInterval(this.staleTimer);
    this.live.close();
    const dialog = document.getElementById('write-dialog');
    if (dialog.open) dialog.close();
  }
}
