// The session view: header and actions, the dialog to answer, the live
// terminal, and the side panel (prompt, queue, events, metrics, recordings).
import { el, setText, stateWord, age, bytes, count, tokens, label, clock, FINAL } from "./util.js";
import { api, sessionPath } from "./api.js";
import { sessions, subscribe, onEvent, put, refetch } from "./store.js";
import { acknowledge, toast } from "./alerts.js";
import { LiveTerminal } from "./term.js";
import { MetricsPanel } from "./metrics.js";
import { recordingsPanel } from "./recordings.js";
import { confirmAction } from "./confirm.js";

const RO_KEY = "herd.readOnly";

/** Renders the view into root; returns its cleanup. */
export function sessionView(root, id, tab) {
  const cleanups = [];
  const abort = new AbortController();
  cleanups.push(() => abort.abort());

  // Header: name, state, facts, actions.
  const title = el("h1.session-name");
  const pill = el("span.pill");
  const facts = el("dl.facts");
  const factCells = {};
  for (const [k, t] of [["id", "id"], ["task", "task"], ["project", "project"], ["profile", "profile"],
    ["pid", "pid"], ["gen", "generation"], ["restarts", "restarts"], ["age", "age"],
    ["cpu", "CPU"], ["mem", "memory"], ["tokens", "tokens"], ["reason", "reason"]]) {
    factCells[k] = el("dd");
    facts.append(el("div", null, el("dt", null, t), factCells[k]));
  }
  const action = (name, text, danger, run) =>
    el(`button.${danger ? "danger" : "ghost"}`, { type: "button", dataset: { action: name }, onclick: run }, text);
  const btnInterrupt = action("interrupt", "Interrupt", false, () => act("interrupt", "Interrupt"));
  const btnSuspend = action("suspend", "Suspend", false, () =>
    act(sessions.get(id)?.state === "suspended" ? "resume" : "suspend",
      sessions.get(id)?.state === "suspended" ? "Resume" : "Suspend"));
  const btnRestart = action("restart", "Restart", false, () => act("restart", "Restart"));
  const btnKill = action("kill", "Kill", true, () => act("kill", "Kill"));
  const actions = el("div.actions", null, btnInterrupt, btnSuspend, btnRestart, btnKill);
  const header = el("header.session-head", null,
    el("div.title", null, el("a.back", { href: "#/", title: "All sessions" }, "←"), title, pill), actions, facts);

  // The dialog a waiting session shows.
  const waiting = el("section.waiting", { hidden: true, "aria-live": "assertive" });

  // Terminal with its toolbar.
  const readOnly = localStorage.getItem(RO_KEY) === "1";
  const roToggle = el("input", { type: "checkbox", id: "typing", checked: !readOnly });
  const sizeLabel = el("span.muted.size");
  const termBox = el("div.term", { tabindex: "-1" });
  const ended = el("div.ended", { hidden: true });
  const copyBtn = el("button.ghost", { type: "button", title: "Copy the selection (Ctrl+Shift+C)" }, "Copy");
  const pasteBtn = el("button.ghost", { type: "button", title: "Paste the clipboard (Ctrl+Shift+V)" }, "Paste");
  const termBar = el("div.term-bar", null,
    el("label.toggle", { title: "When off, the terminal only shows: keys go nowhere" }, roToggle, " Typing"),
    copyBtn, pasteBtn, sizeLabel);
  const termPanel = el("section.term-panel", null, termBar, termBox, ended);

  // Side panel.
  const tabs = ["prompt", "queue", "events", "metrics", "recordings"];
  const tabButtons = {};
  const panes = {};
  const tabBar = el("nav.tabs", { role: "tablist" });
  for (const t of tabs) {
    tabButtons[t] = el("button.tab", { type: "button", role: "tab", dataset: { tab: t }, onclick: () => show(t) },
      t[0].toUpperCase() + t.slice(1));
    tabBar.append(tabButtons[t]);
    panes[t] = el(`div.pane.pane-${t}`, { role: "tabpanel", hidden: true });
  }
  const side = el("aside.side", null, tabBar, ...tabs.map((t) => panes[t]));

  const notFound = el("p.muted", { hidden: true }, "No such session. ", el("a", { href: "#/" }, "Back to all sessions."));
  root.replaceChildren(el("section.session-view", null, notFound, header, waiting,
    el("div.split", null, termPanel, side)));

  // Prompt pane.
  const promptText = el("textarea", { rows: 4, placeholder: "A prompt for the session; Enter is pressed after it", name: "prompt" });
  const sendBtn = el("button", { type: "button", dataset: { action: "send" } }, "Send");
  const waitBtn = el("button.ghost", { type: "button", dataset: { action: "send-wait" } }, "Send and wait");
  const reply = el("div.reply", { hidden: true });
  panes.prompt.append(el("form.prompt", { onsubmit: (e) => e.preventDefault() }, promptText,
    el("div.row-buttons", null, sendBtn, waitBtn)), reply);
  promptText.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(false);
  });
  sendBtn.onclick = () => send(false);
  waitBtn.onclick = () => send(true);

  async function send(wait) {
    const text = promptText.value;
    if (!text.trim()) return;
    sendBtn.disabled = waitBtn.disabled = true;
    reply.hidden = false;
    reply.replaceChildren(el("p.muted", null, wait ? "Waiting for the reply…" : "Queueing…"));
    try {
      const m = await api("POST", sessionPath(id, `/messages${wait ? "?wait=true&timeout=30m" : ""}`), { text },
        { signal: abort.signal });
      promptText.value = "";
      if (wait) {
        reply.replaceChildren(el("p.muted", null, `Reply (${m.state}):`),
          el("pre.reply-text", null, m.reply ?? m.error ?? ""));
      } else {
        reply.replaceChildren(el("p.muted", null, `Queued as ${m.id.slice(0, 8)} (${m.state}).`));
      }
      loadQueue();
    } catch (e) {
      if (e.name !== "AbortError") reply.replaceChildren(el("p.error", null, e.message));
    } finally {
      sendBtn.disabled = waitBtn.disabled = false;
    }
  }

  // Queue pane.
  const queueList = el("ol.queue");
  panes.queue.append(queueList);
  async function loadQueue() {
    let list;
    try {
      list = await api("GET", sessionPath(id, "/queue"), undefined, { signal: abort.signal });
    } catch {
      return;
    }
    if (!list.length) {
      queueList.replaceChildren(el("li.muted", null, "No messages."));
      return;
    }
    queueList.replaceChildren(...list.slice(-100).reverse().map((m) => el("li", { dataset: { id: m.id, state: m.state } },
      el("div.q-head", null, el("span.pill.small", { dataset: { state: m.state } }, m.state),
        el("span.muted", null, clock(m.created_at)),
        m.state === "queued" ? el("button.ghost.small", { type: "button", onclick: () => cancel(m) }, "Cancel") : null),
      el("pre.q-text", null, m.text),
      m.reply ? el("details", null, el("summary", null, "reply"), el("pre", null, m.reply)) : null,
      m.error ? el("p.error", null, m.error) : null)));
  }
  async function cancel(m) {
    try {
      await api("DELETE", sessionPath(id, `/messages/${m.id}`));
      toast("Message cancelled");
    } catch (e) {
      toast(e.status === 404 || e.status === 405
        ? `This daemon cannot cancel a queued message yet (${e.message})`
        : `Cancel failed: ${e.message}`, "error");
    }
    loadQueue();
  }

  // Events pane.
  const timeline = el("ol.timeline");
  panes.events.append(timeline);
  const eventItem = (e) => el("li", { dataset: { state: e.to } },
    el("span.muted", null, clock(e.at)), " ",
    el("span.pill.small", { dataset: { state: e.from } }, stateWord(e.from)), " → ",
    el("span.pill.small", { dataset: { state: e.to } }, stateWord(e.to)), " ",
    el("span.reason", null, e.reason), e.generation ? el("span.muted", null, ` · gen ${e.generation}`) : null);
  api("GET", sessionPath(id, "/events"), undefined, { signal: abort.signal }).then((list) => {
    timeline.replaceChildren(...list.slice().reverse().map(eventItem));
  }, () => {});
  cleanups.push(onEvent((e) => {
    if (e.session_id !== id) return;
    timeline.prepend(eventItem(e));
    while (timeline.childElementCount > 512) timeline.lastChild.remove();
    if (!panes.queue.hidden) loadQueue();
  }));

  // Metrics pane.
  const metrics = new MetricsPanel(panes.metrics, id, abort.signal);
  cleanups.push(() => metrics.dispose());

  // Recordings pane (the player loads when one is played).
  let recordingsLoaded = false;

  function show(t) {
    for (const x of tabs) {
      panes[x].hidden = x !== t;
      tabButtons[x].setAttribute("aria-selected", String(x === t));
    }
    if (t === "queue") loadQueue();
    if (t === "metrics") metrics.resize();
    if (t === "recordings" && !recordingsLoaded) {
      recordingsLoaded = true;
      cleanups.push(recordingsPanel(panes.recordings, id, abort.signal));
    }
    history.replaceState(null, "", `#/s/${id}${t === "prompt" ? "" : `/${t}`}`);
  }
  show(tabs.includes(tab) ? tab : "prompt");

  // The terminal.
  const term = new LiveTerminal(termBox, id, {
    readOnly,
    onMessage: (m) => {
      if (m.type === "hello") {
        ended.hidden = true;
        if (m.session) put(m.session);
      } else if (m.type === "end") {
        ended.hidden = false;
        setText(ended, `Session ${m.state}${m.reason ? `: ${m.reason}` : ""}${m.exit_code != null ? ` (exit ${m.exit_code})` : ""}`);
        refetch(id);
      } else if (m.type === "error") {
        toast(`Terminal: ${m.message}`, "error");
      }
      const s = sessions.get(id);
      if (s) setText(sizeLabel, term.readOnly ? `${s.cols}×${s.rows} (session's size)` : `${term.term.cols}×${term.term.rows}`);
    },
  });
  cleanups.push(() => term.dispose());
  roToggle.addEventListener("change", () => {
    const ro = !roToggle.checked;
    localStorage.setItem(RO_KEY, ro ? "1" : "0");
    term.setReadOnly(ro);
    termBox.classList.toggle("read-only", ro);
    pasteBtn.disabled = ro;
  });
  termBox.classList.toggle("read-only", readOnly);
  pasteBtn.disabled = readOnly;
  copyBtn.onclick = async () => {
    const t = await term.copy().catch(() => "");
    toast(t ? `Copied ${t.length} characters` : "Select text in the terminal first");
  };
  pasteBtn.onclick = () => term.pasteClipboard().catch((e) => toast(`Paste: ${e.message}`, "error"));
  if (!readOnly) term.focus();

  // Actions, each confirmed.
  async function act(what, word) {
    const s = sessions.get(id);
    const name = s ? label(s) : id.slice(0, 8);
    const texts = {
      interrupt: `Interrupt ${name}? Its current turn stops (Ctrl-C, or Escape for Claude).`,
      suspend: `Suspend ${name}? Its processes stop (SIGSTOP) until resumed.`,
      resume: `Resume ${name}?`,
      restart: `Restart ${name}? Its program is stopped and started again (a new generation).`,
      kill: `Kill ${name}? It stops for good: SIGTERM, then SIGKILL to its whole process tree.`,
    };
    if (!(await confirmAction(texts[what], word))) return;
    try {
      if (what === "kill") await api("DELETE", sessionPath(id));
      else await api("POST", sessionPath(id, `/${what}`));
      toast(`${word}: done`);
      refetch(id);
    } catch (e) {
      toast(`${word} failed: ${e.message}`, "error");
    }
  }

  // The dialog of a waiting session. Its parts are built once and updated in
  // place: the hook and the screen refine the text while it is open, and
  // rebuilding would drop a half-typed answer, the focus, or a click that
  // lands between a button's press and release.
  const dialog = {
    title: el("h2"),
    tool: el("p.tool", null, el("span.muted", null, "tool "), el("code")),
    summary: el("pre.summary"),
    message: el("p"),
    choices: el("div.choices"),
    free: el("input", { type: "text", placeholder: "or type an answer", name: "answer" }),
  };
  let answering = false;
  const answer = async (choice, button) => {
    answering = true;
    for (const b of waiting.querySelectorAll("button")) b.disabled = true;
    try {
      await api("POST", sessionPath(id, "/answer"), { choice });
      toast(`Answered: ${button}`);
      refetch(id);
    } catch (e) {
      toast(`Answer failed: ${e.message}`, "error");
      for (const b of waiting.querySelectorAll("button")) b.disabled = false;
    } finally {
      answering = false;
    }
  };
  waiting.replaceChildren(dialog.title, dialog.tool, dialog.summary, dialog.message, dialog.choices,
    el("form.free", { onsubmit: (e) => {
      e.preventDefault();
      const text = dialog.free.value.trim();
      if (text) answer(text, text);
    } }, dialog.free, el("button.ghost", { type: "submit" }, "Answer")));
  const setPart = (node, text, target = node) => {
    node.hidden = !text;
    setText(target, text || "");
  };
  let choicesKey = "";
  let questionKey = "";
  function renderWaiting(s) {
    const open = s.state === "waiting_input";
    waiting.hidden = !open;
    const w = open ? s.waiting : null;
    const question = open ? JSON.stringify(w) : "";
    const asked = question !== questionKey;
    questionKey = question;
    if (!open) {
      // Closed: a half-typed answer belonged to that question.
      if (asked) dialog.free.value = "";
      return;
    }
    setText(dialog.title, w ? `Needs you: ${w.reason}` : "Needs you");
    setPart(dialog.tool, w && w.tool, dialog.tool.querySelector("code"));
    setPart(dialog.summary, w && w.summary);
    setPart(dialog.message, (w && w.message) || s.dialog);
    const choices = w && w.choices && w.choices.length ? w.choices
      : [{ meaning: "yes", label: "Yes" }, { meaning: "always", label: "Always" }, { meaning: "no", label: "No" }];
    const k = JSON.stringify(choices);
    if (k !== choicesKey) {
      choicesKey = k;
      dialog.choices.replaceChildren(...choices.map((c) =>
        el(`button.choice.${c.meaning}`, {
          type: "button",
          dataset: { meaning: c.meaning },
          title: c.key ? `key ${c.key}` : undefined,
          onclick: () => answer(c.meaning === "other" ? c.label : c.meaning, c.label),
        }, c.label)));
    }
    if (asked && !answering) {
      // Another question (or this one refined): it can be answered again.
      for (const b of waiting.querySelectorAll("button")) b.disabled = false;
    }
  }

  function render() {
    const s = sessions.get(id);
    notFound.hidden = !!s;
    header.hidden = !s;
    if (!s) return;
    setText(title, label(s));
    document.title = `${label(s)} · herd`;
    pill.dataset.state = s.state;
    setText(pill, stateWord(s.state));
    setText(factCells.id, s.id);
    setText(factCells.task, s.task_id || "–");
    setText(factCells.project, s.project_id || "–");
    setText(factCells.profile, s.profile);
    setText(factCells.pid, s.pid ?? "–");
    setText(factCells.gen, s.generation);
    setText(factCells.restarts, s.restarts);
    setText(factCells.age, age(Date.now() - Date.parse(s.created_at)));
    setText(factCells.cpu, `${(s.metrics?.cpu_percent || 0).toFixed(1)}%`);
    setText(factCells.mem, bytes(s.metrics?.rss_bytes || 0));
    setText(factCells.tokens, count(tokens(s.usage)));
    setText(factCells.reason, s.error ? `${s.reason} (${s.error.kind})` : s.reason);
    const final = FINAL.has(s.state);
    btnInterrupt.disabled = final || s.state === "suspended";
    btnSuspend.disabled = final;
    setText(btnSuspend, s.state === "suspended" ? "Resume" : "Suspend");
    btnSuspend.dataset.action = s.state === "suspended" ? "resume" : "suspend";
    btnKill.disabled = final;
    renderWaiting(s);
    acknowledge(id);
  }
  render();
  if (!sessions.has(id)) refetch(id);
  cleanups.push(subscribe((changed, removed) => {
    if (removed || changed.has(id)) render();
  }));
  return () => cleanups.forEach((f) => f());
}
