// The admin REST API, called with the key held in this tab's
// sessionStorage. The key travels only in the Authorization header.
const KEY = 'herald.console.key';

export const session = {
  key: () => sessionStorage.getItem(KEY),
  loggedIn: () => sessionStorage.getItem(KEY) !== null,
  set: (k) => sessionStorage.setItem(KEY, k),
  clear: () => sessionStorage.removeItem(KEY),
};

// APIError carries the HTTP status and the gateway's {code, message} body.
export class APIError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${status}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// onUnauthorized is called when a credential stops working (revoked,
// expired): the app logs out.
let onUnauthorized = () => {};
export function whenUnauthorized(fn) { onUnauthorized = fn; }

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const key = session.key();
  if (key) headers.Authorization = 'Bearer ' + key;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = {};
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text.trim() }; }
  }
  if (!resp.ok) {
    if (resp.status === 401 && session.loggedIn()) onUnauthorized();
    throw new APIError(resp.status, data);
  }
  return data;
}

export const enc = encodeURIComponent;

// listAll reads every page of a list call (at most 20 pages of 1000).
export async function listAll(path, field) {
  const out = [];
  let token = '';
  for (let i = 0; i < 20; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api('GET', `${path}${sep}pageSize=1000&pageToken=${enc(token)}`);
    out.push(...(page[field] || []));
    token = page.nextPageToken || '';
    if (!token) break;
  }
  return out;
}

// Capabilities are written as on the command line: "publish,subscribe:sensors/#".
const ACTIONS = ['publish', 'subscribe', 'history'];

export function parseCapabilities(text) {
  const caps = [];
  for (const line of text.split(/[\n;]+/).map((l) => l.trim()).filter(Boolean)) {
    const i = line.indexOf(':');
    if (i <= 0) throw new Error(`capability "${line}": write <actions>:<filter>, e.g. publish,subscribe:sensors/#`);
    const actions = line.slice(0, i).split(',').map((a) => a.trim().toLowerCase());
    for (const a of actions) {
      if (!ACTIONS.includes(a)) throw new Error(`capability "${line}": unknown action "${a}" (${ACTIONS.join(', ')})`);
    }
    caps.push({ filter: line.slice(i + 1).trim(), actions: actions.map((a) => 'ACTION_' + a.toUpperCase()) });
  }
  return caps;
}

export function formatCapabilities(caps) {
  return (caps || []).map((c) => `${(c.actions || []).map((a) => a.replace(/^ACTION_/, '').toLowerCase()).join(',')}:${c.filter}`);
}
