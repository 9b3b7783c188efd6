//! What a session runs: its command, environment, terminal size and overrides.

use crate::config::{
    LimitOverrides, LimitsConfig, RestartConfig, RestartOverrides, SessionDefaults,
};
use crate::error::HerdError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Terminal size limits accepted for a session.
pub const MAX_COLS: u16 = 1000;
/// See [`MAX_COLS`].
pub const MAX_ROWS: u16 = 1000;

/// The full description of a session, as given at creation (and kept for restarts).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// A human name (need not be unique).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Program and arguments (built by the daemon for the Claude profile).
    #[serde(default)]
    pub command: Vec<String>,
    /// Working directory (absolute); the daemon's own if absent.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// The session's own environment, on top of the few variables it
    /// inherits from the daemon (see `inherit_env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Variables of the daemon's environment to pass on beyond the base
    /// allowlist (PATH, HOME, USER, LOGNAME, SHELL, LANG, LC_*, TERM, TZ) and
    /// the config's `session.inherit_env`: names, or prefixes ending in `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inherit_env: Vec<String>,
    /// Environment whose values are secrets: they reach the child's
    /// environment only, never a log, a response, an event or a recording.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, Secret>,
    /// How herd reads the session's state and delivers its prompts.
    #[serde(default)]
    pub profile: Profile,
    /// Options of the Claude profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude: Option<ClaudeOptions>,
    /// The job runner's task this session serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// A grouping for listing and filtering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Terminal columns.
    #[serde(default = "default_cols")]
    pub cols: u16,
    /// Terminal rows.
    #[serde(default = "default_rows")]
    pub rows: u16,
    /// Restart policy overrides.
    #[serde(default)]
    pub restart: RestartOverrides,
    /// Limit overrides.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Argv for every child after the first (restarts and recovery), when it
    /// must differ from `command`: profiles use it to resume a conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_command: Option<Vec<String>>,
    /// This session's token and cost budget (over `[budgets] session`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::budget::Budget>,
    /// Set by the daemon: the git worktree the session runs in (its `cwd`
    /// is inside it), kept so a restart or a recovery runs there again.
    /// Not for clients to set: they ask with the create body's `worktree`.
    #[cfg_attr(feature = "openapi", schema(ignore))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<crate::worktree::Worktree>,
}

fn default_cols() -> u16 {
    120
}
fn default_rows() -> u16 {
    40
}

impl SessionSpec {
    /// A spec running `command` with every other field at its default.
    pub fn new<S: Into<String>>(command: impl IntoIterator<Item = S>) -> Self {
        Self {
            name: None,
            command: command.into_iter().map(Into::into).collect(),
            cwd: None,
            env: BTreeMap::new(),
            inherit_env: Vec::new(),
            secret_env: BTreeMap::new(),
            profile: Profile::Generic,
            claude: None,
            task_id: None,
            project_id: None,
            cols: default_cols(),
            rows: default_rows(),
            restart: RestartOverrides::default(),
            limits: LimitOverrides::default(),
            resume_command: None,
            budget: None,
            worktree: None,
        }
    }

    /// The settings this session runs with: its overrides over `defaults`.
    /// Resolved once, when the session is created, restored or patched, and
    /// kept in its snapshot.
    pub fn effective(&self, defaults: &SessionDefaults) -> Effective {
        Effective {
            restart: self.restart.apply(&defaults.restart),
            limits: self.limits.apply(&defaults.limits),
        }
    }

    /// Checks every field; the error names the first bad field and its value.
    pub fn validate(&self) -> Result<(), HerdError> {
        let program = match self.command.first() {
            None => return Err(HerdError::invalid("command", "must not be empty")),
            Some(p) if p.trim().is_empty() => {
                return Err(HerdError::invalid(
                    "command",
                    "the program name must not be empty",
                ))
            }
            Some(p) => p,
        };
        if let Some(arg) = self.command.iter().find(|a| a.contains('\0')) {
            return Err(HerdError::invalid(
                "command",
                format!("argument {arg:?} contains a NUL byte"),
            ));
        }
        check_label("name", self.name.as_deref(), 200)?;
        check_label("task_id", self.task_id.as_deref(), 256)?;
        check_label("project_id", self.project_id.as_deref(), 256)?;
        if let Some(r) = &self.resume_command {
            if r.first().is_none_or(|p| p.trim().is_empty()) {
                return Err(HerdError::invalid(
                    "resume_command",
                    "must name a program when given",
                ));
            }
        }
        for (k, v) in &self.secret_env {
            check_env_name("secret_env", k)?;
            if v.expose().contains('\0') {
                return Err(HerdError::invalid(
                    "secret_env",
                    format!("value of {k} contains a NUL byte"),
                ));
            }
        }
        for (k, v) in &self.env {
            check_env_name("env", k)?;
            if v.contains('\0') {
                return Err(HerdError::invalid(
                    "env",
                    format!("value of {k} contains a NUL byte"),
                ));
            }
        }
        crate::config::validate_env_patterns("inherit_env", &self.inherit_env)
            .map_err(|m| HerdError::invalid("inherit_env", m))?;
        self.restart.validate("restart")?;
        self.limits.validate("limits")?;
        validate_size(self.cols, self.rows)?;
        if let Some(b) = &self.budget {
            b.validate("budget")?;
        }
        if let Some(cwd) = &self.cwd {
            if !cwd.is_absolute() {
                return Err(HerdError::invalid(
                    "cwd",
                    format!("{:?} is not an absolute path", cwd.display().to_string()),
                ));
            }
            if !cwd.is_dir() {
                return Err(HerdError::invalid(
                    "cwd",
                    format!(
                        "{:?} does not exist or is not a directory",
                        cwd.display().to_string()
                    ),
                ));
            }
        }
        let path = self
            .env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok());
        if find_program(program, self.cwd.as_deref(), path.as_deref()).is_none() {
            return Err(HerdError::invalid(
                "command",
                format!("program {program:?} was not found or is not executable"),
            ));
        }
        Ok(())
    }
}

/// A session's effective settings: its overrides applied to the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    /// Restart behaviour.
    pub restart: RestartConfig,
    /// Limits.
    pub limits: LimitsConfig,
}

impl Effective {
    /// Checks the relations a session's own overrides take part in (an
    /// override of `backoff_max` below the default `backoff_initial`, say).
    pub fn check(&self, spec: &SessionSpec) -> Result<(), HerdError> {
        let r = &spec.restart;
        if r.backoff_initial.is_some() || r.backoff_max.is_some() {
            self.restart.check_backoff("restart")?;
        }
        Ok(())
    }
}

/// Changes to a live session: each field present replaces the current value;
/// restart and limit overrides merge field by field.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionPatch {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New task id.
    #[serde(default)]
    pub task_id: Option<String>,
    /// New project id.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Restart overrides to merge.
    #[serde(default)]
    pub restart: Option<RestartOverrides>,
    /// Limit overrides to merge.
    #[serde(default)]
    pub limits: Option<LimitOverrides>,
}

impl SessionPatch {
    /// Checks every field; the error names the first bad field and its value.
    pub fn validate(&self) -> Result<(), HerdError> {
        check_label("name", self.name.as_deref(), 200)?;
        check_label("task_id", self.task_id.as_deref(), 256)?;
        check_label("project_id", self.project_id.as_deref(), 256)?;
        if let Some(r) = &self.restart {
            r.validate("restart")?;
        }
        if let Some(l) = &self.limits {
            l.validate("limits")?;
        }
        if *self == Self::default() {
            return Err(HerdError::invalid(
                "body",
                "nothing to change: give name, task_id, project_id, restart or limits",
            ));
        }
        Ok(())
    }

    /// Applies the patch to a spec.
    pub fn apply(&self, spec: &mut SessionSpec) {
        if let Some(n) = &self.name {
            spec.name = Some(n.clone());
        }
        if let Some(t) = &self.task_id {
            spec.task_id = Some(t.clone());
        }
        if let Some(p) = &self.project_id {
            spec.project_id = Some(p.clone());
        }
        if let Some(r) = &self.restart {
            spec.restart.merge(r);
        }
        if let Some(l) = &self.limits {
            spec.limits.merge(l);
        }
    }
}

/// Checks a terminal size against the accepted range.
pub fn validate_size(cols: u16, rows: u16) -> Result<(), HerdError> {
    if !(2..=MAX_COLS).contains(&cols) {
        return Err(HerdError::invalid(
            "cols",
            format!("{cols} is out of range 2..={MAX_COLS}"),
        ));
    }
    if !(1..=MAX_ROWS).contains(&rows) {
        return Err(HerdError::invalid(
            "rows",
            format!("{rows} is out of range 1..={MAX_ROWS}"),
        ));
    }
    Ok(())
}

fn check_env_name(field: &str, k: &str) -> Result<(), HerdError> {
    if k.is_empty() || k.contains('=') || k.contains('\0') {
        return Err(HerdError::invalid(
            field,
            format!("invalid variable name {k:?}"),
        ));
    }
    Ok(())
}

/// How herd reads a session's state and delivers its prompts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Any program: busy while output flows, ready after `quiet_after` of quiet.
    #[default]
    Generic,
    /// bash or zsh: ready at the prompt, busy while a command runs, from the
    /// OSC 133 marks herd injects; a message's reply is the command's output
    /// and its exit status.
    Shell,
    /// Claude Code: state from the screen, replies from its transcript.
    Claude,
}

impl Profile {
    /// Variables of the daemon's environment this profile's program needs
    /// beyond the base allowlist: the Claude CLI's credentials and endpoint
    /// (documented to come from the daemon's environment).
    pub fn inherited_env(self) -> &'static [&'static str] {
        match self {
            Self::Claude => &[
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_AUTH_TOKEN",
                "ANTHROPIC_BASE_URL",
                "CLAUDE_CODE_OAUTH_TOKEN",
            ],
            Self::Generic | Self::Shell => &[],
        }
    }
}

/// A value that must never be shown: `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String))]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it (the child's environment).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Options of the Claude profile (`"profile": "claude"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaudeOptions {
    /// `--model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `--append-system-prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append_system_prompt: Option<String>,
    /// `--allowedTools`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    /// `--disallowedTools`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disallowed_tools: Vec<String>,
    /// `--permission-mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    /// `--max-turns`, where the CLI supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// Extra environment for the CLI.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `ANTHROPIC_API_KEY`, passed in the environment only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// `CLAUDE_CODE_OAUTH_TOKEN`, passed in the environment only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_token: Option<Secret>,
    /// Set by the daemon: the conversation's transcript, where replies are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub transcript: Option<PathBuf>,
    /// Set by the daemon: the CLI reports to herd through its hooks, so the
    /// hooks decide the state and the screen is the fallback.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hooks: bool,
}

fn check_label(field: &str, value: Option<&str>, max: usize) -> Result<(), HerdError> {
    let Some(v) = value else { return Ok(()) };
    if v.is_empty() {
        return Err(HerdError::invalid(field, "must not be empty when given"));
    }
    if v.len() > max {
        return Err(HerdError::invalid(
            field,
            format!("is {} bytes long; the limit is {max}", v.len()),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(HerdError::invalid(
            field,
            format!("{v:?} contains control characters"),
        ));
    }
    Ok(())
}

/// Resolves a program like `execvp` does: a path with a slash as is
/// (relative to `cwd`), a bare name through `PATH`.
pub fn find_program(program: &str, cwd: Option<&Path>, path: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = match cwd {
            Some(dir) if !program.starts_with('/') => dir.join(program),
            _ => PathBuf::from(program),
        };
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path.unwrap_or("/usr/local/bin:/usr/bin:/bin"))
        .map(|d| d.join(program))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(spec: &SessionSpec) -> String {
        match spec.validate() {
            Err(HerdError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(SessionSpec::new(["sh", "-c", "true"]).validate().is_ok());
        assert_eq!(field_of(&SessionSpec::new(Vec::<String>::new())), "command");
        assert_eq!(
            field_of(&SessionSpec::new(["no-such-program-xyz"])),
            "command"
        );
        let mut s = SessionSpec::new(["sh"]);
        s.cwd = Some("/no/such/dir".into());
        assert_eq!(field_of(&s), "cwd");
        let mut s = SessionSpec::new(["sh"]);
        s.cols = 0;
        assert_eq!(field_of(&s), "cols");
        let mut s = SessionSpec::new(["sh"]);
        s.env.insert("A=B".into(), "x".into());
        assert_eq!(field_of(&s), "env");
        let mut s = SessionSpec::new(["sh"]);
        s.task_id = Some(String::new());
        assert_eq!(field_of(&s), "task_id");
    }

    #[test]
    fn unknown_json_field_is_rejected() {
        let err =
            serde_json::from_str::<SessionSpec>(r#"{"command":["sh"],"comand":1}"#).unwrap_err();
        assert!(err.to_string().contains("comand"));
    }
}
