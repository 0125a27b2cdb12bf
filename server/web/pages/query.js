// pages/query.js: the SQL console (#/query). Runs POST /api/query (button
// or Ctrl+Enter), shows the rows (#query-table), the stats, errors with
// the offending line and a caret under the column (#query-error), and a
// chart (#query-chart) when the result has a time column and numbers.

import * as api from '../api.js';
import { el, fmtValue, fmtCount, fmtDuration, errorText } from '../ui.js';
import { newChart, mergeSeries } from '../chart.js';
import { chartPlan } from '../query-chart.js';

const MAX_SHOWN = 5000;
const EXAMPLE = 'SELECT name, value, quality, ts FROM tags ORDER BY name LIMIT 100';

let lastSql = EXAMPLE; // kept while the page is left

export function mount(view) {
  return new QueryPage(view);
}

class QueryPage {
  constructor(view) {
    this.graph = null;
    this.sql = el('textarea', { id: 'query-sql', rows: '8', spellcheck: 'false', 'aria-label': 'SQL' });
    this.sql.value = lastSql;
    this.run = el('button', { id: 'query-run', type: 'button', class: 'primary', text: 'Run', title: 'Ctrl+Enter' });
    this.stats = el('span', { id: 'query-stats', class: 'muted' });
    this.error = el('div', { id: 'query-error', class: 'error query-error', role: 'alert', hidden: true });
    this.chart = el('div', { id: 'query-chart', class: 'chart', hidden: true });
    this.legend = el('div', { class: 'legend', hidden: true });
    this.table = el('table', { id: 'query-table', class: 'grid query-table' });
    view.append(el('div', { class: 'query-page' }, this.sql,
      el('div', { class: 'toolbar' }, this.run, el('span', { class: 'muted', text: 'Ctrl+Enter runs' }), this.stats),
      this.error, this.chart, this.legend, el('div', { class: 'table-scroll' }, this.table)));
    this.run.addEventListener('click', () => this.execute());
    this.sql.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        this.execute();
      }
    });
    this.sql.addEventListener('input', () => {
      lastSql = this.sql.value;
    });
  }

  async execute() {
    const sql = this.sql.value;
    lastSql = sql;
    this.run.disabled = true;
    this.stats.textContent = 'running…';
    this.showError(null, sql);
    try {
      const answer = await api.query(sql);
      this.showResult(answer);
    } catch (err) {
      this.stats.textContent = '';
      this.clearResult();
      this.showError(err, sql);
    } finally {
      this.run.disabled = false;
    }
  }

  /** The error message, and for a positioned error the line with a caret under the column. */
  showError(err, sql) {
    const box = this.error;
    box.replaceChildren();
    delete box.dataset.line;
    delete box.dataset.column;
    box.hidden = !err;
    if (!err) return;
    box.append(el('div', { class: 'message', text: errorText(err) }));
    if (Number.isInteger(err.line) && err.line > 0) {
      box.dataset.line = String(err.line);
      if (Number.isInteger(err.column)) box.dataset.column = String(err.column);
      box.append(el('pre', { class: 'caret-line', text: caretText(sql, err.line, err.column) }));
    }
  }

  clearResult() {
    this.table.replaceChildren();
    this.hideChart();
  }

  showResult(answer) {
    const columns = answer.columns || [];
    const rows = answer.rows || [];
    const s = answer.stats || {};
    const shown = rows.length > MAX_SHOWN ? `, first ${fmtCount(MAX_SHOWN)} shown` : '';
    this.stats.textContent = `${fmtCount(s.rows ?? rows.length)} rows${shown}, ${fmtCount(s.scanned ?? 0)} read, `
      + `${fmtDuration((s.elapsed_us ?? 0) / 1000)}`;
    this.table.replaceChildren(
      el('thead', {}, el('tr', {}, ...columns.map((c) => el('th', { text: c.name, title: c.type })))),
      this.body(columns, rows.slice(0, MAX_SHOWN)));
    this.drawChart(columns, rows);
  }

  body(columns, rows) {
    const tbody = el('tbody');
    const frag = document.createDocumentFragment();
    for (const row of rows) {
      frag.append(el('tr', {}, ...row.map((cell, i) => this.cell(cell, columns[i]))));
    }
    tbody.append(frag);
    return tbody;
  }

  cell(value, column) {
    const type = column ? column.type : 'any';
    const numeric = typeof value === 'number';
    const cls = value === null ? 'null' : numeric ? 'num' : type;
    return el('td', { class: cls, text: value === null ? 'NULL' : fmtCell(value, type) });
  }

  drawChart(columns, rows) {
    this.hideChart();
    const plan = chartPlan(columns, rows);
    if (!plan) return;
    this.chart.hidden = false;
    this.legend.hidden = false;
    try {
      this.graph = newChart(this.chart, mergeSeries(plan.series), ['time', ...plan.labels], { legendNode: this.legend });
    } catch (err) {
      this.chart.replaceChildren(el('p', { class: 'error', text: errorText(err) }));
    }
  }

  hideChart() {
    if (this.graph) this.graph.destroy();
    this.graph = null;
    this.chart.replaceChildren();
    this.chart.hidden = true;
    this.legend.hidden = true;
    this.legend.replaceChildren();
  }

  unmount() {
    this.hideChart();
  }
}

/** Cells as text: timestamps as they come (UTC, exact), numbers trimmed. */
function fmtCell(value, type) {
  if (type === 'timestamp' || type === 'text') return String(value);
  return fmtValue(value);
}

/** The SQL's line `line` and a caret under character `column` (1-based). */
export function caretText(sql, line, column) {
  const text = sql.split(/\r\n|\r|\n/)[line - 1] ?? '';
  const chars = Array.from(text);
  const col = Number.isInteger(column) && column > 0 ? column : 1;
  const pad = chars.slice(0, col - 1).map((c) => (c === '\t' ? '\t' : ' ')).join('')
    + ' '.repeat(Math.max(0, col - 1 - chars.length));
  return `${text}\n${pad}^`;
}
