// api.js: the JSON routes of docs/web-ui.md. Same-origin cookies, the
// X-Bifrost-Csrf header on every POST once there is a session, and errors
// thrown as ApiError {status, code, message, line, column}. A 401 from any
// route but the session check and the login itself hands over to the login
// form (see setUnauthorizedHandler).

let csrf = '';
let onUnauthorized = () => {};

/** An answer other than 2xx, or no answer at all (status 0). */
export class ApiError extends Error {
  constructor({ status, code, message, line = null, column = null }) {
    super(message || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code || 'unknown';
    this.line = line;
    this.column = column;
  }
}

/** The session's csrf value, sent with every POST. */
export function setCsrf(value) {
  csrf = value || '';
}

/** What to do when a route answers 401 (the session ended). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** GET path?params; params an object of strings (null and undefined left out). */
export function get(path, params = {}, opts = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined) query.set(k, String(v));
  }
  const qs = query.toString();
  return request('GET', qs ? `${path}?${qs}` : path, undefined, opts);
}

/** POST path with a JSON body. */
export function post(path, body = {}, opts = {}) {
  return request('POST', path, body, opts);
}

async function request(method, url, body, { quiet401 = false } = {}) {
  const res = await send(method, url, body);
  const data = await readJson(res);
  if (res.ok) return data ?? {};
  const err = errorOf(res, data);
  if (res.status === 401 && !quiet401) onUnauthorized(err);
  throw err;
}

async function send(method, url, body) {
  const headers = { Accept: 'application/json' };
  if (method === 'POST') {
    headers['Content-Type'] = 'application/json';
    if (csrf) headers['X-Bifrost-Csrf'] = csrf;
  }
  try {
    return await fetch(url, {
      method,
      headers,
      credentials: 'same-origin',
      cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError({ status: 0, code: 'unavailable', message: `cannot reach the node (${e.message})` });
  }
}

async function readJson(res) {
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { error: { code: 'bad_answer', message: text.trim().slice(0, 500) } };
  }
}

function errorOf(res, data) {
  const e = (data && data.error) || {};
  return new ApiError({
    status: res.status,
    code: e.code || `http_${res.status}`,
    message: e.message || `${res.status} ${res.statusText}`.trim(),
    line: Number.isInteger(e.line) ? e.line : null,
    column: Number.isInteger(e.column) ? e.column : null,
  });
}

// The routes, one function each.

export const session = () => get('/api/session', {}, { quiet401: true });
export const login = (user, password) => post('/api/login', { user, password }, { quiet401: true });
export const logout = () => post('/api/logout', {}, { quiet401: true });
export const tree = (prefix, after, limit) => get('/api/tree', { prefix, after, limit });
export const search = (glob, limit, after) => get('/api/search', { glob, limit, after });
export const query = (sql) => post('/api/query', { sql });
export const write = (tag, value) => post('/api/write', { tag, value });
export const devices = () => get('/api/devices');
export const enableDevice = (device, enabled) => post('/api/devices/enable', { device, enabled });
export const cluster = () => get('/api/cluster');
export const audit = (limit) => get('/api/audit', { limit });

/** Current readings of tags, asked in slices of at most 5,000 names. */
export async function current(tags) {
  const out = [];
  for (let i = 0; i < tags.length; i += 5000) {
    const answer = await post('/api/current', { tags: tags.slice(i, i + 5000) });
    out.push(...(answer.readings || []));
  }
  return out;
}
