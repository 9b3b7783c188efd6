// The live terminal of one session: xterm.js over WS /v1/sessions/{id}/attach.
// The daemon sends the current screen first, then live output. Output is
// queued as it arrives and written to xterm.js once per animation frame, and
// no more than xterm.js can parse without falling behind: a session printing
// at full speed never freezes the tab. When the queue still grows past a
// bound, the page skips to the present (a fresh screen, as the daemon does
// for a viewer that lags) instead of buffering without end.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { wsUrl, sessionPath } from "./api.js";

/** Bytes handed to xterm.js per frame at most. */
const FRAME_BUDGET = 256 * 1024;
/** Bytes written but not yet parsed by xterm.js before writes pause. */
const IN_FLIGHT_MAX = 1024 * 1024;
/** Bytes queued in the page before it skips to the present. */
const QUEUE_MAX = 8 * 1024 * 1024;

/** Figures the browser test reads: what was rendered, and how. */
export const stats = (window.__herdTerm = {
  bytesReceived: 0,
  bytesRendered: 0,
  frames: 0,
  largestBatch: 0,
  skips: 0,
  connects: 0,
});

const encoder = new TextEncoder();

export class LiveTerminal {
  /**
   * @param {HTMLElement} container where the terminal is drawn
   * @param {string} id the session's id
   * @param {{readOnly: boolean, onMessage: (m: object) => void}} opts
   */
  constructor(container, id, opts) {
    this.id = id;
    this.container = container;
    this.readOnly = opts.readOnly;
    this.onMessage = opts.onMessage || (() => {});
    this.queue = [];
    this.queued = 0;
    this.inFlight = 0;
    this.frame = 0;
    this.closed = false;
    this.size = null;
    this.term = new Terminal({
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace',
      fontSize: 14,
      scrollback: 5000,
      cursorBlink: true,
      disableStdin: this.readOnly,
      allowProposedApi: false,
      theme: { background: "#0d1117", foreground: "#e6edf3", selectionBackground: "#264f78" },
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(container);
    this.term.onData((d) => this.input(encoder.encode(d)));
    this.term.onBinary((d) => this.input(Uint8Array.from(d, (c) => c.charCodeAt(0))));
    this.term.attachCustomKeyEventHandler((e) => this.keys(e));
    this.resizer = new ResizeObserver(() => this.refit());
    this.resizer.observe(container);
    this.refit();
    this.connect();
  }

  /** Ctrl+Shift+C copies the selection, Ctrl+Shift+V pastes. */
  keys(e) {
    if (e.type !== "keydown" || !e.ctrlKey || !e.shiftKey) return true;
    if (e.code === "KeyC") {
      this.copy();
      return false;
    }
    if (e.code === "KeyV") {
      this.pasteClipboard();
      return false;
    }
    return true;
  }

  async copy() {
    const text = this.term.getSelection();
    if (text) await navigator.clipboard.writeText(text);
    return text;
  }

  async pasteClipboard() {
    if (this.readOnly) return;
    const text = await navigator.clipboard.readText();
    // Through xterm.js: bracketed paste when the program asked for it.
    if (text) this.term.paste(text);
  }

  connect() {
    if (this.closed) return;
    let path = sessionPath(this.id, "/attach");
    if (!this.readOnly && this.size) path += `?cols=${this.size.cols}&rows=${this.size.rows}`;
    const ws = new WebSocket(wsUrl(path));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.queue = [];
    this.queued = 0;
    stats.connects++;
    ws.onmessage = (m) => {
      if (typeof m.data === "string") return this.control(m.data);
      const chunk = new Uint8Array(m.data);
      stats.bytesReceived += chunk.length;
      this.queue.push(chunk);
      this.queued += chunk.length;
      if (this.queued > QUEUE_MAX) return this.skip();
      this.schedule();
    };
    ws.onclose = (e) => {
      if (this.ws !== ws || this.closed) return;
      this.ended ? this.onMessage({ type: "closed", code: e.code, reason: e.reason })
        : setTimeout(() => this.connect(), 1000);
    };
  }

  control(text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return;
    }
    if (m.type === "hello") {
      this.ended = false;
      // The next binary frame redraws the whole screen.
      this.term.reset();
      if (this.readOnly && m.session) this.term.resize(m.session.cols, m.session.rows);
    } else if (m.type === "end") {
      this.ended = true;
    }
    this.onMessage(m);
  }

  /** Too much queued: drop it and reattach; the daemon redraws the screen. */
  skip() {
    stats.skips++;
    const old = this.ws;
    this.ws = null;
    old.onmessage = null;
    old.close();
    this.queue = [];
    this.queued = 0;
    this.connect();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.flush();
    });
  }

  /** Writes one frame's worth of queued output. */
  flush() {
    if (this.closed || !this.queue.length) return;
    if (this.inFlight >= IN_FLIGHT_MAX) {
      // xterm.js is still parsing: its callback schedules the next frame.
      return;
    }
    let n = 0;
    let i = 0;
    while (i < this.queue.length && n < FRAME_BUDGET) n += this.queue[i++].length;
    const parts = this.queue.splice(0, i);
    let batch = parts[0];
    if (parts.length > 1) {
      batch = new Uint8Array(n);
      let off = 0;
      for (const p of parts) {
        batch.set(p, off);
        off += p.length;
      }
    }
    this.queued -= n;
    this.inFlight += n;
    stats.frames++;
    stats.largestBatch = Math.max(stats.largestBatch, n);
    this.term.write(batch, () => {
      this.inFlight -= n;
      stats.bytesRendered += n;
      if (this.queue.length) this.schedule();
    });
    if (this.queue.length) this.schedule();
  }

  input(bytes) {
    if (this.readOnly || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(bytes);
  }

  /** Fits the terminal to its box and, when typing is on, the session to it. */
  refit() {
    if (this.closed || this.readOnly) return;
    const dims = this.fit.proposeDimensions();
    if (!dims || !dims.cols || !dims.rows) return;
    const cols = Math.max(20, dims.cols);
    const rows = Math.max(5, dims.rows);
    if (this.size && this.size.cols === cols && this.size.rows === rows) return;
    this.size = { cols, rows };
    this.term.resize(cols, rows);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "resize", cols, rows }));
    }
  }

  setReadOnly(readOnly) {
    this.readOnly = readOnly;
    this.term.options.disableStdin = readOnly;
    if (!readOnly) {
      this.size = null;
      this.refit();
      this.term.focus();
    }
  }

  focus() {
    this.term.focus();
  }

  dispose() {
    this.closed = true;
    if (this.frame) cancelAnimationFrame(this.frame);
    this.resizer.disconnect();
    if (this.ws) this.ws.close();
    this.term.dispose();
  }
}
