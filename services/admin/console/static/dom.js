// A few DOM builders. Every value from the API goes in as text (never as
// HTML): topics, payloads and descriptions are other people's input.

// h builds an element: h('a', {href: '#x', class: 'c', onclick: fn}, 'text', child).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// table builds a table in a horizontally scrolling box, so that a wide
// table never widens the page.
export function table(headers, rows, empty = 'none') {
  const body = rows.length
    ? rows.map((r) => h('tr', null, r.map((c, i) => h('td', { 'data-label': headers[i] }, c))))
    : [h('tr', null, h('td', { colspan: headers.length, class: 'empty' }, empty))];
  return h('div', { class: 'scroll' },
    h('table', null, h('thead', null, h('tr', null, headers.map((t) => h('th', null, t)))), h('tbody', null, body)));
}

// field is a labelled input.
export function field(label, input) {
  return h('label', null, label, input);
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', null, title), ...children);
}

export function fmtTime(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toLocaleString();
}

export function fmtNumber(n, digits = 1) {
  const v = Number(n);
  if (!isFinite(v)) return '';
  const units = ['', 'k', 'M', 'G', 'T'];
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1000 && i < units.length - 1) { x /= 1000; i++; }
  return (i ? x.toFixed(digits) : String(Math.round(x * 10) / 10)) + units[i];
}

// payloadBytes decodes a protobuf JSON bytes field (standard base64).
export function payloadBytes(b64) {
  const bin = atob(b64 || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// payloadText shows a payload as UTF-8 text, or says it is binary.
export function payloadText(b64) {
  const bytes = payloadBytes(b64);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return `(${bytes.length} bytes, binary)`;
  }
}

// toBase64 encodes text as UTF-8 then base64, for a bytes field.
export function toBase64(text) {
  let bin = '';
  for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
  return btoa(bin);
}

// confirmButton asks for a second click before acting: the first turns
// it into "Really <label>?" for 10 s. While armed it has the class "armed",
// which pages that redraw on a timer check so as not to disarm it.
export function confirmButton(label, act) {
  let timer;
  const reset = () => { b.classList.remove('armed'); b.textContent = label; };
  const b = h('button', {
    type: 'button', class: 'danger',
    onclick: async () => {
      if (!b.classList.contains('armed')) {
        b.classList.add('armed');
        b.textContent = `Really ${label.toLowerCase()}?`;
        timer = setTimeout(reset, 10000);
        return;
      }
      clearTimeout(timer);
      b.disabled = true;
      try { await act(); } finally { b.disabled = false; reset(); }
    },
  }, label);
  return b;
}
