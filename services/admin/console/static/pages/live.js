// The selected tenant's live state: connections on every edge (refreshed
// every few seconds, with kick), persistent sessions, retained messages.
import { confirmButton, field, fmtTime, h, payloadText, section, table } from '../dom.js';
import { needTenant } from './keys.js';

// REFRESH is how often the live lists are read again, in ms.
const REFRESH = 3000;

export async function connections(ctx) {
  if (!needTenant(ctx)) return;
  const base = `/v1/tenants/${ctx.enc(ctx.tenant)}/connections`;
  const box = h('div', { id: 'connections' });
  const count = h('span', { id: 'connections-read', class: 'muted' });
  ctx.root.append(section(`Connections of ${ctx.tenant}`, h('p', null, 'On every edge, read again every 3 s: ', count), box));
  const draw = async () => {
    const conns = (await ctx.api('GET', `${base}?pageSize=1000`)).connections || [];
    if (!ctx.live()) return;
    count.textContent = `${conns.length} open, read at ${new Date().toLocaleTimeString()}`;
    // A Kick waiting for its confirmation keeps the table as it is.
    if (box.querySelector('.armed:not(:disabled)')) return;
    box.replaceChildren(table(['Edge', 'Protocol', 'Client', 'Key', 'Address', 'Since', 'Subscriptions', ''], conns.map((c) => [
      c.edge, c.protocol, h('span', { class: 'mono' }, c.clientId || ''), h('span', { class: 'mono' }, c.keyId || ''),
      h('span', { class: 'mono' }, c.remoteAddr || ''), fmtTime(c.connectTime),
      h('div', null, (c.subscriptions || []).map((s) => h('div', { class: 'mono' }, s))),
      confirmButton('Kick', async () => {
        try {
          await ctx.api('DELETE', `${base}/${ctx.enc(c.id)}`);
          ctx.toast(`Disconnected ${c.clientId || c.id}`);
          await draw();
        } catch (e) { ctx.toast(e.message, true); }
      }),
    ]), 'no connections'));
  };
  ctx.every(REFRESH, draw);
}

export async function sessions(ctx) {
  if (!needTenant(ctx)) return;
  const base = `/v1/tenants/${ctx.enc(ctx.tenant)}/sessions`;
  const box = h('div');
  ctx.root.append(section(`Persistent sessions of ${ctx.tenant}`, box));
  const draw = async () => {
    const list = (await ctx.api('GET', `${base}?pageSize=1000`)).sessions || [];
    if (!ctx.live() || box.querySelector('.armed:not(:disabled)')) return;
    box.replaceChildren(table(['Client', 'Connected', 'Subscriptions', 'Queued', 'Expires', ''], list.map((s) => [
      h('span', { class: 'mono' }, s.clientId), s.connected ? 'yes' : 'no',
      h('div', null, (s.subscriptions || []).map((x) => h('div', { class: 'mono' }, x))), String(s.queuedMessages || 0),
      s.connected ? '' : fmtTime(s.expireTime),
      confirmButton('Delete', async () => {
        try {
          await ctx.api('DELETE', `${base}/${ctx.enc(s.clientId)}`);
          ctx.toast(`Session ${s.clientId} deleted`);
          await draw();
        } catch (e) { ctx.toast(e.message, true); }
      }),
    ]), 'no persistent sessions'));
  };
  ctx.every(REFRESH * 2, draw);
}

// topicPath encodes a topic for the retained/{topic=**} route: each level
// escaped, the slashes kept.
const topicPath = (ctx, t) => t.split('/').map(ctx.enc).join('/');

export async function retained(ctx) {
  if (!needTenant(ctx)) return;
  const base = `/v1/tenants/${ctx.enc(ctx.tenant)}/retained`;
  const filter = h('input', { id: 'retained-filter', value: '#' });
  const box = h('div');
  const form = h('form', { class: 'inline' }, field('Topic filter', filter), h('button', { type: 'submit' }, 'Browse'));
  const draw = async () => {
    const msgs = (await ctx.api('GET', `${base}?pageSize=1000&filter=${ctx.enc(filter.value || '#')}`)).messages || [];
    box.replaceChildren(table(['Topic', 'Payload', 'Position', 'Stored', ''], msgs.map((m) => [
      h('span', { class: 'mono' }, m.topic), h('span', { class: 'payload' }, payloadText(m.payload)),
      h('span', { class: 'mono' }, m.position), fmtTime(m.publishTime),
      confirmButton('Delete', async () => {
        try {
          await ctx.api('DELETE', `${base}/${topicPath(ctx, m.topic)}`);
          ctx.toast(`Retained message of ${m.topic} cleared`);
          // The deletion is in the stream; the store applies it a moment later.
          setTimeout(() => { if (ctx.live()) draw().catch((e) => ctx.toast(e.message, true)); }, 500);
        } catch (e) { ctx.toast(e.message, true); }
      }),
    ]), 'no retained messages match'));
  };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); draw().catch((e) => ctx.toast(e.message, true)); });
  ctx.root.append(section(`Retained messages of ${ctx.tenant}`, form, box));
  await draw();
}
