// pages/cluster.js: the cluster's members (#/cluster), refreshed every 2 s
// while open: role (the leader marked), term, applied index, last log
// index, devices polled, readings waiting in the outbox, reachable or the
// error reaching it.

import * as api from '../api.js';
import { el, fmtCount, showError, syncRows, every } from '../ui.js';

const REFRESH_MS = 2000;
const COLUMNS = ['Node', 'Address', 'Role', 'Reachable', 'Term', 'Applied index', 'Last log index',
  'Devices', 'Outbox', 'Error'];

export function mount(view) {
  return new ClusterPage(view);
}

class ClusterPage {
  constructor(view) {
    this.summary = el('span', { id: 'cluster-summary', class: 'muted' });
    this.error = el('p', { id: 'cluster-error', class: 'error', hidden: true });
    this.tbody = el('tbody');
    const table = el('table', { id: 'cluster-table', class: 'grid' },
      el('thead', {}, el('tr', {}, ...COLUMNS.map((t) => el('th', { text: t })))), this.tbody);
    view.append(el('div', { class: 'cluster-page' },
      el('div', { class: 'toolbar' }, el('h1', { text: 'Cluster' }), this.summary), this.error,
      el('div', { class: 'table-scroll' }, table)));
    this.stop = every(REFRESH_MS, () => this.refresh());
  }

  async refresh() {
    try {
      const answer = await api.cluster();
      showError(this.error, null);
      this.show(answer);
    } catch (err) {
      showError(this.error, err);
    }
  }

  show(c) {
    const leader = c.leader_id === null || c.leader_id === undefined ? 'no leader' : `leader node ${c.leader_id}`;
    this.summary.textContent = `this node ${c.node_id}, ${leader}, term ${c.term}`;
    this.summary.classList.toggle('error', c.leader_id === null || c.leader_id === undefined);
    const nodes = c.nodes || [];
    syncRows(this.tbody, nodes, (n) => n.id, () => this.buildRow(), (tr, n) => this.updateRow(tr, n, c));
  }

  buildRow() {
    const tr = el('tr', { class: 'member-row' });
    for (let i = 0; i < COLUMNS.length; i += 1) tr.append(el('td'));
    return tr;
  }

  updateRow(tr, n, c) {
    const isLeader = n.role === 'leader' || n.id === c.leader_id;
    tr.dataset.node = String(n.id);
    const self = n.id === c.node_id ? ' (this node)' : '';
    const cells = [`${n.id}${self}`, n.addr ?? '', isLeader ? '★ leader' : (n.role ?? ''),
      n.reachable ? 'yes' : 'no', n.term ?? '', fmtCount(n.applied_index), fmtCount(n.last_log_index),
      fmtCount(n.devices), fmtCount(n.outbox), n.error || ''];
    cells.forEach((text, i) => {
      const td = tr.cells[i];
      if (td.textContent !== String(text)) td.textContent = String(text);
    });
    tr.cells[9].title = n.error || '';
    tr.classList.toggle('leader', isLeader);
    tr.classList.toggle('bad', !n.reachable);
  }

  unmount() {
    this.stop();
  }
}
