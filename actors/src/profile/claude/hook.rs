//! Claude Code's hooks, as herd receives them: the CLI POSTs each event's
//! JSON to the daemon, which turns it into a [`ClaudeHook`] for the session.
//!
//! Observed on 2.1.197 (http hooks, offline): UserPromptSubmit (with
//! `prompt_id`), PreToolUse, PermissionRequest (`tool_name`, `tool_input`,
//! `permission_suggestions`), PostToolUse, Notification (`notification_type`:
//! `permission_prompt` about 6 s after a dialog opens, `idle_prompt` after
//! 60 s idle), Stop (`last_assistant_message`), StopFailure (instead of Stop
//! when an API error ended the turn: `error` is one of `rate_limit`,
//! `overloaded`, `authentication_failed`, `oauth_org_not_allowed`,
//! `billing_error`, `invalid_request`, `model_not_found`, `server_error`,
//! `max_output_tokens`, `unknown`), SessionEnd. SessionStart does not reach
//! http hooks, and no hook fires on an interrupt.

use crate::error::HerdError;
use serde_json::Value;

/// One hook event of a Claude session.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaudeHook {
    /// The CLI took a prompt: a turn starts.
    UserPromptSubmit {
        /// The prompt's id (links the transcript entries of the turn).
        prompt_id: Option<String>,
    },
    /// A tool is about to run.
    PreToolUse {
        /// The tool.
        tool: String,
    },
    /// The CLI asks the user to allow a tool.
    PermissionRequest {
        /// The tool.
        tool: String,
        /// Its input (e.g. `{"command": ...}` for Bash).
        input: Value,
    },
    /// A tool ran.
    PostToolUse {
        /// The tool.
        tool: String,
    },
    /// A notification for the user.
    Notification {
        /// `permission_prompt`, `idle_prompt`, `elicitation_dialog`, ...
        kind: String,
        /// Its text.
        message: String,
    },
    /// The turn ended normally.
    Stop {
        /// The turn's prompt id.
        prompt_id: Option<String>,
        /// The text of the last assistant message.
        last_message: Option<String>,
    },
    /// An API error ended the turn.
    StopFailure {
        /// The turn's prompt id.
        prompt_id: Option<String>,
        /// The CLI's error kind (`rate_limit`, `authentication_failed`, ...).
        error: String,
        /// What the CLI showed.
        last_message: Option<String>,
    },
    /// The CLI is ending the session.
    SessionEnd {
        /// Why (`prompt_input_exit`, `clear`, `logout`, `other`, ...).
        reason: String,
    },
    /// Any other event (herd reacts to none of them).
    Other(String),
}

/// Largest text kept from a hook's string fields.
const MAX_TEXT: usize = 64 * 1024;

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(|s| {
        let mut s = s.to_string();
        if s.len() > MAX_TEXT {
            let mut cut = MAX_TEXT;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        s
    })
}

impl ClaudeHook {
    /// Reads an event from the JSON the CLI posts; the error names what is missing.
    pub fn from_json(v: &Value) -> Result<Self, HerdError> {
        let name = text(v, "hook_event_name")
            .ok_or_else(|| HerdError::invalid("hook_event_name", "missing or not a string"))?;
        let tool = || text(v, "tool_name").unwrap_or_default();
        Ok(match name.as_str() {
            "UserPromptSubmit" => Self::UserPromptSubmit {
                prompt_id: text(v, "prompt_id"),
            },
            "PreToolUse" => Self::PreToolUse { tool: tool() },
            "PermissionRequest" => Self::PermissionRequest {
                tool: tool(),
                input: v.get("tool_input").cloned().unwrap_or(Value::Null),
            },
            "PostToolUse" | "PostToolUseFailure" => Self::PostToolUse { tool: tool() },
            "Notification" => Self::Notification {
                kind: text(v, "notification_type").unwrap_or_default(),
                message: text(v, "message").unwrap_or_default(),
            },
            "Stop" => Self::Stop {
                prompt_id: text(v, "prompt_id"),
                last_message: text(v, "last_assistant_message"),
            },
            "StopFailure" => Self::StopFailure {
                prompt_id: text(v, "prompt_id"),
                error: text(v, "error").unwrap_or_else(|| "unknown".into()),
                last_message: text(v, "last_assistant_message"),
            },
            "SessionEnd" => Self::SessionEnd {
                reason: text(v, "reason").unwrap_or_default(),
            },
            _ => Self::Other(name),
        })
    }

    /// The event's name, as the CLI spells it.
    pub fn name(&self) -> &str {
        match self {
            Self::UserPromptSubmit { .. } => "UserPromptSubmit",
            Self::PreToolUse { .. } => "PreToolUse",
            Self::PermissionRequest { .. } => "PermissionRequest",
            Self::PostToolUse { .. } => "PostToolUse",
            Self::Notification { .. } => "Notification",
            Self::Stop { .. } => "Stop",
            Self::StopFailure { .. } => "StopFailure",
            Self::SessionEnd { .. } => "SessionEnd",
            Self::Other(name) => name,
        }
    }
}

/// The hook events herd subscribes a Claude session to.
pub const HOOK_EVENTS: [&str; 9] = [
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "PostToolUseFailure",
    "Notification",
    "Stop",
    "StopFailure",
    "SessionEnd",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_events_the_real_cli_posts() {
        let stop = json!({"session_id": "s", "prompt_id": "p1", "hook_event_name": "Stop",
            "stop_hook_active": false, "last_assistant_message": "MOCK-REPLY: hi"});
        assert_eq!(
            ClaudeHook::from_json(&stop).unwrap(),
            ClaudeHook::Stop {
                prompt_id: Some("p1".into()),
                last_message: Some("MOCK-REPLY: hi".into())
            }
        );
        let fail = json!({"hook_event_name": "StopFailure", "error": "authentication_failed",
            "last_assistant_message": "Not logged in · Please run /login"});
        assert!(matches!(
            ClaudeHook::from_json(&fail).unwrap(),
            ClaudeHook::StopFailure { error, .. } if error == "authentication_failed"
        ));
        let perm = json!({"hook_event_name": "PermissionRequest", "tool_name": "Bash",
            "tool_input": {"command": "ls"}});
        assert!(matches!(
            ClaudeHook::from_json(&perm).unwrap(),
            ClaudeHook::PermissionRequest { tool, input } if tool == "Bash" && input["command"] == "ls"
        ));
        assert_eq!(
            ClaudeHook::from_json(&json!({"hook_event_name": "CwdChanged"})).unwrap(),
            ClaudeHook::Other("CwdChanged".into())
        );
        let e = ClaudeHook::from_json(&json!({"x": 1})).unwrap_err();
        assert!(e.to_string().contains("hook_event_name"), "{e}");
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let v = json!({"hook_event_name": "Stop", "last_assistant_message": long});
        let ClaudeHook::Stop { last_message, .. } = ClaudeHook::from_json(&v).unwrap() else {
            panic!()
        };
        assert!(last_message.unwrap().len() <= MAX_TEXT);
    }
}
