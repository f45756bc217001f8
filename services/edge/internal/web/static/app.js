// Herald example page: a live topic viewer over SSE or the native
// WebSocket protocol, and a publish box over POST /publish. See package
// web for what the page exposes on window.
'use strict';

window.received = [];
window.gaps = [];
window.herald = { transport: null, state: 'closed', opens: 0, errors: 0, closes: [], lastId: '' };

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
  function sse(filter) {
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

  // WebSocket: the native protocol; on every (re)connect the page
  // subscribes from the position of the last message it received.
  function ws(filter, binary) {
    let sock = null, cancelRetry = null, stopped = false, seq = 0;
    function start() {
      if (stopped) return;
      const u = new URL('/ws', location.href);
      u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
      if (binary) u.searchParams.set('binary', '1');
      setState(herald.opens ? 'reconnecting' : 'connecting');
      sock = new WebSocket(u);
      sock.binaryType = 'arraybuffer';
      let subID = '';
      sock.onopen = () => {
        subID = 'sub-' + (++seq);
        const req = { op: 'subscribe', id: subID, topic: filter };
        if (herald.lastId) req.from = herald.lastId;
        else Object.assign(req, startOf());
        sock.send(JSON.stringify(req));
      };
      sock.onmessage = (e) => {
        const f = typeof e.data === 'string' ? JSON.parse(e.data) : decodeBinary(e.data);
        switch (f.type) {
          case 'ack': if (f.id === subID) { backoff = 250; herald.opens++; setState('open'); } break;
          case 'message': record(f.position, f); break;
          case 'gap': gap(f); break;
          case 'error': herald.errors++; row(['error', f.id || '', f.code + ': ' + f.message], 'gap'); break;
        }
      };
      sock.onclose = (e) => {
        herald.closes.push(e.code);
        setState('closed');
        if (!stopped) cancelRetry = retryLater(start);
      };
    }
    start();
    return { stop() { stopped = true; if (cancelRetry) cancelRetry(); if (sock) sock.close(); } };
  }

  function subscribe(filter, transport) {
    if (current) current.stop();
    herald.transport = transport;
    herald.lastId = '';
    herald.opens = 0;
    current = transport === 'ws' ? ws(filter, params.get('binary') === '1') : sse(filter);
  }

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

  const transport = params.get('transport') === 'ws' ? 'ws' : 'sse';
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
