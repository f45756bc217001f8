// API keys of the selected tenant: list, create (the token is shown once,
// here, and kept nowhere), edit capabilities, revoke.
import { formatCapabilities, parseCapabilities } from '../api.js';
import { confirmButton, field, fmtTime, h, section, table } from '../dom.js';

export function needTenant(ctx) {
  if (ctx.tenant) return true;
  ctx.root.append(section('No tenant', h('p', null, 'Create or select a tenant first.')));
  return false;
}

function capsEditor(ctx, k, done) {
  const text = h('textarea', { rows: 3 }, formatCapabilities(k.capabilities).join('\n'));
  const msg = h('p', { class: 'error' });
  const form = h('form', { class: 'caps-edit' }, text, h('button', { type: 'submit' }, 'Save'), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await ctx.api('PATCH', `/v1/tenants/${ctx.enc(ctx.tenant)}/keys/${ctx.enc(k.id)}`,
        { capabilities: parseCapabilities(text.value), revision: k.revision });
      ctx.toast(`Key ${k.id} saved`);
      done();
    } catch (e) { msg.textContent = e.message; }
  });
  return form;
}

export async function render(ctx) {
  if (!needTenant(ctx)) return;
  const base = `/v1/tenants/${ctx.enc(ctx.tenant)}/keys`;
  const listBox = h('div');
  const draw = async () => {
    const keys = (await ctx.api('GET', `${base}?pageSize=1000`)).keys || [];
    listBox.replaceChildren(table(['Id', 'Description', 'Capabilities', 'Created', 'Expires', ''], keys.map((k) => {
      const caps = h('div', null, formatCapabilities(k.capabilities).map((c) => h('div', { class: 'mono' }, c)));
      return [
        h('span', { class: 'mono' }, k.id), k.description || '', caps, fmtTime(k.createTime), fmtTime(k.expireTime) || 'never',
        h('span', { class: 'actions' },
          h('button', { type: 'button', onclick: () => caps.replaceChildren(capsEditor(ctx, k, draw)) }, 'Edit'),
          confirmButton('Revoke', async () => {
            try {
              await ctx.api('DELETE', `${base}/${ctx.enc(k.id)}`);
              ctx.toast(`Key ${k.id} revoked`);
              await draw();
            } catch (e) { ctx.toast(e.message, true); }
          })),
      ];
    }), 'no API keys'));
  };
  await draw();
  ctx.root.append(section(`API keys of ${ctx.tenant}`, listBox));

  const desc = h('input', { name: 'description', placeholder: 'sensor gateway' });
  const caps = h('textarea', { name: 'capabilities', rows: 3, placeholder: 'publish,subscribe:sensors/#' });
  const expires = h('input', { name: 'expires', type: 'datetime-local' });
  const msg = h('p', { class: 'error' });
  const secret = h('div');
  const form = h('form', { id: 'create-key', class: 'grid' },
    field('Description', desc), field('Capabilities, one per line: <actions>:<filter>', caps),
    field('Expires (optional)', expires), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create key'), msg));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    try {
      const body = { description: desc.value, capabilities: parseCapabilities(caps.value) };
      if (expires.value) body.expireTime = new Date(expires.value).toISOString();
      const out = await ctx.api('POST', base, body);
      // The token exists only in this box: not stored, not logged.
      secret.replaceChildren(h('div', { class: 'secret' },
        h('p', null, 'The key\u2019s token, shown this once: copy it now.'),
        h('code', { id: 'new-token' }, out.token),
        h('button', { type: 'button', onclick: () => secret.replaceChildren() }, 'I have copied it')));
      form.reset();
      await draw();
    } catch (e) { msg.textContent = e.message; }
  });
  ctx.root.append(section('New API key', secret, form));
}
