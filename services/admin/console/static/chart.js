// A small time-series chart drawn as SVG: the last points of a series, its
// latest value and its peak over the window.
const NS = 'http://www.w3.org/2000/svg';
const W = 300;
const H = 80;

function svg(tag, attrs) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

export class Chart {
  constructor(title, format, capacity = 90) {
    this.title = title;
    this.format = format;
    this.capacity = capacity;
    this.points = [];
    this.line = svg('polyline', { class: 'line', points: '' });
    const plot = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': title });
    plot.append(svg('line', { class: 'axis', x1: 0, y1: H - 1, x2: W, y2: H - 1 }), this.line);
    this.value = document.createElement('span');
    this.value.className = 'value';
    this.peak = document.createElement('span');
    this.peak.className = 'peak';
    const head = document.createElement('div');
    head.className = 'chart-head';
    const name = document.createElement('span');
    name.textContent = title;
    head.append(name, this.value);
    this.el = document.createElement('figure');
    this.el.className = 'chart';
    this.el.append(head, plot, this.peak);
  }

  // add appends a sample (null: unknown, drawn as a gap at 0) and redraws.
  add(v, note = '') {
    this.points.push(v);
    if (this.points.length > this.capacity) this.points.shift();
    const known = this.points.filter((p) => p !== null);
    const max = Math.max(1, ...known);
    const step = W / (this.capacity - 1);
    const offset = this.capacity - this.points.length;
    this.line.setAttribute('points', this.points
      .map((p, i) => `${((offset + i) * step).toFixed(1)},${(H - 2 - ((p ?? 0) / max) * (H - 6)).toFixed(1)}`).join(' '));
    this.value.textContent = v === null ? '…' : this.format(v) + note;
    this.peak.textContent = known.length ? `peak ${this.format(Math.max(...known))} over the last ${this.points.length} samples` : '';
  }
}
