// The fleet as the page knows it: one Map of sessions, kept live by the
// event stream (WS /v1/events) and refreshed for metrics. Views subscribe and
// are told which sessions changed, at most once per animation frame.
import { api, wsUrl } from "./api.js";
import { ts } from "./util.js";

/** id → session JSON, as GET /v1/sessions/{id} answers it. */
export const sessions = new Map();

const listeners = new Set();
const eventListeners = new Set();
let dirty = new Set();
let removedAll = false;
let scheduled = false;
let status = "connecting";
const statusListeners = new Set();

/** fn(changedIds: Set, all: boolean) after changes; returns an unsubscribe. */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** fn(event) for every state transition received, as it arrives. */
export function onEvent(fn) {
  eventListeners.add(fn);
  return () => eventListeners.delete(fn);
}

/** fn(status) when the live connection's status changes. */
export function onStatus(fn) {
  statusListeners.add(fn);
  fn(status);
  return () => statusListeners.delete(fn);
}

function setStatus(s) {
  status = s;
  for (const fn of statusListeners) fn(s);
}

function changed(id) {
  dirty.add(id);
  schedule();
}

function schedule() {
  if (scheduled) return;
  scheduled = true;
  // Hidden tabs get no animation frames; the title and badge still update.
  if (document.hidden) setTimeout(flush, 500);
  else requestAnimationFrame(flush);
}

function flush() {
  scheduled = false;
  const ids = dirty;
  const all = removedAll;
  dirty = new Set();
  removedAll = false;
  const t0 = performance.now();
  for (const fn of listeners) fn(ids, all);
  const ms = performance.now() - t0;
  perf.renders++;
  perf.renderMs += ms;
  perf.maxRenderMs = Math.max(perf.maxRenderMs, ms);
}

/** What updating the views costs, for the browser test's figures. */
const perf = (window.__herdStore = { renders: 0, renderMs: 0, maxRenderMs: 0, refreshes: 0, refreshMs: 0 });

/** Puts a full session record in place; marks it changed if it differs. */
export function put(s) {
  const old = sessions.get(s.id);
  if (old && ts(old.updated_at) > ts(s.updated_at) && old.state !== s.state) {
    // An older snapshot than an event already applied: keep the newer state.
    s = { ...s, state: old.state, reason: old.reason, updated_at: old.updated_at };
  }
  if (!old || JSON.stringify(old) !== JSON.stringify(s)) {
    sessions.set(s.id, s);
    changed(s.id);
  }
}

/** Forgets a session (removed from the daemon). */
function drop(id) {
  if (sessions.delete(id)) {
    removedAll = true;
    changed(id);
  }
}

let refreshing = null;

/** Reloads every session (stopped and failed ones too). */
export function refresh() {
  if (refreshing) return refreshing;
  refreshing = api("GET", "/v1/sessions?all=true")
    .then((list) => {
      const t0 = performance.now();
      perf.refreshes++;
      const seen = new Set();
      for (const s of list) {
        seen.add(s.id);
        put(s);
      }
      for (const id of [...sessions.keys()]) if (!seen.has(id)) drop(id);
      perf.refreshMs += performance.now() - t0;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

const pendingFetch = new Set();
const FETCH_DELAY_MS = 400;
let fetchTimer = null;

/** Fetches the full record of a session soon (coalesced). */
export function refetch(id) {
  pendingFetch.add(id);
  if (fetchTimer) return;
  // Coalesced over a short while: a burst of events costs one round.
  fetchTimer = setTimeout(async () => {
    fetchTimer = null;
    const ids = [...pendingFetch];
    pendingFetch.clear();
    if (ids.length > 16) {
      // Many at once (a fleet restarting): one list instead of many requests.
      await refresh().catch(() => {});
      return;
    }
    await Promise.all(ids.map((id) =>
      api("GET", `/v1/sessions/${id}`).then(put, (e) => {
        if (e.status === 404) drop(id);
      })));
  }, FETCH_DELAY_MS);
}

/** States whose record says more than the event: fetched after the event. */
const DETAILED = new Set(["waiting_input", "starting", "failed", "stopped"]);

function applyEvent(e) {
  const s = sessions.get(e.session_id);
  if (!s) {
    refetch(e.session_id);
  } else if (ts(e.at) >= ts(s.updated_at)) {
    sessions.set(s.id, {
      ...s,
      state: e.to,
      reason: e.reason,
      generation: e.generation,
      updated_at: e.at,
      waiting: e.to === "waiting_input" ? s.waiting : undefined,
    });
    changed(s.id);
    // The event has the state; the record has what comes with some states:
    // the dialog, the new pid and restart count, the exit code and error.
    if (DETAILED.has(e.to)) refetch(s.id);
  }
  for (const fn of eventListeners) fn(e);
}

let socket = null;
let backoff = 500;

/** Opens the event stream and keeps it open; loads the fleet first. */
export function connect() {
  const ws = new WebSocket(wsUrl("/v1/events"));
  socket = ws;
  const early = [];
  let loaded = false;
  ws.onopen = () => {
    backoff = 500;
    // Subscribed first, then loaded: nothing between the two is lost.
    refresh().then(() => {
      loaded = true;
      for (const e of early.splice(0)) applyEvent(e);
      setStatus("live");
    }, () => setStatus("error"));
  };
  ws.onmessage = (m) => {
    let e;
    try {
      e = JSON.parse(m.data);
    } catch {
      return;
    }
    if (e.type === "lagged") {
      refresh().catch(() => {});
      return;
    }
    if (!loaded) early.push(e);
    else applyEvent(e);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    setStatus("reconnecting");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  };
}

/** Refreshes metrics (CPU, memory, tokens) every few seconds while visible. */
export function startMetrics(everyMs = 5000) {
  setInterval(() => {
    if (!document.hidden && status === "live") refresh().catch(() => {});
  }, everyMs);
}
