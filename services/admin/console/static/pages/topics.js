// The topic viewer and publish box of the selected tenant: messages are
// read from the tenant's stream through the admin API (GET .../messages,
// polled every second from the position of the last read), and published
// with POST .../publish — both with the console's admin credential.
import { field, fmtTime, h, payloadText, section, toBase64 } from '../dom.js';
import { needTenant } from './keys.js';

// KEEP bounds the rows shown; older ones are dropped.
const KEEP = 200;
const POLL = 1000;

export async function render(ctx) {
  if (!needTenant(ctx)) return;
  const base = `/v1/tenants/${ctx.enc(ctx.tenant)}`;

  const topic = h('input', { id: 'pub-topic', required: true, value: 'demo/hello' });
  const payload = h('textarea', { id: 'pub-payload', rows: 2 }, 'hello from the console');
  const retain = h('input', { id: 'pub-retain', type: 'checkbox' });
  const result = h('p', { id: 'pub-result', class: 'muted' });
  const pub = h('form', { id: 'publish', class: 'grid' }, field('Topic', topic), field('Payload', payload),
    h('label', { class: 'check' }, retain, 'Retain'), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Publish'), result));
  pub.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    result.textContent = '';
    try {
      const out = await ctx.api('POST', `${base}/publish`, { topic: topic.value.trim(), payload: toBase64(payload.value), retain: retain.checked });
      result.textContent = `stored at ${out.position}`;
    } catch (e) { result.textContent = e.message; }
  });

  const filter = h('input', { id: 'watch-filter', value: '#' });
  const status = h('span', { id: 'watch-status', class: 'muted' }, 'watching');
  const rows = h('tbody', { id: 'messages' });
  const watch = h('form', { class: 'inline' }, field('Topic filter', filter), h('button', { type: 'submit' }, 'Watch'), status);
  const log = h('div', { class: 'scroll' }, h('table', null,
    h('thead', null, h('tr', null, ['Position', 'Topic', 'Payload', 'Stored'].map((x) => h('th', null, x)))), rows));

  ctx.root.append(section(`Publish to ${ctx.tenant}`, pub), section(`Messages of ${ctx.tenant}, newest first`, watch, log));

  // The watch starts from now; a new filter starts over.
  let cursor = '';
  let current = '#';
  watch.addEventListener('submit', (ev) => {
    ev.preventDefault();
    current = filter.value.trim() || '#';
    cursor = '';
    rows.replaceChildren();
  });
  ctx.every(POLL, async () => {
    const f = current;
    const page = await ctx.api('GET', `${base}/messages?pageSize=200&filter=${ctx.enc(f)}&after=${ctx.enc(cursor)}`);
    if (!ctx.live() || f !== current) return;
    cursor = page.nextPosition;
    status.textContent = `watching ${f}, at ${page.lastPosition}`;
    for (const m of page.messages || []) {
      rows.prepend(h('tr', null, h('td', { class: 'mono', 'data-label': 'Position' }, m.position),
        h('td', { class: 'mono', 'data-label': 'Topic' }, m.topic),
        h('td', { class: 'payload', 'data-label': 'Payload' }, payloadText(m.payload)),
        h('td', { 'data-label': 'Stored' }, fmtTime(m.publishTime))));
    }
    while (rows.children.length > KEEP) rows.lastChild.remove();
  });
}
