// Metrics charts of one session: CPU, memory and output rate, sampled from
// the session's record while its page is open (the daemon keeps no history).
import { el, bytes } from "./util.js";
import { api, sessionPath } from "./api.js";
import { put } from "./store.js";

const EVERY_MS = 2000;
const KEEP = 300; // ten minutes of samples

const CHARTS = [
  { key: "cpu", title: "CPU", fmt: (v) => `${v.toFixed(0)}%`, min: 100 },
  { key: "rss", title: "Memory (RSS)", fmt: bytes, min: 1024 * 1024 },
  { key: "out", title: "Output", fmt: (v) => `${bytes(v)}/s`, min: 1024 },
];

export class MetricsPanel {
  constructor(root, id, signal) {
    this.id = id;
    this.signal = signal;
    this.samples = [];
    this.canvases = {};
    this.values = {};
    for (const c of CHARTS) {
      this.canvases[c.key] = el("canvas.chart", { height: 90, "aria-label": c.title });
      this.values[c.key] = el("span.chart-value");
      root.append(el("figure.chart-box", null,
        el("figcaption", null, c.title, " ", this.values[c.key]), this.canvases[c.key]));
    }
    root.append(el("p.muted.small", null, `Sampled every ${EVERY_MS / 1000}s while this page is open.`));
    this.timer = setInterval(() => this.sample(), EVERY_MS);
    this.sample();
  }

  async sample() {
    if (document.hidden) return;
    let s;
    try {
      s = await api("GET", sessionPath(this.id), undefined, { signal: this.signal });
    } catch {
      return;
    }
    put(s);
    const now = performance.now();
    const last = this.samples[this.samples.length - 1];
    const m = s.metrics || {};
    const out = last && now > last.t ? Math.max(0, ((m.bytes_out || 0) - last.bytesOut) / ((now - last.t) / 1000)) : 0;
    this.samples.push({ t: now, cpu: m.cpu_percent || 0, rss: m.rss_bytes || 0, out, bytesOut: m.bytes_out || 0 });
    if (this.samples.length > KEEP) this.samples.shift();
    this.draw();
  }

  resize() {
    this.draw();
  }

  draw() {
    for (const c of CHARTS) {
      const canvas = this.canvases[c.key];
      const w = canvas.clientWidth;
      if (!w) continue;
      const ratio = window.devicePixelRatio || 1;
      const h = 90;
      if (canvas.width !== Math.round(w * ratio)) {
        canvas.width = Math.round(w * ratio);
        canvas.height = Math.round(h * ratio);
      }
      const g = canvas.getContext("2d");
      g.setTransform(ratio, 0, 0, ratio, 0, 0);
      g.clearRect(0, 0, w, h);
      const values = this.samples.map((s) => s[c.key]);
      const max = Math.max(c.min, ...values) * 1.1;
      g.strokeStyle = "#30363d";
      g.lineWidth = 1;
      for (const f of [0.25, 0.5, 0.75]) {
        g.beginPath();
        g.moveTo(0, h * f);
        g.lineTo(w, h * f);
        g.stroke();
      }
      g.fillStyle = "#8b949e";
      g.font = "11px system-ui, sans-serif";
      g.fillText(c.fmt(max), 4, 12);
      if (values.length > 1) {
        const step = w / (KEEP - 1);
        const x0 = w - (values.length - 1) * step;
        g.beginPath();
        values.forEach((v, i) => {
          const x = x0 + i * step;
          const y = h - (v / max) * (h - 2) - 1;
          if (i === 0) g.moveTo(x, y);
          else g.lineTo(x, y);
        });
        g.strokeStyle = "#58a6ff";
        g.lineWidth = 1.5;
        g.stroke();
      }
      const lastValue = values[values.length - 1];
      this.values[c.key].textContent = lastValue === undefined ? "" : c.fmt(lastValue);
    }
  }

  dispose() {
    clearInterval(this.timer);
  }
}
