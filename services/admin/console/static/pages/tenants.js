// Tenants: list, create (operator), edit display name and limits, delete
// with confirmation (operator). A tenant-scoped admin sees its own tenant
// and may lower its limits, never raise them (the API enforces it).
import { confirmButton, field, fmtTime, h, section, table } from '../dom.js';

// LIMITS are the Limits message's fields as the JSON gateway names them.
export const LIMITS = [
  ['maxConnections', 'connections'],
  ['maxMessagesPerSecond', 'messages/s (tenant)'],
  ['maxBytesPerSecond', 'bytes/s (tenant)'],
  ['maxConnectionMessagesPerSecond', 'messages/s per connection'],
  ['maxConnectionBytesPerSecond', 'bytes/s per connection'],
  ['maxPayloadBytes', 'payload bytes'],
  ['maxSubscriptionsPerConnection', 'subscriptions per connection'],
  ['maxRetainedMessages', 'retained messages'],
  ['maxSessions', 'sessions'],
  ['maxQueuedMessages', 'queued messages'],
];

function limitsSummary(l) {
  const set = LIMITS.filter(([k]) => Number((l || {})[k] || 0) > 0).map(([k, label]) => `${label} ${l[k]}`);
  if (l && l.replayWindow && l.replayWindow !== '0s') set.push(`replay ${l.replayWindow}`);
  return set.length ? set.join(', ') : 'unlimited';
}

function editor(ctx, t) {
  const inputs = {};
  const form = h('form', { class: 'grid', id: 'edit-tenant' });
  const name = h('input', { name: 'displayName', value: t.displayName || '' });
  form.append(field('Display name', name));
  for (const [k, label] of LIMITS) {
    inputs[k] = h('input', { name: k, type: 'number', min: 0, step: 1, value: String((t.limits || {})[k] || 0) });
    form.append(field(`Max ${label} (0 = unlimited)`, inputs[k]));
  }
  const replay = h('input', { name: 'replayWindow', placeholder: 'e.g. 3600s', value: (t.limits || {}).replayWindow || '' });
  form.append(field('Replay window (seconds, e.g. 3600s)', replay));
  const msg = h('p', { class: 'error' });
  form.append(h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save'), msg));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    // Only the fields changed: the gateway makes the update mask from
    // them, and a scoped admin may lower a limit without touching others.
    const body = {};
    if (name.value !== (t.displayName || '')) body.displayName = name.value;
    const limits = {};
    for (const [k] of LIMITS) {
      if (String(Number(inputs[k].value || 0)) !== String(Number((t.limits || {})[k] || 0))) limits[k] = String(Number(inputs[k].value || 0));
    }
    const rw = replay.value.trim();
    if (rw !== ((t.limits || {}).replayWindow || '')) limits.replayWindow = rw && !rw.endsWith('s') ? rw + 's' : rw || '0s';
    if (Object.keys(limits).length) body.limits = limits;
    if (!Object.keys(body).length) { msg.textContent = 'Nothing changed.'; return; }
    body.revision = t.revision;
    try {
      await ctx.api('PATCH', `/v1/tenants/${ctx.enc(t.id)}`, body);
      ctx.toast(`Tenant ${t.id} saved`);
      await ctx.reloadTenants(t.id);
    } catch (e) {
      msg.textContent = e.message;
    }
  });
  return section(`Edit ${t.id}`, form);
}

export async function render(ctx) {
  const list = await ctx.api('GET', '/v1/tenants?pageSize=1000');
  const tenants = list.tenants || [];
  const editBox = h('div');
  const rows = tenants.map((t) => [
    h('span', { class: 'mono' }, t.id),
    t.displayName || '',
    fmtTime(t.createTime),
    limitsSummary(t.limits),
    h('span', { class: 'actions' },
      h('button', { type: 'button', onclick: () => { editBox.replaceChildren(editor(ctx, t)); editBox.scrollIntoView(); } }, 'Edit'),
      ctx.operator && confirmButton('Delete', async () => {
        try {
          await ctx.api('DELETE', `/v1/tenants/${ctx.enc(t.id)}?revision=${t.revision}`);
          ctx.toast(`Tenant ${t.id} deleted`);
          await ctx.reloadTenants();
        } catch (e) { ctx.toast(e.message, true); }
      })),
  ]);
  ctx.root.append(section('Tenants', table(['Id', 'Name', 'Created', 'Limits', ''], rows, 'no tenants')));
  if (ctx.operator) {
    const id = h('input', { name: 'id', required: true, pattern: '[a-z0-9][a-z0-9_\\-]{0,62}', placeholder: 'acme' });
    const name = h('input', { name: 'displayName', placeholder: 'Acme Corp' });
    const msg = h('p', { class: 'error' });
    const form = h('form', { id: 'create-tenant', class: 'inline' }, field('Id', id), field('Display name', name),
      h('button', { type: 'submit' }, 'Create tenant'), msg);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      msg.textContent = '';
      try {
        const t = await ctx.api('POST', '/v1/tenants', { id: id.value.trim(), displayName: name.value });
        ctx.toast(`Tenant ${t.id} created`);
        await ctx.reloadTenants(t.id);
      } catch (e) { msg.textContent = e.message; }
    });
    ctx.root.append(section('New tenant', form));
  }
  ctx.root.append(editBox);
}
