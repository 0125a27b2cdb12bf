// app.js: the page's entry point. Finds out who is logged in, draws the
// header (user, nav links the role may use, the insecure banner), and
// routes by location.hash to one page module at a time:
// #/tags, #/trend?tags=a,b&range=1h, #/query, #/devices, #/cluster, #/audit.
// A page module exports mount(view, ctx) returning {unmount(), update?(params)}.

import * as api from './api.js';
import { el, clear, errorText, setNodeClock, nodeNow, nodeClockAhead, fmtDuration } from './ui.js';
import { setStatusListener } from './live.js';
import * as tagsPage from './pages/tags.js';
import * as trendPage from './pages/trend.js';
import * as queryPage from './pages/query.js';
import * as devicesPage from './pages/devices.js';
import * as clusterPage from './pages/cluster.js';
import * as auditPage from './pages/audit.js';
import * as loginPage from './pages/login.js';

const PAGES = {
  tags: tagsPage,
  trend: trendPage,
  query: queryPage,
  devices: devicesPage,
  cluster: clusterPage,
  audit: auditPage,
};

const $ = (id) => document.getElementById(id);

const CLOCK_WARN_MS = 10_000;

let session = null;
let page = null; // {name, instance}
let expiryTimer = null;

window.bifrostPerf = window.bifrostPerf || { updates: 0, lagMs: [], frameMs: [] };

/** The route of the hash: {name, params}. */
function parseHash() {
  const hash = location.hash.replace(/^#\/?/, '');
  const q = hash.indexOf('?');
  const name = (q < 0 ? hash : hash.slice(0, q)) || 'tags';
  return { name, params: new URLSearchParams(q < 0 ? '' : hash.slice(q + 1)) };
}

function unmountPage() {
  if (page && page.instance && page.instance.unmount) page.instance.unmount();
  page = null;
}

function mountPage(name, module, params) {
  unmountPage();
  const view = clear($('view'));
  const instance = module.mount(view, { session, params, onLogin: loggedIn });
  page = { name, instance };
}

function route() {
  if (!session) return;
  const { name, params } = parseHash();
  const module = PAGES[name];
  if (!module) {
    location.replace('#/tags');
    return;
  }
  markNav(name);
  if (name === 'audit' && !session.can.administer) {
    unmountPage();
    clear($('view')).append(el('p', { class: 'error', text: 'The audit view needs an administrator.' }));
    return;
  }
  if (page && page.name === name && page.instance.update) page.instance.update(params);
  else mountPage(name, module, params);
}

function markNav(name) {
  for (const a of document.querySelectorAll('#nav a')) {
    const on = a.id === `nav-${name}`;
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** Takes a session answer: remembers it, draws the header. */
function setSession(s) {
  session = s;
  session.can = session.can || {};
  api.setCsrf(s.csrf);
  setNodeClock(s.now_us);
  drawHeader();
  watchExpiry();
}

function drawHeader() {
  $('nav').hidden = false;
  $('user-box').hidden = false;
  const roles = (session.roles || []).join(', ');
  const user = session.user ?? (session.insecure ? 'no login' : '?');
  $('whoami').textContent = roles ? `${user} (${roles})` : String(user);
  setAuditLink(Boolean(session.can.administer));
  setInsecureBanner(Boolean(session.insecure));
  setClockWarning(nodeClockAhead());
}

/** Says so in the header when this PC's clock is more than 10 s off the node's. */
function setClockWarning(aheadMs) {
  let warning = $('clock-warning');
  if (Math.abs(aheadMs) <= CLOCK_WARN_MS) {
    if (warning) warning.remove();
    return;
  }
  if (!warning) {
    warning = el('span', { id: 'clock-warning', class: 'error', role: 'status' });
    $('user-box').before(warning);
  }
  const way = aheadMs > 0 ? 'behind' : 'ahead of';
  warning.textContent = `this PC's clock is ${fmtDuration(Math.abs(aheadMs))} ${way} the node's`;
  warning.title = 'Times, staleness and trend windows follow the node\'s clock; set this PC\'s clock right (NTP).';
}

function setAuditLink(on) {
  const link = $('nav-audit');
  if (on && !link) $('nav').append(el('a', { id: 'nav-audit', href: '#/audit', text: 'Audit' }));
  if (!on && link) link.remove();
}

function setInsecureBanner(on) {
  const banner = $('insecure-banner');
  if (on && !banner) {
    const text = 'INSECURE: this node runs with --insecure: no login, plain-text traffic. Not for production.';
    $('top').after(el('div', { id: 'insecure-banner', role: 'alert', text }));
  }
  if (!on && banner) banner.remove();
}

/** Asks for the session again when this one is due to expire. */
function watchExpiry() {
  clearTimeout(expiryTimer);
  const ms = session.expires_us ? session.expires_us / 1000 - nodeNow() + 1000 : NaN;
  if (!Number.isFinite(ms) || ms > 2 ** 31 - 1) return;
  expiryTimer = setTimeout(() => api.get('/api/session').then(setSession, () => {}), Math.max(ms, 1000));
}

/** No session (or it ended): the login form, nothing else. */
function showLogin() {
  unmountPage();
  session = null;
  api.setCsrf('');
  clearTimeout(expiryTimer);
  closeDialogs();
  $('nav').hidden = true;
  $('user-box').hidden = true;
  setAuditLink(false);
  setInsecureBanner(false);
  mountPage('login', loginPage, new URLSearchParams());
}

function closeDialogs() {
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
}

function loggedIn(s) {
  setSession(s);
  page = null;
  if (location.hash === '#/tags') route();
  else location.hash = '#/tags';
}

async function logout() {
  try {
    await api.logout();
  } catch (e) {
    console.warn('logout:', errorText(e));
  }
  showLogin();
}

function showLiveStatus(state, detail) {
  const node = $('live-status');
  node.className = `live-${state}`;
  node.textContent = state === 'idle' ? '' : state;
  node.title = detail || `live values: ${state}`;
}

function showStartError(err) {
  const retry = el('button', { type: 'button', text: 'Try again' });
  retry.addEventListener('click', () => location.reload());
  clear($('view')).append(el('p', { class: 'error', text: `Cannot start: ${errorText(err)}` }), retry);
}

async function boot() {
  api.setUnauthorizedHandler(() => {
    if (session) showLogin();
  });
  setStatusListener(showLiveStatus);
  $('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);
  try {
    setSession(await api.session());
    route();
  } catch (err) {
    if (err.status === 401) showLogin();
    else showStartError(err);
  }
}

boot();
