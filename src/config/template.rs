//! `[templates.NAME]`: named session templates. A create request names one
//! with `template`; its own fields override the template's, object fields
//! (`env`, `claude`, `restart`, `limits`, `budget`) key by key.

use herd_actors::{Budget, ClaudeOptions, LimitOverrides, Profile, RestartOverrides, SessionSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What `worktree` asks for, in a create request or a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum WorktreeRequest {
    /// `true`: a new branch named after the session; `false`: no worktree.
    Enabled(bool),
    /// A branch: checked out if it exists, else made from HEAD.
    Branch(String),
}

impl WorktreeRequest {
    /// The branch asked for: `Some(None)` a new one named after the
    /// session, `Some(Some(b))` that one, `None` no worktree.
    pub fn branch(&self) -> Option<Option<&str>> {
        match self {
            Self::Enabled(false) => None,
            Self::Enabled(true) => Some(None),
            Self::Branch(b) => Some(Some(b)),
        }
    }
}

/// One `[templates.NAME]`: any field of a session spec a fleet shares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// `generic`, `shell` or `claude`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// Program and arguments (not for the Claude profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Working directory (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Environment of the session.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Daemon variables passed on beyond the allowlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit_env: Option<Vec<String>>,
    /// Claude options: model, allowed_tools, disallowed_tools,
    /// permission_mode, append_system_prompt, max_turns, env.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude: Option<ClaudeOptions>,
    /// Project of the sessions made from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Terminal columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    /// Terminal rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    /// Restart overrides (policy, max_restarts, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartOverrides>,
    /// Limit overrides (idle_timeout, max_duration, max_memory, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitOverrides>,
    /// Token and cost budget of each session made from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Run each session in its own git worktree: `true` (a new branch per
    /// session) or a branch name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<WorktreeRequest>,
}

impl Template {
    /// Checks what can be checked without a request; the error names
    /// `templates.NAME.FIELD` and the value.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let key = |f: &str| format!("templates.{name}.{f}");
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !valid_name {
            return Err(format!(
                "templates.{name:?}: a template name is 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        if let Some(c) = &self.claude {
            if c.api_key.is_some() || c.oauth_token.is_some() {
                return Err(format!(
                    "{}: credentials do not belong in a template; set them in [claude] env or the daemon's environment",
                    key("claude")
                ));
            }
            if c.transcript.is_some() || c.hooks {
                return Err(format!(
                    "{}: transcript and hooks are set by the daemon",
                    key("claude")
                ));
            }
            if self.profile != Some(Profile::Claude) {
                return Err(format!(
                    "{}: Claude options need profile = \"claude\" in the template",
                    key("claude")
                ));
            }
        }
        if let Some(WorktreeRequest::Branch(b)) = &self.worktree {
            if b.trim().is_empty() {
                return Err(format!(
                    "{} = \"\": give true or a branch name",
                    key("worktree")
                ));
            }
        }
        // The rest is what a session spec checks: apply the template to an
        // empty request and check the result, minus what needs the machine
        // (the program and the directory are checked when a session is made).
        let mut body = Map::new();
        self.apply(&mut body)?;
        body.remove("worktree");
        let mut spec: SessionSpec = serde_json::from_value(Value::Object(body))
            .map_err(|e| format!("templates.{name}: {e}"))?;
        if spec.command.is_empty() {
            spec.command = vec!["sh".into()];
        }
        spec.cwd = None;
        if let Some(cwd) = &self.cwd {
            if !cwd.is_absolute() {
                return Err(format!(
                    "{} = {:?}: must be an absolute path",
                    key("cwd"),
                    cwd.display().to_string()
                ));
            }
        }
        if self.command.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(format!("{} = []: name a program", key("command")));
        }
        match spec.validate() {
            Err(herd_actors::HerdError::Invalid { field, message }) if field != "command" => {
                Err(format!("{}: {message}", key(&field)))
            }
            _ => Ok(()),
        }
    }

    /// Fills `body` (a create request) with this template's fields the
    /// request does not give itself; objects merge key by key, the
    /// request's keys winning.
    pub fn apply(&self, body: &mut Map<String, Value>) -> Result<(), String> {
        let Value::Object(mine) = serde_json::to_value(self).map_err(|e| e.to_string())? else {
            return Err("a template is not an object".into());
        };
        merge_under(body, mine);
        Ok(())
    }
}

/// Puts `defaults` under `over`: keys `over` lacks are added; where both
/// hold objects, they merge the same way; anything else in `over` wins.
fn merge_under(over: &mut Map<String, Value>, defaults: Map<String, Value>) {
    for (k, d) in defaults {
        match over.get_mut(&k) {
            None => {
                over.insert(k, d);
            }
            Some(Value::Object(o)) => {
                if let Value::Object(d) = d {
                    merge_under(o, d);
                }
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_fields_win_and_objects_merge() {
        let t: Template = toml::from_str(
            "profile = \"claude\"\nenv = { A = \"1\", B = \"2\" }\nworktree = true\n\
             [claude]\nmodel = \"opus\"\nallowed_tools = [\"Read\"]\n",
        )
        .unwrap();
        t.check("reviewer").unwrap();
        let mut body = json!({"env": {"B": "3"}, "claude": {"model": "haiku"}})
            .as_object()
            .unwrap()
            .clone();
        t.apply(&mut body).unwrap();
        assert_eq!(body["env"], json!({"A": "1", "B": "3"}));
        assert_eq!(body["claude"]["model"], json!("haiku"));
        assert_eq!(body["claude"]["allowed_tools"], json!(["Read"]));
        assert_eq!(body["profile"], json!("claude"));
        assert_eq!(body["worktree"], json!(true));
    }

    #[test]
    fn bad_templates_are_named() {
        let e = toml::from_str::<Template>("modle = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("modle"), "{e}");
        let t: Template = toml::from_str("[limits]\nidle_timeout = \"1ms\"\n").unwrap();
        let e = t.check("x").unwrap_err();
        assert!(e.contains("templates.x.limits.idle_timeout"), "{e}");
        let t: Template = toml::from_str("[claude]\nmodel = \"opus\"\n").unwrap();
        assert!(t.check("x").unwrap_err().contains("profile"));
        let t: Template = toml::from_str("cwd = \"rel/dir\"\n").unwrap();
        assert!(t.check("x").unwrap_err().contains("templates.x.cwd"));
        assert!(Template::default().check("bad name").is_err());
    }
}
