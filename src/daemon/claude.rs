//! The Claude profile, daemon side: turns `"profile": "claude"` into the
//! argv, environment and seeded config of a real `claude` session.
//!
//! - argv: `claude --session-id <id>` (the herd session id is the conversation
//!   id), plus `--model`, `--append-system-prompt`, `--allowedTools`,
//!   `--disallowedTools`, `--permission-mode`, `--max-turns` (only where the
//!   CLI has it); restarts and recovery use `claude --resume <id>` with the same flags;
//! - environment: an isolated HOME per session under the data dir, with a
//!   seeded `.claude.json` (onboarding done, the cwd trusted, the API key
//!   approved) so no first-run dialog can hold the session; the switches that
//!   keep the CLI from reaching out on its own; API key and OAuth token go in
//!   `secret_env`, never in argv;
//! - the transcript path, where the actor reads replies.

pub mod hooks;

use crate::config::ClaudeConfig;
use herd_actors::find_program;
use herd_actors::{claude_transcript_path, ClaudeOptions, HerdError, Profile, Secret, SessionSpec};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

/// Permission modes of the CLI (`claude --help`).
const PERMISSION_MODES: [&str; 6] = [
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
];
/// Environment names whose values are secrets wherever they are given.
const SECRET_NAMES: [&str; 3] = [
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_AUTH_TOKEN",
];
/// Keep the CLI from doing things on its own that an unattended session must not.
const QUIET_ENV: [(&str, &str); 5] = [
    ("DISABLE_AUTOUPDATER", "1"),
    ("DISABLE_TELEMETRY", "1"),
    ("DISABLE_ERROR_REPORTING", "1"),
    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
    ("CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL", "1"),
];

/// Builds Claude sessions for one daemon.
pub struct ClaudeProfile {
    cfg: ClaudeConfig,
    data_dir: PathBuf,
    /// `--help` text per binary, probed once, for flags that vary by version.
    help: Mutex<HashMap<PathBuf, String>>,
    /// Where hooks reach the daemon (`http://127.0.0.1:PORT`), once it listens.
    hook_base: Mutex<Option<String>>,
}

impl ClaudeProfile {
    /// The profile with the daemon's `[claude]` config.
    pub fn new(cfg: ClaudeConfig, data_dir: PathBuf) -> Self {
        Self {
            cfg,
            data_dir,
            help: Mutex::default(),
            hook_base: Mutex::default(),
        }
    }

    /// Sets where hooks reach the daemon; until then sessions get no hooks.
    pub fn set_hook_base(&self, base: String) {
        *self.hook_base.lock().unwrap_or_else(|e| e.into_inner()) = Some(base);
    }

    fn hook_base(&self) -> Option<String> {
        if !self.cfg.hooks {
            return None;
        }
        self.hook_base
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn session_dir(&self, id: Uuid) -> PathBuf {
        self.data_dir.join("claude").join(id.to_string())
    }

    /// Rewrites a restored session's hook settings for the daemon's current
    /// address. A failure is logged: the session then runs on the screen alone.
    pub fn refresh_hooks(&self, spec: &SessionSpec, id: Uuid) {
        let with_hooks =
            spec.profile == Profile::Claude && spec.claude.as_ref().is_some_and(|c| c.hooks);
        if let (true, Some(base)) = (with_hooks, self.hook_base()) {
            let path = hooks::settings_path(&self.session_dir(id));
            if let Err(e) = hooks::write_settings(&path, &base, id) {
                tracing::warn!(session = %id, "cannot rewrite the hook settings {}: {e}", path.display());
            }
        }
    }

    /// Fills in a Claude spec (command, resume command, environment,
    /// secrets, transcript path), validates it, then seeds its home. Errors
    /// name the field; on error nothing is left behind.
    pub fn prepare(&self, spec: &mut SessionSpec, id: Uuid) -> Result<(), HerdError> {
        if spec.profile != Profile::Claude {
            if spec.claude.is_some() {
                return Err(HerdError::invalid(
                    "claude",
                    "options need \"profile\": \"claude\"",
                ));
            }
            return Ok(());
        }
        let (home, cwd, api_key) = self.build(spec, id)?;
        spec.validate()?;
        seed_home(&home, &cwd, api_key.as_deref()).map_err(|e| {
            HerdError::Internal(format!(
                "cannot seed the Claude config in {}: {e}",
                home.display()
            ))
        })?;
        if let Some(base) = self.hook_base() {
            let path = hooks::settings_path(&self.session_dir(id));
            hooks::write_settings(&path, &base, id).map_err(|e| {
                HerdError::Internal(format!(
                    "cannot write the hook settings {}: {e}",
                    path.display()
                ))
            })?;
        }
        Ok(())
    }

    /// Removes what [`Self::prepare`] created for a session that did not start.
    pub fn discard(&self, id: Uuid) {
        let _ = std::fs::remove_dir_all(self.session_dir(id));
    }

    /// Returns the home to seed, the real cwd and the API key to approve.
    fn build(
        &self,
        spec: &mut SessionSpec,
        id: Uuid,
    ) -> Result<(PathBuf, PathBuf, Option<String>), HerdError> {
        if !spec.command.is_empty() {
            return Err(HerdError::invalid(
                "command",
                "the Claude profile builds the command itself; leave command out",
            ));
        }
        let mut opts = spec.claude.take().unwrap_or_default();
        let path = spec
            .env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok());
        let binary = find_program(&self.cfg.binary, None, path.as_deref()).ok_or_else(|| {
            HerdError::invalid(
                "claude.binary",
                format!(
                    "program {:?} was not found; set [claude] binary in the config",
                    self.cfg.binary
                ),
            )
        })?;
        let flags = self.flags(&binary, &opts)?;
        let cwd = match &spec.cwd {
            Some(c) => c.clone(),
            None => {
                std::env::current_dir().map_err(|e| HerdError::invalid("cwd", e.to_string()))?
            }
        };
        let cwd = std::fs::canonicalize(&cwd).map_err(|e| {
            HerdError::invalid("cwd", format!("{:?}: {e}", cwd.display().to_string()))
        })?;
        spec.cwd = Some(cwd.clone());

        // Secrets: from the options, and any secret-looking name in either env map.
        let mut env: BTreeMap<String, String> = self.cfg.env.clone();
        env.extend(std::mem::take(&mut opts.env));
        env.extend(std::mem::take(&mut spec.env));
        for name in SECRET_NAMES {
            if let Some(v) = env.remove(name) {
                spec.secret_env.insert(name.into(), Secret::new(v));
            }
        }
        if let Some(k) = opts.api_key.take() {
            spec.secret_env.insert("ANTHROPIC_API_KEY".into(), k);
        }
        if let Some(t) = opts.oauth_token.take() {
            spec.secret_env.insert("CLAUDE_CODE_OAUTH_TOKEN".into(), t);
        }
        let api_key = spec
            .secret_env
            .get("ANTHROPIC_API_KEY")
            .map(|s| s.expose().to_string())
            .or_else(|| std::env::var("ANTHROPIC_API_KEY").ok());

        let home = self.session_dir(id).join("home");
        for (k, v) in QUIET_ENV {
            env.entry(k.into()).or_insert_with(|| v.into());
        }
        env.insert("HOME".into(), home.display().to_string());
        spec.env = env;

        let bin = binary.display().to_string();
        // Hooks: the settings file, and the session's secret in its environment only.
        let mut settings = vec![];
        if self.hook_base().is_some() {
            let path = hooks::settings_path(&self.session_dir(id));
            settings = vec!["--settings".to_string(), path.display().to_string()];
            spec.secret_env
                .entry(hooks::TOKEN_ENV.into())
                .or_insert_with(hooks::new_token);
            opts.hooks = true;
        }
        let mut command = vec![bin.clone()];
        command.extend(settings.iter().cloned());
        command.extend(["--session-id".into(), id.to_string()]);
        command.extend(flags.iter().cloned());
        let mut resume = vec![bin];
        resume.extend(settings);
        resume.extend(["--resume".into(), id.to_string()]);
        resume.extend(flags);
        spec.command = command;
        spec.resume_command = Some(resume);
        opts.transcript = Some(claude_transcript_path(&home, &cwd, &id));
        spec.claude = Some(opts);
        Ok((home, cwd, api_key))
    }

    /// The flags for the options, checked against the CLI.
    fn flags(&self, binary: &Path, o: &ClaudeOptions) -> Result<Vec<String>, HerdError> {
        let mut f = vec![];
        let model = o.model.clone().or_else(|| self.cfg.model.clone());
        if let Some(m) = model {
            if m.trim().is_empty() || m.starts_with('-') {
                return Err(HerdError::invalid(
                    "claude.model",
                    format!("{m:?} is not a model name"),
                ));
            }
            f.extend(["--model".into(), m]);
        }
        if let Some(p) = &o.append_system_prompt {
            if p.trim().is_empty() {
                return Err(HerdError::invalid(
                    "claude.append_system_prompt",
                    "must not be empty when given",
                ));
            }
            f.extend(["--append-system-prompt".into(), p.clone()]);
        }
        for (field, flag, tools) in [
            ("claude.allowed_tools", "--allowedTools", &o.allowed_tools),
            (
                "claude.disallowed_tools",
                "--disallowedTools",
                &o.disallowed_tools,
            ),
        ] {
            if tools.is_empty() {
                continue;
            }
            if let Some(bad) = tools
                .iter()
                .find(|t| t.trim().is_empty() || t.starts_with('-'))
            {
                return Err(HerdError::invalid(
                    field,
                    format!("{bad:?} is not a tool name"),
                ));
            }
            f.push(flag.into());
            f.push(tools.join(","));
        }
        let mode = o
            .permission_mode
            .clone()
            .or_else(|| self.cfg.permission_mode.clone());
        if let Some(m) = mode {
            if !PERMISSION_MODES.contains(&m.as_str()) {
                return Err(HerdError::invalid(
                    "claude.permission_mode",
                    format!("{m:?}: expected one of {}", PERMISSION_MODES.join(", ")),
                ));
            }
            f.extend(["--permission-mode".into(), m]);
        }
        if let Some(n) = o.max_turns {
            if n == 0 {
                return Err(HerdError::invalid(
                    "claude.max_turns",
                    "0: must be at least 1",
                ));
            }
            if !self.help(binary).contains("--max-turns") {
                return Err(HerdError::invalid(
                    "claude.max_turns",
                    format!(
                        "{} has no --max-turns in interactive mode",
                        binary.display()
                    ),
                ));
            }
            f.extend(["--max-turns".into(), n.to_string()]);
        }
        Ok(f)
    }

    /// `binary --help`, run once in a throwaway home (bounded in time).
    fn help(&self, binary: &Path) -> String {
        let mut cache = self.help.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = cache.get(binary) {
            return h.clone();
        }
        let text = probe_help(binary).unwrap_or_default();
        cache.insert(binary.to_path_buf(), text.clone());
        text
    }
}

fn probe_help(binary: &Path) -> Option<String> {
    let home = tempfile::tempdir().ok()?;
    let mut child = std::process::Command::new(binary)
        .arg("--help")
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    Some(out)
}

/// Writes `<home>/.claude.json` so the CLI starts straight at its prompt:
/// onboarding done, `cwd` trusted, the API key (its last 20 characters, as
/// the CLI records it) approved, the plugin marketplace not auto-installed.
/// An existing file (a restart, a recovery) is kept: the CLI owns it then.
pub fn seed_home(home: &Path, cwd: &Path, api_key: Option<&str>) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)?;
    let path = home.join(".claude.json");
    if path.exists() {
        return Ok(());
    }
    let approved: Vec<String> = api_key
        .map(|k| {
            k.chars()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect()
        })
        .into_iter()
        .collect();
    let seed = serde_json::json!({
        "hasCompletedOnboarding": true,
        "lastOnboardingVersion": "2.1.197",
        "lastReleaseNotesSeen": "2.1.197",
        "numStartups": 1,
        "theme": "dark",
        "customApiKeyResponses": {"approved": approved, "rejected": []},
        "officialMarketplaceAutoInstallAttempted": true,
        "officialMarketplaceAutoInstalled": false,
        "officialMarketplaceAutoInstallFailReason": "policy_blocked",
        "projects": {
            cwd.display().to_string(): {
                "hasTrustDialogAccepted": true,
                "hasCompletedProjectOnboarding": true,
                "allowedTools": []
            }
        }
    });
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut f, seed.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(binary: &str) -> (ClaudeProfile, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ClaudeConfig {
            binary: binary.into(),
            ..Default::default()
        };
        (ClaudeProfile::new(cfg, dir.path().to_path_buf()), dir)
    }

    fn claude_spec() -> SessionSpec {
        let mut s = SessionSpec::new(Vec::<String>::new());
        s.profile = Profile::Claude;
        s.cwd = Some(std::env::temp_dir());
        s
    }

    #[test]
    fn builds_argv_env_and_seed_without_leaking_secrets() {
        let (p, dir) = profile("sh");
        let mut spec = claude_spec();
        spec.env.insert(
            "ANTHROPIC_API_KEY".into(),
            "sk-from-env-0123456789abcdef".into(),
        );
        spec.claude = Some(ClaudeOptions {
            model: Some("opus".into()),
            allowed_tools: vec!["Bash".into(), "Read".into()],
            permission_mode: Some("plan".into()),
            oauth_token: Some(Secret::new("oauth-secret")),
            ..Default::default()
        });
        let id = Uuid::new_v4();
        p.prepare(&mut spec, id).unwrap();
        let argv = spec.command.join(" ");
        assert!(
            argv.ends_with(&format!(
                "--session-id {id} --model opus --allowedTools Bash,Read --permission-mode plan"
            )),
            "{argv}"
        );
        assert_eq!(
            spec.resume_command.as_ref().unwrap()[1..3],
            ["--resume".to_string(), id.to_string()]
        );
        assert!(!argv.contains("sk-from-env") && !argv.contains("oauth-secret"));
        assert!(!spec.env.contains_key("ANTHROPIC_API_KEY"));
        assert_eq!(
            spec.secret_env["CLAUDE_CODE_OAUTH_TOKEN"].expose(),
            "oauth-secret"
        );
        assert!(
            !format!("{spec:?}").contains("oauth-secret"),
            "Debug must not show secrets"
        );
        let home = PathBuf::from(&spec.env["HOME"]);
        assert!(home.starts_with(dir.path()));
        let seed: serde_json::Value =
            serde_json::from_slice(&std::fs::read(home.join(".claude.json")).unwrap()).unwrap();
        assert_eq!(
            seed["customApiKeyResponses"]["approved"][0],
            "env-0123456789abcdef"
        );
        let cwd = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        assert_eq!(
            seed["projects"][cwd.display().to_string()]["hasTrustDialogAccepted"],
            true
        );
        assert!(spec
            .claude
            .unwrap()
            .transcript
            .unwrap()
            .ends_with(format!("{id}.jsonl")));
    }

    #[test]
    fn bad_options_name_the_field() {
        let (p, _dir) = profile("sh");
        let cases: Vec<(ClaudeOptions, &str)> = vec![
            (
                ClaudeOptions {
                    permission_mode: Some("yolo".into()),
                    ..Default::default()
                },
                "claude.permission_mode",
            ),
            (
                ClaudeOptions {
                    allowed_tools: vec!["".into()],
                    ..Default::default()
                },
                "claude.allowed_tools",
            ),
            (
                ClaudeOptions {
                    model: Some("--evil".into()),
                    ..Default::default()
                },
                "claude.model",
            ),
            (
                ClaudeOptions {
                    max_turns: Some(3),
                    ..Default::default()
                },
                "claude.max_turns",
            ),
        ];
        for (opts, field) in cases {
            let mut spec = claude_spec();
            spec.claude = Some(opts);
            match p.prepare(&mut spec, Uuid::new_v4()) {
                Err(HerdError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let (p, _dir) = profile("no-such-claude-binary");
        let mut spec = claude_spec();
        assert!(
            matches!(p.prepare(&mut spec, Uuid::new_v4()), Err(HerdError::Invalid { field, .. }) if field == "claude.binary")
        );
        let mut spec = claude_spec();
        spec.command = vec!["sh".into()];
        assert!(p.prepare(&mut spec, Uuid::new_v4()).is_err());
    }
}
