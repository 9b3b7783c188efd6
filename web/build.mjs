// Builds the dashboard into dist/, which the herd binary embeds
// (src/daemon/web/assets.rs). Run with `npm ci && npm run build`; CI does
// the same and fails if dist/ differs from what is committed, so dist/ is
// always the build of this lockfile. The output is deterministic: no
// timestamps, no hashes of absolute paths.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");

const common = {
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox115", "safari16"],
  legalComments: "eof",
  logLevel: "warning",
  // The page loads nothing from elsewhere: fonts and images are the system's.
  loader: { ".woff": "empty", ".woff2": "empty", ".ttf": "empty", ".svg": "dataurl" },
};

// The dashboard: fleet, session, terminal (xterm.js).
await esbuild.build({ ...common, entryPoints: { app: "src/main.js" }, outdir: "dist", external: ["/assets/*"] });
// The recording player (asciinema-player), loaded only when a recording is opened.
await esbuild.build({ ...common, entryPoints: { player: "src/player.js" }, outdir: "dist" });

for (const f of ["index.html", "login.html", "favicon.svg"]) {
  copyFileSync(`src/${f}`, `dist/${f}`);
}

for (const f of readdirSync("dist").sort()) {
  console.log(`${f.padEnd(24)} ${String(statSync(`dist/${f}`).size).padStart(9)} bytes`);
}
