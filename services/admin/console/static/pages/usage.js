// Usage of the selected tenant, against its limits, with three charts
// sampled by this page every 2 s while it is open:
//  - connections: GET .../usage (the edges' count, gathered over NATS);
//  - messages/s: how far the tenant's stream advanced between two samples
//    (lastPosition of GET .../messages), every message stored, any topic;
//  - bytes/s: the payload bytes of the messages stored in between, read
//    through GET .../messages (up to 5 pages of 1000 per sample; past that
//    the rate is estimated from the messages read, and marked "≈").
// The history lives in the page: it starts when the page opens and is
// gone when it closes. The admin API keeps no time series.
import { Chart } from '../chart.js';
import { fmtNumber, h, payloadBytes, section } from '../dom.js';
import { needTenant } from './keys.js';
import { LIMITS } from './tenants.js';

export const SAMPLE = 2000;
const PAGES = 5;

function seqOf(pos) {
  const i = (pos || '').lastIndexOf('-');
  return { epoch: i < 0 ? '' : pos.slice(0, i), seq: Number(i < 0 ? pos : pos.slice(i + 1)) || 0 };
}

export async function render(ctx) {
  if (!needTenant(ctx)) return;
  const t = ctx.tenants.find((x) => x.id === ctx.tenant) || {};
  const base = `/v1/tenants/${ctx.enc(ctx.tenant)}`;
  const numbers = h('dl', { class: 'numbers', id: 'usage-numbers' });
  const rate = new Chart('messages/s', (v) => fmtNumber(v));
  const bytes = new Chart('bytes/s', (v) => fmtNumber(v) + 'B');
  const conns = new Chart('connections', (v) => String(v));
  ctx.root.append(
    section(`Usage of ${ctx.tenant}`, numbers),
    section('Last 3 minutes', h('p', { class: 'muted' }, 'Sampled by this page every 2 s since it opened.'),
      h('div', { class: 'charts', id: 'charts' }, rate.el, bytes.el, conns.el)));

  let cursor = null;
  let last = null;
  const limit = (k) => {
    const v = Number((t.limits || {})[k] || 0);
    return v ? ` of ${fmtNumber(v, 0)}` : '';
  };
  const sample = async () => {
    const now = performance.now();
    const u = await ctx.api('GET', `${base}/usage`);
    let read = 0;
    let sum = 0;
    let page = await ctx.api('GET', `${base}/messages?pageSize=1000&after=${ctx.enc(cursor ?? '')}`);
    let caughtUp = true;
    if (cursor !== null) {
      for (let i = 0; ; i++) {
        for (const m of page.messages || []) { read++; sum += payloadBytes(m.payload).length; }
        if (page.nextPosition === page.lastPosition) break;
        if (i + 1 >= PAGES) { caughtUp = false; break; }
        page = await ctx.api('GET', `${base}/messages?pageSize=1000&after=${ctx.enc(page.nextPosition)}`);
      }
    }
    if (!ctx.live()) return;
    const head = seqOf(page.lastPosition);
    numbers.replaceChildren(
      h('dt', null, 'Connections'), h('dd', null, `${u.connections || 0}${limit('maxConnections')}`),
      h('dt', null, 'Persistent sessions'), h('dd', null, `${u.sessions || 0}${limit('maxSessions')}`),
      h('dt', null, 'Retained messages'), h('dd', null, `${u.retainedMessages || 0}${limit('maxRetainedMessages')}`),
      h('dt', null, 'Messages in the stream'), h('dd', null, head.seq ? `up to ${page.lastPosition}` : 'none yet'));
    conns.add(Number(u.connections || 0));
    if (last && last.epoch === head.epoch) {
      const dt = (now - last.at) / 1000;
      const n = head.seq - last.seq;
      rate.add(n / dt);
      if (caughtUp) bytes.add(sum / dt);
      else bytes.add(read ? (sum / read) * n / dt : null, ' ≈');
    } else if (last) {
      // A new stream (the tenant re-created): no rate across the change.
      rate.add(null);
      bytes.add(null);
    }
    last = { epoch: head.epoch, seq: head.seq, at: now };
    cursor = caughtUp ? page.nextPosition : page.lastPosition;
  };
  ctx.every(SAMPLE, sample);
}
