// The herd dashboard: a hash router over three views (fleet, session, new
// session), the live connection and the needs-me alerts.
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { connect, onStatus, startMetrics } from "./store.js";
import { start as startAlerts } from "./alerts.js";
import { fleetView } from "./fleet.js";
import { sessionView } from "./session.js";
import { createView } from "./create.js";

/** Main-thread figures for the browser test: long tasks, their total time. */
const perf = (window.__herdPerf = { longTasks: 0, longTaskMs: 0, cspViolations: [] });
if (typeof PerformanceObserver !== "undefined" && PerformanceObserver.supportedEntryTypes?.includes("longtask")) {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      perf.longTasks++;
      perf.longTaskMs += e.duration;
    }
  }).observe({ type: "longtask", buffered: true });
}
document.addEventListener("securitypolicyviolation", (e) => {
  perf.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});

let cleanup = null;

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  const root = document.getElementById("view");
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  document.title = "herd";
  if (parts[0] === "s" && parts[1]) {
    cleanup = sessionView(root, decodeURIComponent(parts[1]), parts[2]);
  } else if (parts[0] === "new") {
    createView(root);
  } else {
    cleanup = fleetView(root, new URLSearchParams(query));
  }
  window.scrollTo(0, 0);
}

window.addEventListener("hashchange", route);

onStatus((s) => {
  const conn = document.getElementById("conn");
  conn.textContent = s;
  conn.dataset.status = s;
});
startAlerts();
connect();
startMetrics();
route();
