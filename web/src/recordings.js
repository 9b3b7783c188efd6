// The recordings of a session: one per generation, played in the page with
// the asciinema player (loaded from /assets/player.js the first time).
import { el, bytes } from "./util.js";
import { api, sessionPath } from "./api.js";

let playerModule = null;

function loadPlayer() {
  if (!playerModule) {
    const css = el("link", { rel: "stylesheet", href: "/assets/player.css" });
    document.head.append(css);
    playerModule = import("/assets/player.js");
  }
  return playerModule;
}

/** Fills root with the recordings list and a player; returns its cleanup. */
export function recordingsPanel(root, id, signal) {
  const list = el("ul.recordings");
  const stage = el("div.player-stage");
  const speed = el("select", { "aria-label": "Speed", name: "speed" },
    [0.5, 1, 2, 4, 8, 16].map((v) => el("option", { value: v, selected: v === 1 }, `${v}×`)));
  const controls = el("div.player-controls", { hidden: true },
    el("label", null, "Speed ", speed),
    el("span.muted.small", null, "Space pauses, ← → seek, the bar jumps."));
  root.replaceChildren(list, controls, stage);
  let player = null;
  let current = null;

  async function play(gen, startAt = 0) {
    const { createPlayer } = await loadPlayer();
    if (player) player.dispose();
    current = gen;
    controls.hidden = false;
    stage.replaceChildren();
    player = createPlayer(sessionPath(id, `/recording?generation=${gen}`), stage, {
      speed: Number(speed.value),
      startAt,
      idleTimeLimit: 2,
    });
    for (const li of list.children) li.classList.toggle("playing", li.dataset.generation === String(gen));
  }

  speed.addEventListener("change", () => {
    if (current === null) return;
    // The player's speed is fixed at creation: recreate it where it was.
    const at = player ? player.getCurrentTime() || 0 : 0;
    play(current, at);
  });

  api("GET", sessionPath(id, "/recordings"), undefined, { signal }).then((files) => {
    if (!files.length) {
      list.replaceChildren(el("li.muted", null, "No recordings (recording may be off)."));
      return;
    }
    list.replaceChildren(...files.slice().reverse().map((f) =>
      el("li", { dataset: { generation: f.generation } },
        el("button.ghost.small", { type: "button", dataset: { action: "play" }, onclick: () => play(f.generation) }, "▶ Play"),
        ` generation ${f.generation} · ${bytes(f.bytes)}${f.compressed ? " (zstd)" : ""}`)));
  }, (e) => {
    if (e.name !== "AbortError") list.replaceChildren(el("li.error", null, e.message));
  });

  return () => {
    if (player) player.dispose();
  };
}
