//! The hooks herd injects into each Claude session: a settings file, passed
//! with `--settings`, that makes the CLI POST every event herd follows to
//! the daemon's loopback listener (`POST /v1/sessions/{id}/hooks`).
//!
//! Each session has its own secret, `HERD_HOOK_TOKEN`, which lives only in
//! the session's environment (as a secret) and in the store: the settings
//! file names the variable, and the CLI puts its value in the
//! `X-Herd-Hook-Token` header (`allowedEnvVars`). A hook of one session can
//! therefore never move another, and the secret is in no argv, file or log.
//! `--settings` adds to the user's and the project's settings: their own
//! hooks keep running beside herd's.

use herd_actors::{Secret, CLAUDE_HOOK_EVENTS};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The environment variable holding a session's hook secret.
pub const TOKEN_ENV: &str = "HERD_HOOK_TOKEN";
/// The header the CLI sends it in.
pub const TOKEN_HEADER: &str = "x-herd-hook-token";
/// How long the CLI may wait for the daemon's answer (it answers at once).
const HOOK_TIMEOUT_SECS: u64 = 5;

/// A new random secret for a session's hooks.
pub fn new_token() -> Secret {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Where a session's hook settings live: beside its home, in its private folder.
pub fn settings_path(session_dir: &Path) -> PathBuf {
    session_dir.join("hooks.json")
}

/// The settings JSON: one http hook per event, to `base`'s hook route for `id`.
pub fn settings(base: &str, id: Uuid) -> serde_json::Value {
    let url = format!("{}/v1/sessions/{id}/hooks", base.trim_end_matches('/'));
    let hook = serde_json::json!([{
        "matcher": "*",
        "hooks": [{
            "type": "http",
            "url": url,
            "headers": {"X-Herd-Hook-Token": format!("${TOKEN_ENV}")},
            "allowedEnvVars": [TOKEN_ENV],
            "timeout": HOOK_TIMEOUT_SECS,
        }]
    }]);
    let hooks: serde_json::Map<String, serde_json::Value> = CLAUDE_HOOK_EVENTS
        .iter()
        .map(|e| ((*e).to_string(), hook.clone()))
        .collect();
    serde_json::json!({ "hooks": hooks })
}

/// Writes the settings file (0600), replacing any earlier one atomically: the
/// daemon may listen on another port after a restart.
pub fn write_settings(path: &Path, base: &str, id: Uuid) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(settings(base, id).to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_posts_to_the_session_route_with_the_secret_by_name() {
        let id = Uuid::nil();
        let s = settings("http://127.0.0.1:7777/", id);
        for e in CLAUDE_HOOK_EVENTS {
            let h = &s["hooks"][e][0]["hooks"][0];
            assert_eq!(h["type"], "http");
            assert_eq!(
                h["url"],
                format!("http://127.0.0.1:7777/v1/sessions/{id}/hooks")
            );
            assert_eq!(h["headers"]["X-Herd-Hook-Token"], "$HERD_HOOK_TOKEN");
            assert_eq!(h["allowedEnvVars"][0], "HERD_HOOK_TOKEN");
        }
        let a = new_token();
        let b = new_token();
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a.expose(), b.expose());
    }
}
