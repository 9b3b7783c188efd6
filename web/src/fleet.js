// The fleet view: every session in one list, the ones that need a person
// first, filtered by state, project and task. Rows are built once and then
// patched cell by cell; a row moves only when its place in the order changes,
// so a thousand sessions and a stream of events stay fluent.
import { el, setText, STATES, stateWord, rank, age, bytes, count, tokens, label, FINAL, ts } from "./util.js";
import { sessions, subscribe } from "./store.js";
import { needsMe } from "./alerts.js";

const COLUMNS = [
  ["state", "State"], ["name", "Session"], ["task", "Task"], ["project", "Project"],
  ["waiting", "Waiting for / why"], ["age", "Age"], ["restarts", "Restarts"],
  ["cpu", "CPU"], ["mem", "Memory"], ["tokens", "Tokens"],
];

/** Sort key: rank first; needs-me and ended by latest change, others newest first. */
function key(s) {
  const r = needsMe(s) ? (s.state === "waiting_input" ? 0 : 1) : rank(s.state) === 1 ? 3 : rank(s.state);
  const t = r === 2 ? ts(s.created_at) : ts(s.updated_at);
  return { r, t, id: s.id };
}

function before(a, b) {
  if (a.r !== b.r) return a.r < b.r;
  if (a.t !== b.t) return a.t > b.t;
  return a.id < b.id;
}

/** What a waiting or ended session is about, in a line. */
function why(s) {
  if (s.state === "waiting_input" && s.waiting) {
    const w = s.waiting;
    const tool = w.tool ? `${w.tool}${w.summary ? `: ${w.summary}` : ""}` : w.message || "";
    return `${w.reason}${tool ? ` · ${tool}` : ""}`;
  }
  if (s.state === "waiting_input") return s.dialog || s.reason;
  if (s.error) return s.error.message || s.error.kind;
  if (FINAL.has(s.state) || s.state === "restarting") return s.reason;
  return "";
}

export function fleetView(root, query) {
  const filters = {
    state: query.get("state") || (query.get("needs") ? "needs" : ""),
    project: query.get("project") || "",
    task: query.get("task") || "",
    ended: query.get("ended") === "1",
  };

  const stateSel = el("select", { id: "f-state", "aria-label": "State", name: "state" },
    el("option", { value: "" }, "all live"),
    el("option", { value: "needs" }, "needs me"),
    el("option", { value: "any" }, "all, ended too"),
    STATES.map((st) => el("option", { value: st }, stateWord(st))));
  stateSel.value = filters.state;
  const projectSel = el("select", { "aria-label": "Project", name: "project" }, el("option", { value: "" }, "all projects"));
  const taskInput = el("input", { type: "search", placeholder: "task…", "aria-label": "Task", name: "task", value: filters.task });
  const shown = el("span.muted.shown");
  const bar = el("div.filters", null, stateSel, projectSel, taskInput, shown);
  const head = el("div.row.head", { role: "row" }, COLUMNS.map(([k, t]) => el(`span.c-${k}`, { role: "columnheader" }, t)));
  const list = el("div.list", { role: "rowgroup" });
  const empty = el("p.empty.muted", { hidden: true }, "No sessions match. ", el("a", { href: "#/new" }, "Start one."));
  const table = el("div.fleet", { role: "table", "aria-label": "Sessions" }, head, list);
  root.replaceChildren(el("section.fleet-view", null, bar, table, empty));

  const rows = new Map(); // id → { row, cells, key }
  let order = []; // ids, in display order
  let projects = new Set();

  function matches(s) {
    if (filters.state === "needs") {
      if (!needsMe(s)) return false;
    } else if (filters.state === "any") {
      // everything
    } else if (filters.state) {
      if (s.state !== filters.state) return false;
    } else if (FINAL.has(s.state) && !needsMe(s)) {
      return false;
    }
    if (filters.project && s.project_id !== filters.project) return false;
    if (filters.task && !(s.task_id || "").toLowerCase().includes(filters.task.toLowerCase())) return false;
    return true;
  }

  function build(s) {
    const cells = {};
    const row = el("a.row", { role: "row", href: `#/s/${s.id}`, dataset: { id: s.id } });
    for (const [k] of COLUMNS) {
      cells[k] = el(`span.c-${k}`, { role: "cell" });
      row.append(cells[k]);
    }
    cells.dot = el("i.dot");
    cells.word = el("span.word");
    cells.state.append(cells.dot, cells.word);
    return { row, cells, key: null, state: null };
  }

  function patch(entry, s) {
    const c = entry.cells;
    if (entry.state !== s.state) {
      entry.row.dataset.state = s.state;
      entry.state = s.state;
    }
    entry.row.classList.toggle("needs-me", needsMe(s));
    setText(c.word, stateWord(s.state));
    setText(c.name, label(s));
    c.name.title = s.id;
    setText(c.task, s.task_id);
    setText(c.project, s.project_id);
    setText(c.waiting, why(s));
    setText(c.age, age(Date.now() - Date.parse(s.created_at)));
    setText(c.restarts, s.restarts || "");
    setText(c.cpu, FINAL.has(s.state) ? "" : `${(s.metrics?.cpu_percent || 0).toFixed(0)}%`);
    setText(c.mem, FINAL.has(s.state) ? "" : bytes(s.metrics?.rss_bytes || 0));
    const t = tokens(s.usage);
    setText(c.tokens, t ? count(t) : "");
    entry.row.hidden = !matches(s);
  }

  function indexFor(k) {
    let lo = 0;
    let hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (before(rows.get(order[mid]).key, k)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function place(id, entry, k) {
    const i = order.indexOf(id);
    if (i >= 0) order.splice(i, 1);
    const at = indexFor(k);
    order.splice(at, 0, id);
    entry.key = k;
    const next = order[at + 1];
    list.insertBefore(entry.row, next ? rows.get(next).row : null);
  }

  function sameKey(a, b) {
    return a && a.r === b.r && a.t === b.t;
  }

  function updateProjects() {
    const now = new Set();
    for (const s of sessions.values()) if (s.project_id) now.add(s.project_id);
    if (now.size === projects.size && [...now].every((p) => projects.has(p))) return;
    projects = now;
    projectSel.replaceChildren(el("option", { value: "" }, "all projects"),
      ...[...projects].sort().map((p) => el("option", { value: p }, p)));
    projectSel.value = projects.has(filters.project) ? filters.project : "";
  }

  function counts() {
    let n = 0;
    for (const e of rows.values()) if (!e.row.hidden) n++;
    setText(shown, `${n} of ${rows.size} sessions`);
    empty.hidden = n !== 0;
  }

  function render(changed, removed) {
    if (removed) {
      for (const [id, e] of rows) {
        if (!sessions.has(id)) {
          e.row.remove();
          rows.delete(id);
        }
      }
      order = order.filter((id) => rows.has(id));
    }
    const ids = changed || sessions.keys();
    const moves = [];
    for (const id of ids) {
      const s = sessions.get(id);
      if (!s) continue;
      let e = rows.get(id);
      if (!e) {
        e = build(s);
        rows.set(id, e);
      }
      patch(e, s);
      const k = key(s);
      if (!sameKey(e.key, k)) moves.push([id, e, k]);
    }
    if (moves.length > 64) {
      // Many moves at once (the first load): sort once, append in order.
      for (const [, e, k] of moves) e.key = k;
      order = [...rows.keys()].sort((a, b) => {
        const ka = rows.get(a).key;
        const kb = rows.get(b).key;
        return before(ka, kb) ? -1 : before(kb, ka) ? 1 : 0;
      });
      const frag = document.createDocumentFragment();
      for (const id of order) frag.append(rows.get(id).row);
      list.append(frag);
    } else {
      for (const [id, e, k] of moves) place(id, e, k);
    }
    updateProjects();
    counts();
  }

  function refilter() {
    const q = new URLSearchParams();
    for (const k of ["state", "project", "task"]) if (filters[k]) q.set(k, filters[k]);
    history.replaceState(null, "", `#/${q.size ? `?${q}` : ""}`);
    for (const [id, e] of rows) e.row.hidden = !matches(sessions.get(id));
    counts();
  }

  stateSel.addEventListener("change", () => {
    filters.state = stateSel.value;
    refilter();
  });
  projectSel.addEventListener("change", () => {
    filters.project = projectSel.value;
    refilter();
  });
  taskInput.addEventListener("input", () => {
    filters.task = taskInput.value.trim();
    refilter();
  });

  render(null, false);
  const unsubscribe = subscribe((changed, removed) => render(changed, removed));
  // Ages tick; only rows on screen are touched.
  const tick = setInterval(() => {
    const now = Date.now();
    for (const [id, e] of rows) {
      if (e.row.hidden) continue;
      const s = sessions.get(id);
      if (s) setText(e.cells.age, age(now - Date.parse(s.created_at)));
    }
  }, 1000);
  return () => {
    unsubscribe();
    clearInterval(tick);
  };
}
