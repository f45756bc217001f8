// Herald example page: a live topic viewer over SSE or the native
// WebSocket protocol, and a publish box over POST /publish. See package
// web for what the page exposes on window.
'use strict';

window.received = [];
window.gaps = [];
window.herald = { transport: null, state: 'closed', opens: 0, errors: 0, closes: [], lastId: '', edges: [], fallbacks: [] };

(function () {
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  const maxRows = 500;
  let current = null; // the running subscription: {stop()}
  let backoff = 250;

  function setState(s) {
    herald.state = s;
    const el = $('status');
    el.textContent = s;
    el.className = s;
  }

  function row(cells, cls) {
    const tr = document.createElement('tr');
    if (cls) tr.className = cls;
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.appendChild(td);
    }
    tr.lastChild.className = 'payload';
    const log = $('log');
    log.insertBefore(tr, log.firstChild);
    while (log.childNodes.length > maxRows) log.removeChild(log.lastChild);
  }

  // record shows a message. A retained message of the start comes
  // without a position (id ''): the page's position stays where it was.
  function record(id, d) {
    received.push({ id: id, topic: d.topic, payload: d.payload, encoding: d.encoding, seq: d.seq, retain: d.retain });
    if (id) herald.lastId = id;
    row([id || 'retained', d.topic, d.encoding === 'utf8' ? d.payload : '(' + d.encoding + ') ' + d.payload]);
  }

  // The start of a new subscription (none once the page has a position
  // to resume from): retained=true, or rewind=<n> / rewind=<duration>.
  function startOf() {
    const v = $('start').value;
    if (v === 'retained') return { retained: true };
    if (v === 'rewind') return { rewind: $('rewind').value };
    return {};
  }

  function gap(g) {
    gaps.push(g);
    row(['gap', '', 'messages after ' + g.from + ' may be missing' + (g.epoch_changed ? ' (stream recreated)' : '')], 'gap');
  }

  function retryLater(start) {
    const delay = backoff;
    backoff = Math.min(backoff * 2, 5000);
    const t = setTimeout(start, delay);
    return () => clearTimeout(t);
  }

  // SSE: EventSource reconnects by itself with Last-Event-ID after a
  // network error; after an answer that is not an event stream it stops,
  // and the page starts a new one from its last id (?lastEventId=).
  function sse(filter, onFail) {
    let es = null, cancelRetry = null, stopped = false;
    function start() {
      if (stopped) return;
      let url = '/sse?topic=' + encodeURIComponent(filter);
      if (herald.lastId) {
        url += '&lastEventId=' + encodeURIComponent(herald.lastId);
      } else {
        // EventSource's own reconnects keep this URL and add their
        // Last-Event-ID header, which the edge takes over the start.
        const s = startOf();
        if (s.retained) url += '&retained=true';
        if (s.rewind) url += '&rewind=' + encodeURIComponent(s.rewind);
      }
      setState(herald.opens ? 'reconnecting' : 'connecting');
      es = new EventSource(url);
      es.onopen = () => { backoff = 250; herald.opens++; setState('open'); };
      es.onmessage = (e) => record(e.lastEventId, JSON.parse(e.data));
      es.addEventListener('gap', (e) => gap(JSON.parse(e.data)));
      es.onerror = () => {
        herald.errors++;
        if (!herald.opens && onFail) {
          // Never opened: the next transport.
          stopped = true;
          es.close();
          onFail();
          return;
        }
        if (es.readyState === EventSource.CLOSED) {
          setState('closed');
          cancelRetry = retryLater(start);
        } else {
          setState('reconnecting');
        }
      };
    }
    start();
    return { stop() { stopped = true; if (cancelRetry) cancelRetry(); if (es) es.close(); } };
  }

  // decodeBinary splits a binary frame: 4-byte big-endian header length,
  // JSON header, raw payload (shown base64).
  function decodeBinary(buf) {
    const n = new DataView(buf).getUint32(0);
    const f = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
    const bytes = new Uint8Array(buf, 4 + n);
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    f.payload = btoa(s);
    f.encoding = 'base64';
    return f;
  }

  // frames handles the native protocol's server frames for a
  // subscription whose subscribe request is subID: opened is called on
  // its ack; publish answers settle the promises of pending.
  function frames(subID, opened, pending) {
    return (f) => {
      const p = f.id && pending.get(f.id);
      if (p && (f.type === 'ack' || f.type === 'error')) {
        pending.delete(f.id);
        if (f.type === 'ack') p.resolve(f.position); else p.reject(new Error(f.code + ': ' + f.message));
        return;
      }
      switch (f.type) {
        case 'ack': if (f.id === subID) { backoff = 250; herald.opens++; setState('open'); opened(); } break;
        case 'message': record(f.position, f); break;
        case 'gap': gap(f); break;
        case 'error': herald.errors++; row(['error', f.id || '', f.code + ': ' + f.message], 'gap'); break;
      }
    };
  }

  // publisher returns a publish over a connection's send: the answer's
  // position, or its error.
  function publisher(send, pending) {
    let n = 0;
    return (topic, payload) => new Promise((resolve, reject) => {
      const id = 'pub-' + (++n);
      pending.set(id, { resolve, reject });
      if (!send({ op: 'publish', id: id, topic: topic, payload: payload, qos: 1 })) {
        pending.delete(id);
        reject(new Error('not connected'));
      }
    });
  }

  // WebSocket: the native protocol; on every (re)connect the page
  // subscribes from the position of the last message it received.
  // onFail, if set, is called instead of retrying when the first
  // connection fails before it was subscribed (the next transport then).
  function ws(filter, binary, onFail) {
    let sock = null, cancelRetry = null, stopped = false, seq = 0, ever = false;
    const pending = new Map();
    function start() {
      if (stopped) return;
      const u = new URL('/ws', location.href);
      u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
      if (binary) u.searchParams.set('binary', '1');
      setState(herald.opens ? 'reconnecting' : 'connecting');
      sock = new WebSocket(u);
      sock.binaryType = 'arraybuffer';
      const subID = 'sub-' + (++seq);
      const handle = frames(subID, () => { ever = true; }, pending);
      sock.onopen = () => {
        const req = { op: 'subscribe', id: subID, topic: filter };
        if (herald.lastId) req.from = herald.lastId;
        else Object.assign(req, startOf());
        sock.send(JSON.stringify(req));
      };
      sock.onmessage = (e) => handle(typeof e.data === 'string' ? JSON.parse(e.data) : decodeBinary(e.data));
      sock.onclose = (e) => {
        herald.closes.push(e.code);
        setState('closed');
        if (stopped) return;
        if (!ever && onFail) { stopped = true; onFail(); return; }
        cancelRetry = retryLater(start);
      };
    }
    start();
    const send = (v) => { if (!sock || sock.readyState !== WebSocket.OPEN) return false; sock.send(JSON.stringify(v)); return true; };
    return { publish: publisher(send, pending), stop() { stopped = true; if (cancelRetry) cancelRetry(); if (sock) sock.close(); } };
  }

  // WebTransport: the native protocol's frames on one bidirectional
  // stream, each framed as kind (1: text, 2: binary) · 4-byte big-endian
  // length · frame. The URL and the certificate's hash (for
  // serverCertificateHashes: a self-signed certificate is trusted by its
  // hash) come from GET /webtransport, asked again at every (re)connect,
  // so that a balancer may send the page to another edge; the page
  // resubscribes from the position of the last message it received.
  function webtransport(filter, binary, onFail) {
    let session = null, writer = null, cancelRetry = null, stopped = false, seq = 0, ever = false;
    const pending = new Map();
    const enc = new TextEncoder();
    function send(v) {
      if (!writer) return false;
      const b = enc.encode(JSON.stringify(v));
      const f = new Uint8Array(5 + b.length);
      f[0] = 1;
      new DataView(f.buffer).setUint32(1, b.length);
      f.set(b, 5);
      writer.write(f).catch(() => {});
      return true;
    }
    async function read(readable, handle) {
      const reader = readable.getReader();
      let buf = new Uint8Array(0);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const joined = new Uint8Array(buf.length + value.length);
        joined.set(buf);
        joined.set(value, buf.length);
        buf = joined;
        while (buf.length >= 5) {
          const n = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
          if (buf.length < 5 + n) break;
          const kind = buf[0], body = buf.slice(5, 5 + n);
          buf = buf.slice(5 + n);
          handle(kind === 2 ? decodeBinary(body.buffer) : JSON.parse(new TextDecoder().decode(body)));
        }
      }
    }
    async function start() {
      if (stopped) return;
      setState(herald.opens ? 'reconnecting' : 'connecting');
      let ended = false;
      const end = (code) => {
        if (ended) return;
        ended = true;
        writer = null;
        herald.closes.push(code);
        setState('closed');
        if (stopped) return;
        if (!ever && onFail) { stopped = true; onFail(); return; }
        cancelRetry = retryLater(start);
      };
      try {
        if (typeof WebTransport === 'undefined') throw new Error('this browser has no WebTransport');
        const resp = await fetch('/webtransport');
        if (!resp.ok) throw new Error('this edge serves no WebTransport');
        herald.edges.push(resp.headers.get('X-Herald-Edge') || '');
        const info = await resp.json();
        const u = new URL(info.url);
        if (binary) u.searchParams.set('binary', '1');
        const hash = Uint8Array.from(atob(info.cert_hash), (c) => c.charCodeAt(0));
        session = new WebTransport(u, { serverCertificateHashes: [{ algorithm: 'sha-256', value: hash }] });
        session.closed.then((c) => end(c.closeCode || 0), () => end(0));
        await session.ready;
        const stream = await session.createBidirectionalStream();
        writer = stream.writable.getWriter();
        const subID = 'sub-' + (++seq);
        const req = { op: 'subscribe', id: subID, topic: filter };
        if (herald.lastId) req.from = herald.lastId;
        else Object.assign(req, startOf());
        send(req);
        await read(stream.readable, frames(subID, () => { ever = true; }, pending));
        end(0);
      } catch (err) {
        herald.errors++;
        herald.lastError = String(err);
        end(0);
      }
    }
    start();
    return { publish: publisher(send, pending), stop() { stopped = true; if (cancelRetry) cancelRetry(); if (session) session.close(); } };
  }

  // Long-polling: GET /poll from the last cursor, again and again; the
  // first poll asks for the start (or answers the stream's end).
  function poll(filter) {
    let stopped = false, cursor = '';
    const ctl = new AbortController();
    async function loop() {
      setState('connecting');
      while (!stopped) {
        const q = new URLSearchParams({ topic: filter, timeout: '25' });
        if (cursor) q.set('cursor', cursor);
        else if (herald.lastId) q.set('cursor', herald.lastId);
        else {
          const s = startOf();
          if (s.retained) q.set('retained', 'true');
          if (s.rewind) q.set('rewind', s.rewind);
        }
        try {
          const resp = await fetch('/poll?' + q, { signal: ctl.signal });
          const body = await resp.json();
          if (!resp.ok) throw new Error(body.error.code);
          if (herald.state !== 'open') { backoff = 250; herald.opens++; setState('open'); }
          if (body.gap) gap({ from: cursor, epoch_changed: body.epoch_changed });
          for (const m of body.messages) record(m.position, m);
          cursor = body.cursor;
        } catch (err) {
          if (stopped) return;
          herald.errors++;
          setState('reconnecting');
          await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(backoff * 2, 5000);
        }
      }
    }
    loop();
    return { stop() { stopped = true; ctl.abort(); } };
  }

  // The fallback order of transport "auto": WebTransport where the
  // browser and the network allow HTTP/3, then the WebSocket protocol,
  // then SSE, then long-polling (docs/protocols.md).
  const fallback = ['webtransport', 'ws', 'sse', 'poll'];

  function subscribe(filter, transport) {
    if (current) current.stop();
    herald.lastId = '';
    herald.opens = 0;
    const binary = params.get('binary') === '1';
    const open = (t, onFail) => {
      herald.transport = t;
      switch (t) {
        case 'webtransport': return webtransport(filter, binary, onFail);
        case 'ws': return ws(filter, binary, onFail);
        case 'poll': return poll(filter);
        default: return sse(filter, onFail);
      }
    };
    if (transport !== 'auto') {
      current = open(transport);
      return;
    }
    const next = (i) => {
      const t = fallback[i];
      const onFail = i + 1 < fallback.length ? () => { herald.fallbacks.push(t); current = next(i + 1); } : undefined;
      return open(t, onFail);
    };
    current = next(0);
  }

  // herald.publish publishes over the subscription's connection
  // (WebTransport, WebSocket) and resolves with the stored position.
  herald.publish = (topic, payload) => current && current.publish ? current.publish(topic, payload)
    : Promise.reject(new Error('this transport publishes with POST /publish'));

  $('subscribe').addEventListener('submit', (e) => {
    e.preventDefault();
    subscribe($('filter').value, $('transport').value);
  });

  $('publish').addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ topic: $('ptopic').value, qos: '1' });
    if ($('pretain').checked) q.set('retain', '1');
    try {
      const resp = await fetch('/publish?' + q, { method: 'POST', body: $('ppayload').value, headers: { 'Content-Type': 'text/plain' } });
      const body = await resp.json();
      $('presult').textContent = resp.ok ? 'stored at ' + body.position : body.error.code + ': ' + body.error.message;
    } catch (err) {
      $('presult').textContent = String(err);
    }
  });

  const transport = ['ws', 'webtransport', 'poll', 'auto'].includes(params.get('transport')) ? params.get('transport') : 'sse';
  $('transport').value = transport;
  if (params.get('retained') === 'true') $('start').value = 'retained';
  if (params.has('rewind')) {
    $('start').value = 'rewind';
    $('rewind').value = params.get('rewind');
  }
  if (params.has('topic')) {
    $('filter').value = params.get('topic');
    subscribe(params.get('topic'), transport);
  }
})();
