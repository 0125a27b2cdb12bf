// pages/devices.js: the devices (#/devices), refreshed every 5 s: status,
// owner node, last poll, failed polls, last error, breaker. Users who may
// configure (session.can.configure) get an enable/disable button per
// device, which asks for confirmation first.

import * as api from '../api.js';
import { el, fmtTs, fmtCount, fmtDuration, parseTs, showError, syncRows, every, nodeNow } from '../ui.js';
import { confirmAction } from '../confirm.js';

const REFRESH_MS = 5000;
const COLUMNS = ['Device', 'Protocol', 'Endpoint', 'Status', 'Owner', 'Poll every', 'Last poll',
  'Failed polls', 'Error', 'Breaker', 'Tags'];

export function mount(view, { session }) {
  return new DevicesPage(view, session);
}

/** A device's state in a word or two. */
function status(d) {
  if (!d.enabled) return 'disabled';
  if (d.breaker === 'open') return 'breaker open';
  if (d.error) return 'failing';
  if (d.owner === null || d.owner === undefined) return 'unassigned';
  if (!d.last_poll) return 'no data yet';
  return 'ok';
}

class DevicesPage {
  constructor(view, session) {
    this.canConfigure = Boolean(session.can.configure);
    this.error = el('p', { id: 'device-error', class: 'error', hidden: true });
    this.summary = el('span', { class: 'muted' });
    this.tbody = el('tbody');
    const heads = this.canConfigure ? [...COLUMNS, ''] : COLUMNS;
    const table = el('table', { id: 'device-table', class: 'grid' },
      el('thead', {}, el('tr', {}, ...heads.map((t) => el('th', { text: t })))), this.tbody);
    table.addEventListener('click', (ev) => this.click(ev));
    view.append(el('div', { class: 'devices-page' },
      el('div', { class: 'toolbar' }, el('h1', { text: 'Devices' }), this.summary), this.error,
      el('div', { class: 'table-scroll' }, table)));
    this.devices = new Map();
    this.stop = every(REFRESH_MS, () => this.refresh());
  }

  async refresh() {
    try {
      const answer = await api.devices();
      showError(this.error, null);
      this.show(answer.devices || []);
    } catch (err) {
      showError(this.error, err);
    }
  }

  show(devices) {
    this.devices = new Map(devices.map((d) => [d.name, d]));
    const failing = devices.filter((d) => d.enabled && (d.error || d.breaker === 'open')).length;
    this.summary.textContent = `${fmtCount(devices.length)} devices, ${failing} failing`;
    syncRows(this.tbody, devices, (d) => d.name, (d) => this.buildRow(d), (tr, d) => this.updateRow(tr, d));
  }

  buildRow(d) {
    const tr = el('tr', { class: 'device-row' });
    tr.dataset.device = d.name;
    const count = COLUMNS.length;
    for (let i = 0; i < count; i += 1) tr.append(el('td'));
    if (this.canConfigure) {
      tr.append(el('td', {}, el('button', { type: 'button', class: 'device-toggle' })));
    }
    return tr;
  }

  updateRow(tr, d) {
    const lastPoll = d.last_poll ? `${fmtTs(d.last_poll)} (${fmtDuration(nodeNow() - parseTs(d.last_poll))} ago)` : '—';
    const breaker = d.breaker === 'open' && d.retry_in_ms ? `open, retry in ${fmtDuration(d.retry_in_ms)}` : d.breaker || '';
    const cells = [d.name, d.protocol, d.endpoint + (d.unit_id !== null && d.unit_id !== undefined ? ` #${d.unit_id}` : ''),
      status(d), d.owner ?? '—', fmtDuration(d.poll_interval_ms), lastPoll, fmtCount(d.failed_polls ?? 0),
      d.error || '', breaker, fmtCount(d.tags ?? 0)];
    cells.forEach((text, i) => {
      const td = tr.cells[i];
      if (td.textContent !== String(text)) td.textContent = String(text);
    });
    tr.cells[8].title = d.error || '';
    tr.classList.toggle('bad', Boolean(d.enabled && (d.error || d.breaker === 'open')));
    tr.classList.toggle('disabled', !d.enabled);
    const button = tr.querySelector('button.device-toggle');
    if (button) button.textContent = d.enabled ? 'Disable' : 'Enable';
  }

  async click(ev) {
    const button = ev.target.closest('button.device-toggle');
    if (!button) return;
    const name = button.closest('tr').dataset.device;
    const device = this.devices.get(name);
    if (!device) return;
    const enable = !device.enabled;
    const verb = enable ? 'Enable' : 'Disable';
    const question = enable ? `Enable device ${name}? Its tags will be polled again.`
      : `Disable device ${name}? Its ${device.tags ?? ''} tags will stop being polled.`;
    if (!(await confirmAction(question, verb))) return;
    button.disabled = true;
    try {
      const answer = await api.enableDevice(name, enable);
      if (answer.device) {
        const merged = { ...device, ...answer.device };
        this.devices.set(name, merged);
        this.updateRow(button.closest('tr'), merged);
      }
      this.refresh();
      showError(this.error, null);
    } catch (err) {
      showError(this.error, err);
    } finally {
      button.disabled = false;
    }
  }

  unmount() {
    this.stop();
  }
}
