// pages/trend.js: trends of several tags (#/trend?tags=a,b&range=1h, or
// range=custom&from=ISO&to=ISO). Presets 15m to 7d or a custom range;
// dygraphs gives drag-zoom, shift-drag pan and double-click reset. The data
// (trend-data.js) is raw or bucketed so the chart never has more points
// than pixels; with #trend-live checked and a range ending now, readings
// from the subscription are appended and the window slides (the chart's
// data-live counts them, data-points what is drawn). #trend-csv downloads
// what is shown.

import { el, showError, errorText, fmtMs, urlName, nodeNow } from '../ui.js';
import { LiveFeed } from '../live.js';
import { newChart, mergeSeries, toCsv, download } from '../chart.js';
import { loadTrend, addLive, trim, pointCount, chartSeries } from '../trend-data.js';

const RANGES = { '15m': 15 * 60e3, '1h': 3600e3, '8h': 8 * 3600e3, '1d': 86400e3, '7d': 7 * 86400e3 };
const MAX_TAGS = 20;
const REDRAW_MS = 1000;

let liveWanted = true; // #trend-live, remembered while the page is left

export function mount(view, ctx) {
  return new TrendPage(view, ctx);
}

/** datetime-local text (local time, minutes) of epoch ms. */
function localInput(ms) {
  if (!Number.isFinite(ms)) return '';
  return fmtMs(ms).slice(0, 16).replace(' ', 'T');
}

class TrendPage {
  constructor(view, { params }) {
    this.seq = 0;
    this.data = null;
    this.graph = null;
    this.buffer = [];
    this.redrawTimer = null;
    this.live = new LiveFeed((readings) => this.onLive(readings));
    this.build(view);
    this.resize = () => this.graph && this.graph.resize();
    window.addEventListener('resize', this.resize);
    this.update(params);
  }

  build(view) {
    this.tagsInput = el('input', { id: 'trend-tags', type: 'text', spellcheck: 'false', placeholder: 'plant/sim00001/sine0, plant/sim00002/sine0' });
    this.rangeSelect = el('select', { id: 'trend-range' },
      ...Object.keys(RANGES).map((r) => el('option', { value: r, text: r })),
      el('option', { value: 'custom', text: 'custom' }));
    this.fromInput = el('input', { id: 'trend-from', type: 'datetime-local' });
    this.toInput = el('input', { id: 'trend-to', type: 'datetime-local', title: 'empty: until now' });
    this.liveBox = el('input', { id: 'trend-live', type: 'checkbox', checked: liveWanted });
    this.status = el('span', { id: 'trend-status', class: 'status' });
    this.note = el('span', { class: 'muted' });
    this.error = el('p', { id: 'trend-error', class: 'error', hidden: true });
    this.chart = el('div', { id: 'trend-chart', class: 'chart' });
    this.legend = el('div', { id: 'trend-legend', class: 'legend' });
    const apply = el('button', { id: 'trend-apply', type: 'submit', class: 'primary', text: 'Apply' });
    const csv = el('button', { id: 'trend-csv', type: 'button', text: 'CSV' });
    this.zoomLoad = el('button', { id: 'trend-zoom-load', type: 'button', hidden: true, text: 'Detail of zoomed range' });
    const form = el('form', { class: 'toolbar trend-form' },
      el('label', { text: 'Tags ' }, this.tagsInput),
      el('label', { text: 'Range ' }, this.rangeSelect),
      el('label', { class: 'custom', text: 'From ' }, this.fromInput),
      el('label', { class: 'custom', text: 'To ' }, this.toInput),
      apply, el('label', { class: 'check' }, this.liveBox, ' live'), csv, this.zoomLoad);
    this.wire(form, csv);
    view.append(el('div', { class: 'trend-page' }, form, this.error,
      el('div', { class: 'toolbar' }, this.status, this.note), this.chart, this.legend));
  }

  wire(form, csv) {
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.apply();
    });
    const toCustom = () => {
      this.rangeSelect.value = 'custom';
    };
    this.fromInput.addEventListener('change', toCustom);
    this.toInput.addEventListener('change', toCustom);
    this.liveBox.addEventListener('change', () => {
      liveWanted = this.liveBox.checked;
      this.subscribe();
    });
    csv.addEventListener('click', () => this.downloadCsv());
    this.zoomLoad.addEventListener('click', () => this.loadZoomed());
  }

  /** The controls' state as a hash; going there loads it. */
  apply() {
    const tags = this.tagsInput.value.split(',').map((t) => t.trim()).filter(Boolean);
    let hash = `#/trend?tags=${tags.map(urlName).join(',')}&range=${this.rangeSelect.value}`;
    if (this.rangeSelect.value === 'custom') {
      const from = Date.parse(this.fromInput.value);
      const to = this.toInput.value ? Date.parse(this.toInput.value) : NaN;
      if (Number.isFinite(from)) hash += `&from=${new Date(from).toISOString()}`;
      if (Number.isFinite(to)) hash += `&to=${new Date(to).toISOString()}`;
    }
    if (location.hash === hash) this.load();
    else location.hash = hash;
  }

  /** Takes the hash's parameters into the controls and loads. */
  update(params) {
    const tags = (params.get('tags') || '').split(',').map((t) => t.trim()).filter(Boolean);
    this.tagsInput.value = tags.join(', ');
    const range = params.get('range') || '1h';
    this.rangeSelect.value = (RANGES[range] || range === 'custom') ? range : '1h';
    this.fromInput.value = localInput(Date.parse(params.get('from') || ''));
    this.toInput.value = localInput(Date.parse(params.get('to') || ''));
    this.load();
  }

  /** The window to show: {from, to, endsAtNow} in epoch ms, or an error text. */
  window() {
    const now = nodeNow();
    const preset = RANGES[this.rangeSelect.value];
    if (preset) return { from: now - preset, to: now, endsAtNow: true, span: preset };
    const from = Date.parse(this.fromInput.value);
    const to = this.toInput.value ? Date.parse(this.toInput.value) : now;
    if (!Number.isFinite(from) || !Number.isFinite(to)) return { error: 'custom range: set From (and To, or leave it empty for now)' };
    if (to <= from) return { error: 'custom range: To must be after From' };
    return { from, to: Math.min(to, now), endsAtNow: to >= now - 1000, span: to - from };
  }

  tags() {
    return [...new Set(this.tagsInput.value.split(',').map((t) => t.trim()).filter(Boolean))];
  }

  /** The chart's pixel budget: its width less the value axis. */
  budget() {
    const width = this.chart.clientWidth || 800;
    return Math.max(50, Math.floor(width - 60));
  }

  async load() {
    const seq = ++this.seq;
    const tags = this.tags();
    const win = this.window();
    showError(this.error, null);
    if (!tags.length) return this.clearChart('Enter one or more tags, comma-separated.');
    if (tags.length > MAX_TAGS) return this.clearChart(`At most ${MAX_TAGS} tags in one trend.`, true);
    if (win.error) return this.clearChart(win.error, true);
    this.win = win;
    this.data = null;
    this.buffer = [];
    this.subscribe();
    this.status.textContent = 'loading…';
    const started = performance.now();
    try {
      const data = await loadTrend(tags, win.from, win.to, this.budget());
      if (seq !== this.seq) return undefined;
      this.data = data;
      this.takeBuffer();
      this.draw(true);
      this.chart.dataset.loadedMs = String(Math.round(performance.now() - started));
    } catch (err) {
      if (seq === this.seq) this.clearChart(errorText(err), true);
    }
    return undefined;
  }

  clearChart(message, isError = false) {
    this.live.setTags([]);
    this.destroyGraph();
    this.data = null;
    this.status.textContent = '';
    this.chart.dataset.points = '0';
    if (isError) showError(this.error, new Error(message));
    else this.chart.replaceChildren(el('p', { class: 'muted empty', text: message }));
  }

  /** Subscribes to the tags when live is wanted and the range ends now. */
  subscribe() {
    const on = this.liveBox.checked && this.win && this.win.endsAtNow;
    this.live.setTags(on ? this.tags() : []);
    this.note.textContent = on ? 'live' : '';
  }

  onLive(readings) {
    if (!this.data) {
      if (this.buffer.length < 100_000) this.buffer.push(...readings);
      return;
    }
    if (this.append(readings)) this.scheduleRedraw();
  }

  takeBuffer() {
    this.chart.dataset.live = '0';
    this.append(this.buffer);
    this.buffer = [];
  }

  /** Adds live readings to the data; whether any was new. */
  append(readings) {
    let added = 0;
    for (const r of readings) if (addLive(this.data, r)) added += 1;
    this.chart.dataset.live = String(Number(this.chart.dataset.live || 0) + added);
    return added > 0;
  }

  /** Redraws at most once a second with the live tail. */
  scheduleRedraw() {
    if (this.redrawTimer) return;
    this.redrawTimer = setTimeout(() => requestAnimationFrame(() => {
      this.redrawTimer = null;
      this.slide();
    }), REDRAW_MS);
  }

  /** Moves a preset window on to now; reloads when raw points outgrow the pixels. */
  slide() {
    if (!this.data || !this.win) return;
    if (this.win.endsAtNow && RANGES[this.rangeSelect.value]) {
      const now = nodeNow();
      this.win = { ...this.win, from: now - this.win.span, to: now };
      trim(this.data, this.win.from);
    }
    if (this.data.mode === 'raw' && pointCount(this.data) > this.data.budget) this.load();
    else this.draw(false);
  }

  rows() {
    const edges = [this.win.from, this.liveBox.checked && this.win.endsAtNow ? nodeNow() : this.win.to];
    return mergeSeries(chartSeries(this.data), edges);
  }

  /** Draws the data: a new chart after a load, new rows otherwise (zoom kept). */
  draw(fresh) {
    const points = pointCount(this.data);
    const bucketed = this.data.mode === 'buckets';
    this.status.textContent = bucketed ? `buckets of ${this.data.bucketMs / 1000}s, ${points} points` : `raw, ${points} points`;
    this.chart.dataset.points = String(points);
    if (!points && fresh) {
      this.destroyGraph();
      this.chart.replaceChildren(el('p', { class: 'muted empty', text: 'No readings in this range.' }));
      return;
    }
    const rows = this.rows();
    if (fresh || !this.graph) this.newGraph(rows, bucketed);
    else this.graph.updateOptions({ file: rows });
  }

  newGraph(rows, bucketed) {
    this.destroyGraph();
    this.graph = newChart(this.chart, rows, ['time', ...this.data.tags], {
      customBars: bucketed,
      legendNode: this.legend,
      zoomCallback: () => {
        this.zoomLoad.hidden = !this.graph.isZoomed('x');
      },
    });
    this.zoomLoad.hidden = true;
  }

  destroyGraph() {
    if (this.graph) this.graph.destroy();
    this.graph = null;
    this.legend.replaceChildren();
  }

  /** Loads the zoomed part of the chart as a custom range (finer buckets or raw). */
  loadZoomed() {
    if (!this.graph) return;
    const [x0, x1] = this.graph.xAxisRange();
    this.rangeSelect.value = 'custom';
    this.fromInput.value = localInput(Math.floor(x0 / 60e3) * 60e3);
    this.toInput.value = localInput(Math.ceil(x1 / 60e3) * 60e3);
    this.apply();
  }

  /** Downloads the rows in the visible time range as CSV. */
  downloadCsv() {
    if (!this.data || !this.graph) return;
    const [x0, x1] = this.graph.xAxisRange();
    const text = toCsv(['time', ...this.data.tags], this.rows(), { customBars: this.data.mode === 'buckets', x0, x1 });
    const stamp = new Date(x0).toISOString().replace(/[:.]/g, '-');
    download(`bifrost-trend-${stamp}.csv`, text);
  }

  unmount() {
    this.seq += 1;
    this.live.close();
    clearTimeout(this.redrawTimer);
    window.removeEventListener('resize', this.resize);
    this.destroyGraph();
  }
}
