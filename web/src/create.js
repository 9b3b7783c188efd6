// The form that starts a session (POST /v1/sessions).
import { el } from "./util.js";
import { api } from "./api.js";
import { put } from "./store.js";
import { splitCommand } from "./util.js";

export function createView(root) {
  const field = (labelText, input, hint) =>
    el("label.field", null, el("span", null, labelText), input, hint ? el("small.muted", null, hint) : null);
  const name = el("input", { name: "name", placeholder: "demo" });
  const task = el("input", { name: "task", placeholder: "job-42" });
  const project = el("input", { name: "project", placeholder: "web" });
  const profile = el("select", { name: "profile" },
    el("option", { value: "generic" }, "generic program"),
    el("option", { value: "shell" }, "shell (bash/zsh with prompt marks)"),
    el("option", { value: "claude" }, "Claude Code"));
  const command = el("input", { name: "command", placeholder: "bash --norc", value: "bash --norc" });
  const cwd = el("input", { name: "cwd", placeholder: "/path/to/work (default: the daemon's)" });
  const env = el("textarea", { name: "env", rows: 3, placeholder: "KEY=value, one a line" });
  const restart = el("select", { name: "restart" },
    el("option", { value: "" }, "the daemon's default"),
    el("option", { value: "always" }, "always"),
    el("option", { value: "on-failure" }, "on failure"),
    el("option", { value: "never" }, "never"));
  const error = el("p.error", { hidden: true });
  const submit = el("button", { type: "submit" }, "Start");
  const form = el("form.create", { onsubmit: (e) => { e.preventDefault(); start(); } },
    el("h1", null, "New session"),
    field("Name", name), field("Task", task), field("Project", project), field("Profile", profile),
    field("Command", command, "Not needed for Claude Code; quotes work as in a shell."),
    field("Working directory", cwd), field("Environment", env), field("Restart", restart),
    error, el("div.row-buttons", null, submit, el("a.button.ghost", { href: "#/" }, "Cancel")));
  root.replaceChildren(form);
  name.focus();

  profile.addEventListener("change", () => {
    command.disabled = profile.value === "claude";
  });

  async function start() {
    error.hidden = true;
    const spec = {};
    try {
      if (name.value.trim()) spec.name = name.value.trim();
      if (task.value.trim()) spec.task_id = task.value.trim();
      if (project.value.trim()) spec.project_id = project.value.trim();
      spec.profile = profile.value;
      if (profile.value !== "claude") {
        spec.command = splitCommand(command.value);
        if (!spec.command.length) throw new Error("command: give the program to run");
      }
      if (cwd.value.trim()) spec.cwd = cwd.value.trim();
      const vars = {};
      for (const [i, line] of env.value.split("\n").entries()) {
        if (!line.trim()) continue;
        const eq = line.indexOf("=");
        if (eq <= 0) throw new Error(`environment, line ${i + 1}: ${JSON.stringify(line)} is not KEY=value`);
        vars[line.slice(0, eq).trim()] = line.slice(eq + 1);
      }
      if (Object.keys(vars).length) spec.env = vars;
      if (restart.value) spec.restart = { policy: restart.value };
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
      return;
    }
    submit.disabled = true;
    try {
      const s = await api("POST", "/v1/sessions", spec);
      put(s);
      location.hash = `#/s/${s.id}`;
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  }
}
