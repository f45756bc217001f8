// JWT verification keys and mTLS certificate identities of the selected
// tenant: list, add, delete.
import { formatCapabilities, parseCapabilities } from '../api.js';
import { confirmButton, field, fmtTime, h, payloadBytes, section, table } from '../dom.js';
import { needTenant } from './keys.js';

const ALGORITHMS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];

// addForm builds a form whose submit calls act(values) and redraws.
function addForm(id, inputs, label, act) {
  const msg = h('p', { class: 'error' });
  const form = h('form', { id, class: 'grid' }, inputs.map(([l, input]) => field(l, input)),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, label), msg));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    try {
      await act();
      form.reset();
    } catch (e) { msg.textContent = e.message; }
  });
  return form;
}

function deleteButton(ctx, what, path, redraw) {
  return confirmButton('Delete', async () => {
    try {
      await ctx.api('DELETE', path);
      ctx.toast(`${what} deleted`);
      await redraw();
    } catch (e) { ctx.toast(e.message, true); }
  });
}

const caps = (list) => h('div', null, formatCapabilities(list).map((c) => h('div', { class: 'mono' }, c)));

async function jwtSection(ctx) {
  const base = `/v1/tenants/${ctx.enc(ctx.tenant)}/jwt-keys`;
  const box = h('div');
  const secret = h('div');
  const draw = async () => {
    const keys = (await ctx.api('GET', `${base}?pageSize=1000`)).keys || [];
    box.replaceChildren(table(['Kid', 'Algorithm', 'Key', 'Issuer / audience', 'Default capabilities', 'Created', ''], keys.map((k) => [
      h('span', { class: 'mono' }, k.id), k.algorithm, k.jwksUrl || (k.publicKeyPem ? 'public key (PEM)' : 'HMAC secret'),
      [k.issuer, k.audience].filter(Boolean).join(' / '), caps(k.defaultCapabilities), fmtTime(k.createTime),
      deleteButton(ctx, `JWT key ${k.id}`, `${base}/${ctx.enc(k.id)}`, draw),
    ]), 'no JWT keys'));
  };
  await draw();
  const kid = h('input', { required: true, placeholder: 'key-2026' });
  const alg = h('select', null, ALGORITHMS.map((a) => h('option', { value: a }, a)));
  const pem = h('textarea', { rows: 3, placeholder: '-----BEGIN PUBLIC KEY----- (RS*, PS*, ES*)' });
  const jwks = h('input', { placeholder: 'https://issuer.example/.well-known/jwks.json' });
  const iss = h('input');
  const aud = h('input');
  const defaults = h('textarea', { rows: 2, placeholder: 'subscribe:alerts/#' });
  const form = addForm('create-jwt', [['Key id (kid)', kid], ['Algorithm', alg], ['Public key PEM', pem],
    ['or JWKS URL', jwks], ['Issuer', iss], ['Audience', aud], ['Default capabilities', defaults]], 'Add JWT key', async () => {
    const key = { id: kid.value.trim(), algorithm: alg.value, publicKeyPem: pem.value.trim(), jwksUrl: jwks.value.trim(),
      issuer: iss.value.trim(), audience: aud.value.trim(), defaultCapabilities: parseCapabilities(defaults.value) };
    const out = await ctx.api('POST', base, key);
    if (out.generatedHmacSecret) {
      const hex = [...payloadBytes(out.generatedHmacSecret)].map((b) => b.toString(16).padStart(2, '0')).join('');
      secret.replaceChildren(h('div', { class: 'secret' }, h('p', null, 'The generated HMAC secret (hex), shown this once:'),
        h('code', null, hex), h('button', { type: 'button', onclick: () => secret.replaceChildren() }, 'I have copied it')));
    }
    ctx.toast(`JWT key ${key.id} added`);
    await draw();
  });
  ctx.root.append(section(`JWT keys of ${ctx.tenant}`, box), section('New JWT key', secret, form));
}

async function mtlsSection(ctx) {
  const base = `/v1/tenants/${ctx.enc(ctx.tenant)}/mtls-identities`;
  const box = h('div');
  const draw = async () => {
    const ids = (await ctx.api('GET', `${base}?pageSize=1000`)).identities || [];
    box.replaceChildren(table(['Id', 'Description', 'Matches', 'Capabilities', 'Created', ''], ids.map((m) => [
      h('span', { class: 'mono' }, m.id), m.description || '',
      h('span', { class: 'mono' }, m.fingerprintSha256 ? `sha256 ${m.fingerprintSha256}` : `subject ${m.subject}`),
      caps(m.capabilities), fmtTime(m.createTime),
      deleteButton(ctx, `Identity ${m.id}`, `${base}/${ctx.enc(m.id)}`, draw),
    ]), 'no certificate identities'));
  };
  await draw();
  const desc = h('input');
  const fp = h('input', { placeholder: '64 hex digits', pattern: '[0-9a-f]{64}' });
  const subject = h('input', { placeholder: 'CN=device-1,O=Acme' });
  const capText = h('textarea', { rows: 2, placeholder: 'publish:devices/1/#' });
  const form = addForm('create-mtls', [['Description', desc], ['Certificate SHA-256 fingerprint', fp],
    ['or subject DN', subject], ['Capabilities', capText]], 'Add identity', async () => {
    await ctx.api('POST', base, { description: desc.value, fingerprintSha256: fp.value.trim(), subject: subject.value.trim(),
      capabilities: parseCapabilities(capText.value) });
    ctx.toast('Identity added');
    await draw();
  });
  ctx.root.append(section(`mTLS identities of ${ctx.tenant}`, box), section('New mTLS identity', form));
}

export async function render(ctx) {
  if (!needTenant(ctx)) return;
  await jwtSection(ctx);
  await mtlsSection(ctx);
}
