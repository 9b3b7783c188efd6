// Small helpers shared by every view: DOM building, formatting, states.

/** Builds an element: el("a.link", {href}, "text", child). Never parses HTML. */
export function el(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k in node && typeof v !== "string") node[k] = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/** Sets text only when it changed: cheap to call on every update. */
export function setText(node, text) {
  const t = text === undefined || text === null ? "" : String(text);
  if (node.textContent !== t) node.textContent = t;
}

/** Every session state, in the order a person cares about them. */
export const STATES = [
  "waiting_input", "failed", "busy", "ready", "starting", "pending",
  "restarting", "suspended", "stopping", "stopped",
];

/** Final states: the session is over. */
export const FINAL = new Set(["stopped", "failed"]);

/** States that need a person. */
export const NEEDS_ME = new Set(["waiting_input", "failed"]);

/** The word shown for a state. */
export function stateWord(state) {
  return state === "waiting_input" ? "needs input" : state;
}

/** Sort rank: sessions that need a person first, ended ones last. */
export function rank(state) {
  if (state === "waiting_input") return 0;
  if (state === "failed") return 1;
  if (FINAL.has(state)) return 3;
  return 2;
}

/** "3m 12s", "2h 5m", "4d 1h": an age from a duration in ms. */
export function age(ms) {
  if (!(ms >= 0)) return "";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** "12.3 MiB" */
export function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

/** "12.3k" */
export function count(n) {
  if (!n) return "0";
  if (n < 1000) return String(n);
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 1 : 0)}k`;
  return `${(n / 1e6).toFixed(1)}M`;
}

/** All tokens of a usage record. */
export function tokens(usage) {
  if (!usage) return 0;
  return (usage.input_tokens || 0) + (usage.output_tokens || 0) +
    (usage.cache_creation_input_tokens || 0) + (usage.cache_read_input_tokens || 0);
}

/** A session's display name: its name, else the start of its id. */
export function label(s) {
  return s.name || s.id.slice(0, 8);
}

/** The local time of an RFC 3339 timestamp. */
export function clock(at) {
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString();
}

/** Splits a command line like a shell would for simple quoting: 'a b' "c d" e\ f. */
export function splitCommand(line) {
  const out = [];
  let cur = "";
  let quote = null;
  let any = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === "\\" && quote === '"' && i + 1 < line.length) cur += line[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      any = true;
    } else if (c === "\\" && i + 1 < line.length) {
      cur += line[++i];
      any = true;
    } else if (/\s/.test(c)) {
      if (any || cur) out.push(cur);
      cur = "";
      any = false;
    } else {
      cur += c;
    }
  }
  if (quote) throw new Error(`command: unclosed ${quote} quote`);
  if (any || cur) out.push(cur);
  return out;
}

/** An RFC 3339 timestamp that compares as a string (nanoseconds padded). */
export function ts(at) {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(at || "");
  return m ? `${m[1]}.${(m[2] || "").padEnd(9, "0")}Z` : at || "";
}
