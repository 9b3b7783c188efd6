// The recording player, a bundle of its own: asciinema-player and its styles,
// loaded only when a recording is opened.
import * as AsciinemaPlayer from "asciinema-player";
import "asciinema-player/dist/bundle/asciinema-player.css";

/** Creates a player for an asciicast URL in elem; see asciinema-player's options. */
export function createPlayer(url, elem, opts) {
  const player = AsciinemaPlayer.create({ url, fetchOpts: { credentials: "same-origin" } }, elem, {
    fit: "width",
    preload: true,
    autoPlay: true,
    terminalFontFamily: 'ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace',
    ...opts,
  });
  window.__herdPlayer = player;
  return player;
}
