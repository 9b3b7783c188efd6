// "Needs me": the badge in the header, the tab's title, in-page toasts and
// browser notifications when a session starts waiting for input or fails.
import { el, label, setText } from "./util.js";
import { onEvent, sessions, subscribe } from "./store.js";
import { api } from "./api.js";

const SEEN_KEY = "herd.seenFailed";
const seenFailed = new Set(JSON.parse(localStorage.getItem(SEEN_KEY) || "[]"));

/** A failed session stops counting once its page was opened. */
export function acknowledge(id) {
  const s = sessions.get(id);
  if (s && s.state === "failed" && !seenFailed.has(id)) {
    seenFailed.add(id);
    // Bounded: only ids of sessions the daemon still has are worth keeping.
    const keep = [...seenFailed].filter((x) => sessions.has(x)).slice(-2000);
    localStorage.setItem(SEEN_KEY, JSON.stringify(keep));
    update();
  }
}

/** Whether a session counts as needing a person now. */
export function needsMe(s) {
  return s.state === "waiting_input" || (s.state === "failed" && !seenFailed.has(s.id));
}

let lastCount = -1;

function update() {
  let n = 0;
  for (const s of sessions.values()) if (needsMe(s)) n++;
  if (n === lastCount) return;
  lastCount = n;
  const badge = document.getElementById("needs");
  setText(document.getElementById("needs-count"), n);
  badge.hidden = n === 0;
  document.title = n ? `(${n}) herd` : "herd";
}

/** Shows a short message at the bottom of the page. */
export function toast(text, kind = "info", onclick) {
  const t = el(`div.toast.${kind}`, { role: "status", onclick }, text);
  document.getElementById("toasts").append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 5000);
}

async function notify(e) {
  if (e.to !== "waiting_input" && e.to !== "failed") return;
  // A session this page has not seen yet (it failed at once): its name first.
  const s = sessions.get(e.session_id) ||
    (await api("GET", `/v1/sessions/${e.session_id}`).catch(() => null));
  const name = s ? label(s) : e.session_id.slice(0, 8);
  const what = e.to === "failed" ? `failed: ${e.reason}` : "needs input";
  const open = () => {
    window.focus();
    location.hash = `#/s/${e.session_id}`;
  };
  toast(`${name} ${what}`, e.to === "failed" ? "error" : "warn", open);
  if ("Notification" in window && Notification.permission === "granted" && document.hidden) {
    const n = new Notification(`herd: ${name} ${what}`, {
      body: e.task_id ? `task ${e.task_id}` : e.reason,
      tag: `herd-${e.session_id}`,
    });
    n.onclick = () => {
      open();
      n.close();
    };
  }
}

/** Wires the badge, the title, toasts and the notification button. */
export function start() {
  subscribe(update);
  onEvent(notify);
  const button = document.getElementById("notify");
  const show = () => {
    if (!("Notification" in window)) {
      button.hidden = true;
      return;
    }
    const p = Notification.permission;
    button.textContent = p === "granted" ? "Notifying" : p === "denied" ? "Notifications blocked" : "Notify me";
    button.disabled = p !== "default";
  };
  show();
  // Granted or revoked from the browser's own settings: follow it.
  navigator.permissions?.query({ name: "notifications" }).then((st) => {
    st.onchange = show;
  }, () => {});
  button.addEventListener("click", async () => {
    // Browsers only ask from a click, and only in a secure context
    // (localhost, or the daemon behind TLS).
    await Notification.requestPermission();
    show();
  });
}
