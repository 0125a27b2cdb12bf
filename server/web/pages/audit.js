// pages/audit.js: the audit log (#/audit), newest first, for
// administrators (the nav link and the route need session.can.administer).
// "Older" asks for more records; "Refresh" reads again.

import * as api from '../api.js';
import { el, fmtTs, fmtCount, showError } from '../ui.js';

const COLUMNS = ['Time', 'User', 'Source', 'Action', 'Target', 'Detail', 'Outcome'];
const STEPS = [200, 1000, 5000, 20000];

export function mount(view) {
  return new AuditPage(view);
}

class AuditPage {
  constructor(view) {
    this.step = 0;
    this.summary = el('span', { class: 'muted' });
    this.error = el('p', { id: 'audit-error', class: 'error', hidden: true });
    this.tbody = el('tbody');
    this.older = el('button', { id: 'audit-more', type: 'button', text: 'Older…' });
    const refresh = el('button', { id: 'audit-refresh', type: 'button', text: 'Refresh' });
    const table = el('table', { id: 'audit-table', class: 'grid' },
      el('thead', {}, el('tr', {}, ...COLUMNS.map((t) => el('th', { text: t })))), this.tbody);
    view.append(el('div', { class: 'audit-page' },
      el('div', { class: 'toolbar' }, el('h1', { text: 'Audit' }), this.summary, el('span', { class: 'spacer' }), refresh, this.older),
      this.error, el('div', { class: 'table-scroll' }, table)));
    refresh.addEventListener('click', () => this.load());
    this.older.addEventListener('click', () => {
      this.step = Math.min(this.step + 1, STEPS.length - 1);
      this.load();
    });
    this.load();
  }

  async load() {
    const limit = STEPS[this.step];
    try {
      const answer = await api.audit(limit);
      showError(this.error, null);
      this.show(answer.records || [], limit);
    } catch (err) {
      showError(this.error, err);
    }
  }

  show(records, limit) {
    this.summary.textContent = `${fmtCount(records.length)} newest records`;
    this.older.hidden = records.length < limit || this.step === STEPS.length - 1;
    const frag = document.createDocumentFragment();
    for (const r of records) frag.append(this.row(r));
    this.tbody.replaceChildren(frag);
  }

  row(r) {
    const ok = r.outcome === 'ok';
    return el('tr', { class: ok ? 'audit-row' : 'audit-row bad' },
      el('td', { class: 'mono', text: fmtTs(r.ts), title: r.ts }),
      el('td', { text: r.user ?? '' }),
      el('td', { class: 'mono', text: r.source ?? '' }),
      el('td', { text: r.action ?? '' }),
      el('td', { class: 'mono', text: r.target ?? '' }),
      el('td', { class: 'detail', text: r.detail ?? '', title: r.detail ?? '' }),
      el('td', { text: r.outcome ?? '' }));
  }

  unmount() {}
}
