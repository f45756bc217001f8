// The console's shell: login, the tenant picker, the page router. Pages
// live in pages/*.js; each renders into a fresh <div> and may poll through
// ctx.every, whose timers stop when the page changes or the user logs out.
import { api, APIError, enc, listAll, session, whenUnauthorized } from './api.js';
import { h } from './dom.js';
import * as tenants from './pages/tenants.js';
import * as keys from './pages/keys.js';
import * as credentials from './pages/credentials.js';
import * as live from './pages/live.js';
import * as usage from './pages/usage.js';
import * as topics from './pages/topics.js';

const pages = {
  tenants: tenants.render,
  keys: keys.render,
  credentials: credentials.render,
  connections: live.connections,
  sessions: live.sessions,
  retained: live.retained,
  usage: usage.render,
  topics: topics.render,
};
const TENANT = 'herald.console.tenant';

const state = {
  // scope is '' for the operator, or the tenant a scoped key belongs to.
  scope: '',
  tenants: [],
  timers: [],
  generation: 0,
};

const $ = (id) => document.getElementById(id);

function toast(text, error = false) {
  const t = $('toast');
  t.textContent = text;
  t.className = error ? 'show error' : 'show';
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ''; }, 4000);
}

function stopTimers() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  state.generation++;
}

function selectedTenant() {
  return $('tenant').value || '';
}

// loadTenants fills the picker, keeping the selection if it still exists.
async function loadTenants() {
  state.tenants = await listAll('/v1/tenants', 'tenants');
  const sel = $('tenant');
  const want = sessionStorage.getItem(TENANT) || sel.value;
  sel.replaceChildren(...state.tenants.map((t) => h('option', { value: t.id }, t.displayName ? `${t.id} — ${t.displayName}` : t.id)));
  if (state.tenants.some((t) => t.id === want)) sel.value = want;
  sessionStorage.setItem(TENANT, sel.value);
}

function logout(message = '') {
  stopTimers();
  session.clear();
  sessionStorage.removeItem(TENANT);
  $('top').hidden = true;
  $('main').replaceChildren(loginForm);
  $('login-error').textContent = message;
  $('key').value = '';
  document.title = 'Herald console';
}

async function route() {
  if (!session.loggedIn()) return;
  stopTimers();
  const generation = state.generation;
  const name = location.hash.replace(/^#/, '') || 'tenants';
  const render = pages[name] || pages.tenants;
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.getAttribute('href') === '#' + name);
  }
  const root = h('div', { id: 'page', 'data-page': name });
  $('main').replaceChildren(root);
  document.title = `Herald console — ${name}`;
  const ctx = {
    root,
    api,
    enc,
    toast,
    operator: state.scope === '',
    tenant: selectedTenant(),
    tenants: state.tenants,
    // every runs fn now and then every ms until the page changes.
    every(ms, fn) {
      // A tick still waiting for the API makes the next one skip, so
      // that two reads never race over one cursor.
      let busy = false;
      const tick = async () => {
        if (busy || generation !== state.generation) return;
        busy = true;
        try { await fn(); } catch (e) { if (generation === state.generation) toast(e.message, true); } finally { busy = false; }
      };
      tick();
      state.timers.push(setInterval(tick, ms));
    },
    // reloadTenants refreshes the picker and redraws the page.
    async reloadTenants(select) {
      if (select) sessionStorage.setItem(TENANT, select);
      await loadTenants();
      route();
    },
    live: () => generation === state.generation,
  };
  try {
    await render(ctx);
  } catch (e) {
    root.append(h('p', { class: 'error' }, e.message));
  }
}

// start checks the credential and learns its scope: listing admin keys is
// the operator's alone.
async function start() {
  await loadTenants();
  try {
    await api('GET', '/v1/admin-keys?pageSize=1');
    state.scope = '';
  } catch (e) {
    if (!(e instanceof APIError) || e.status !== 403) throw e;
    state.scope = state.tenants[0] ? state.tenants[0].id : '?';
  }
  $('who').textContent = state.scope ? `admin of ${state.scope}` : 'operator';
  $('top').hidden = false;
  await route();
}

const loginForm = $('login');
loginForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('login-error').textContent = '';
  session.set($('key').value.trim());
  try {
    await start();
  } catch (e) {
    const msg = e instanceof APIError && e.status === 401 ? 'That credential was not accepted.' : e.message;
    logout(msg);
  }
});
$('logout').addEventListener('click', () => logout());
$('tenant').addEventListener('change', () => {
  sessionStorage.setItem(TENANT, selectedTenant());
  route();
});
window.addEventListener('hashchange', route);
whenUnauthorized(() => logout('The credential stopped working: log in again.'));

if (session.loggedIn()) {
  start().catch((e) => logout(e.message));
}
