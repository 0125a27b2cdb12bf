// live.js: live readings from /ws for the tags a page shows.
//
// A LiveFeed holds one subscription ({"type": "subscribe", "tags": [...]},
// README "Subscriptions"). setTags() replaces it (close + reopen, debounced)
// when the set changes. A dropped socket is reopened with backoff, resuming
// after the last revision seen when it was down briefly; otherwise (or after
// `compacted`) the page is told to fetch current values again (onStarted).
// The server refuses a message over 64 KiB, so a very long tag list is
// split over a few sockets; normally there is exactly one.

import { get } from './api.js';

const MAX_MESSAGE = 60_000;
const DEBOUNCE_MS = 150;
const RESUME_WITHIN_MS = 30_000;
const MAX_BACKOFF_MS = 15_000;

const encoder = new TextEncoder();
let statusListener = () => {};
let lastSessionCheck = 0;

/** fn(state, detail) hears 'idle', 'connecting', 'live', 'retrying' or 'failed'. */
export function setStatusListener(fn) {
  statusListener = fn;
}

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/ws`;
}

/** Splits tag names into lists whose subscribe message stays under MAX_MESSAGE bytes. */
function chunk(tags) {
  const out = [];
  let list = [];
  let size = 40;
  for (const t of tags) {
    const n = encoder.encode(JSON.stringify(t)).length + 1;
    if (list.length && size + n > MAX_MESSAGE) {
      out.push(list);
      list = [];
      size = 40;
    }
    list.push(t);
    size += n;
  }
  if (list.length) out.push(list);
  return out;
}

export class LiveFeed {
  /**
   * onReadings(readings, arrivedAt): arrivedAt is performance.now() when the
   * message came off the socket. onStarted(tags): a fresh subscription
   * (not a resume) has started for these tags: fetch their current values.
   */
  constructor(onReadings, { onStarted = () => {} } = {}) {
    this.onReadings = onReadings;
    this.onStarted = onStarted;
    this.key = '';
    this.channels = [];
    this.timer = null;
  }

  /** Subscribes to exactly these tags (debounced; no tags: no socket). */
  setTags(tags) {
    const list = [...new Set(tags)].sort();
    const key = list.join('\n');
    if (key === this.key) return;
    this.key = key;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.replace(list), DEBOUNCE_MS);
  }

  replace(list) {
    this.stopChannels();
    this.channels = chunk(list).map((tags) => new Channel(tags, this));
    report(this.channels.length ? 'connecting' : 'idle');
  }

  stopChannels() {
    for (const c of this.channels) c.stop();
    this.channels = [];
  }

  /** Ends the subscription for good (the page is leaving). */
  close() {
    clearTimeout(this.timer);
    this.key = '';
    this.stopChannels();
    report('idle');
  }
}

function report(state, detail = '') {
  statusListener(state, detail);
}

/** One socket and its subscription. */
class Channel {
  constructor(tags, feed) {
    this.tags = tags;
    this.feed = feed;
    this.lastRevision = null;
    this.closedAt = 0;
    this.attempt = 0;
    this.stopped = false;
    this.fresh = true;
    this.open();
  }

  open() {
    this.error = null;
    this.didStart = false;
    const ws = new WebSocket(wsUrl());
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify(this.subscribeMessage()));
    ws.onmessage = (ev) => this.message(ev.data, performance.now());
    ws.onclose = () => this.closed();
  }

  subscribeMessage() {
    const msg = { type: 'subscribe', tags: this.tags };
    const resume = this.lastRevision !== null && Date.now() - this.closedAt < RESUME_WITHIN_MS;
    if (resume) msg.from_revision = this.lastRevision;
    else this.fresh = true;
    return msg;
  }

  message(data, arrivedAt) {
    if (this.stopped) return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.type === 'readings') this.readings(msg, arrivedAt);
    else if (msg.type === 'progress') this.lastRevision = msg.revision;
    else if (msg.type === 'started') this.started(msg);
    else if (msg.type === 'error') this.error = msg;
  }

  readings(msg, arrivedAt) {
    this.lastRevision = msg.revision;
    if (msg.readings && msg.readings.length) this.feed.onReadings(msg.readings, arrivedAt);
  }

  started(msg) {
    this.attempt = 0;
    this.didStart = true;
    if (this.lastRevision === null || this.fresh) this.lastRevision = msg.revision;
    report('live');
    if (this.fresh) {
      this.fresh = false;
      this.feed.onStarted(this.tags);
    }
  }

  closed() {
    if (this.stopped) return;
    this.closedAt = Date.now();
    const err = this.error;
    if (err) console.warn('subscription ended:', err.code, err.message);
    if (err && (err.code === 'bad_request' || err.code === 'permission_denied')) {
      report('failed', err.message || err.code);
      return;
    }
    if (err && err.code === 'overflow' && err.resume_from_revision !== undefined) {
      this.lastRevision = err.resume_from_revision;
    }
    if (err && err.code === 'compacted') this.lastRevision = null;
    this.retry(err && err.code === 'overflow' ? 0 : backoff(this.attempt));
  }

  retry(delay) {
    this.attempt += 1;
    report('retrying', `reconnecting in ${Math.round(delay / 100) / 10} s`);
    if (!this.didStart) checkSession();
    this.timer = setTimeout(() => {
      if (!this.stopped) this.open();
    }, delay);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
  }
}

/**
 * A refused handshake tells a page nothing (the browser hides the 401):
 * ask whether the session ended, at most every 5 s; a 401 there brings up
 * the login form (api.js).
 */
function checkSession() {
  const now = Date.now();
  if (now - lastSessionCheck < 5000) return;
  lastSessionCheck = now;
  get('/api/session').catch(() => {});
}

function backoff(attempt) {
  const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt);
  return base * (0.75 + Math.random() * 0.5);
}
