//! What a session waits for when it is `waiting_input`, and how a failed
//! turn failed: typed, so the API, `/metrics` and job runners can act on
//! the meaning instead of the screen.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a session waits for a person.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// A tool needs permission.
    Permission,
    /// The program asks a question.
    Question,
    /// The program cannot log in (no or bad credentials).
    Login,
    /// An error the program cannot get past by itself.
    Error,
    /// Something else on screen wants an answer.
    Other,
}

impl WaitReason {
    /// The snake_case name (for `/metrics` labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permission => "permission",
            Self::Question => "question",
            Self::Login => "login",
            Self::Error => "error",
            Self::Other => "other",
        }
    }
}

/// What an answer means.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Meaning {
    /// Allow, this once.
    Yes,
    /// Allow, and do not ask again for this.
    Always,
    /// Refuse.
    No,
    /// Something else (its label says what).
    Other,
}

/// One choice a dialog offers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// What choosing it means.
    pub meaning: Meaning,
    /// Its label on screen (`Yes, and always allow access to work/ ...`).
    pub label: String,
    /// The key that picks it (its number on screen).
    pub key: String,
}

/// What a `waiting_input` session waits for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// Why.
    pub reason: WaitReason,
    /// The tool that asks, for a permission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// A short summary of the tool's input (a command, a file, a URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The choices offered, where known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<Choice>,
    /// What the program says, in a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How a turn failed, named.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    /// No credentials: the program must be logged in first.
    NotLoggedIn {
        /// What the program said.
        message: String,
    },
    /// The credentials were refused.
    Authentication {
        /// What the program said.
        message: String,
    },
    /// The account's rate limit was hit.
    RateLimited {
        /// What the program said.
        message: String,
        /// When the limit resets, where the program said so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reset: Option<String>,
    },
    /// The conversation no longer fits the model's context.
    ContextFull {
        /// What the program said.
        message: String,
    },
    /// The conversation is held by another process.
    ConversationBusy {
        /// What the program said.
        message: String,
    },
    /// Another API error (`overloaded`, `server_error`, `billing_error`, ...).
    ApiError {
        /// The program's name for it.
        error: String,
        /// What the program said.
        message: String,
    },
    /// A token or cost budget is spent: herd did not deliver the message.
    Budget {
        /// What it says, with the budget and the spend.
        message: String,
        /// The session, task or project whose budget is spent.
        #[serde(flatten)]
        scope: crate::budget::Scope,
        /// Tokens or dollars.
        unit: crate::budget::Unit,
        /// Spent so far.
        used: f64,
        /// The limit.
        limit: f64,
    },
}

impl Failure {
    /// The failure named by Claude Code's StopFailure `error`, with the text
    /// it showed.
    pub fn from_claude(error: &str, message: &str) -> Self {
        let message = message.to_string();
        let lower = message.to_lowercase();
        match error {
            "authentication_failed" if lower.contains("not logged in") => {
                Self::NotLoggedIn { message }
            }
            "authentication_failed" | "oauth_org_not_allowed" => Self::Authentication { message },
            "rate_limit" => Self::RateLimited {
                reset: reset_time(&message),
                message,
            },
            _ if lower.contains("prompt is too long")
                || lower.contains("context") && lower.contains("limit") =>
            {
                Self::ContextFull { message }
            }
            other => Self::ApiError {
                error: other.to_string(),
                message,
            },
        }
    }

    /// The snake_case kind (for labels and exit messages).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotLoggedIn { .. } => "not_logged_in",
            Self::Authentication { .. } => "authentication",
            Self::RateLimited { .. } => "rate_limited",
            Self::ContextFull { .. } => "context_full",
            Self::ConversationBusy { .. } => "conversation_busy",
            Self::ApiError { .. } => "api_error",
            Self::Budget { .. } => "budget",
        }
    }

    /// What the program said.
    pub fn message(&self) -> &str {
        match self {
            Self::NotLoggedIn { message }
            | Self::Authentication { message }
            | Self::RateLimited { message, .. }
            | Self::ContextFull { message }
            | Self::ConversationBusy { message }
            | Self::ApiError { message, .. }
            | Self::Budget { message, .. } => message,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLoggedIn { message } => write!(f, "not logged in: {message}"),
            Self::Authentication { message } => write!(f, "authentication failed: {message}"),
            Self::RateLimited {
                message,
                reset: Some(r),
            } => write!(f, "rate limited until {r}: {message}"),
            Self::RateLimited { message, .. } => write!(f, "rate limited: {message}"),
            Self::ContextFull { message } => write!(f, "context full: {message}"),
            Self::ConversationBusy { message } => {
                write!(f, "conversation held by another process: {message}")
            }
            Self::ApiError { error, message } => write!(f, "API error ({error}): {message}"),
            Self::Budget { message, .. } => f.write_str(message),
        }
    }
}

/// `resets 3pm`, `resets at 15:00 (UTC)`, `try again in 5 minutes`: the
/// words after the marker, up to the end of the sentence.
fn reset_time(message: &str) -> Option<String> {
    let lower = message.to_lowercase();
    ["resets at ", "resets ", "try again in ", "retry after "]
        .iter()
        .find_map(|m| lower.find(m).map(|i| i + m.len()))
        .map(|start| {
            message[start..]
                .split(['·', '\n', '|'])
                .next()
                .unwrap_or("")
                .trim()
                .trim_end_matches('.')
                .to_string()
        })
        .filter(|s| !s.is_empty())
}

/// The numbered choices of a dialog on screen (`❯ 1. Yes`, `  2. No`), with
/// what each means.
pub(crate) fn choices(dialog: &str) -> Vec<Choice> {
    dialog
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches('❯').trim();
            let (num, label) = l.split_once(". ")?;
            if num.is_empty() || num.len() > 2 || !num.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let lower = label.to_lowercase();
            let meaning = if lower.starts_with("yes") {
                if lower.contains("always") || lower.contains("don't ask again") {
                    Meaning::Always
                } else {
                    Meaning::Yes
                }
            } else if lower.starts_with("no") {
                Meaning::No
            } else {
                Meaning::Other
            };
            Some(Choice {
                meaning,
                label: label.trim().to_string(),
                key: num.to_string(),
            })
        })
        .collect()
}

/// A short line for a tool's input: the command, the file or the URL.
pub(crate) fn summary(input: &serde_json::Value) -> Option<String> {
    let field = [
        "command",
        "file_path",
        "path",
        "url",
        "pattern",
        "query",
        "prompt",
    ]
    .iter()
    .find_map(|k| input.get(*k).and_then(|v| v.as_str()));
    let text = match field {
        Some(t) => t.to_string(),
        None if input.is_null() => return None,
        None => input.to_string(),
    };
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        s.push('…');
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn choices_of_the_real_permission_dialog() {
        let d = " Bash command\n\n   touch x\n\n Do you want to proceed?\n ❯ 1. Yes\n   2. Yes, and always allow access to work/ from this project\n   3. No\n\n Esc to cancel";
        let c = choices(d);
        let got: Vec<_> = c.iter().map(|c| (c.meaning, c.key.as_str())).collect();
        assert_eq!(
            got,
            [
                (Meaning::Yes, "1"),
                (Meaning::Always, "2"),
                (Meaning::No, "3")
            ]
        );
        assert!(c[1].label.starts_with("Yes, and always allow"));
    }

    #[test]
    fn failures_are_named() {
        let f = Failure::from_claude("authentication_failed", "Not logged in · Please run /login");
        assert_eq!(f.kind(), "not_logged_in");
        let f = Failure::from_claude(
            "authentication_failed",
            "Please run /login · API Error: 401",
        );
        assert_eq!(f.kind(), "authentication");
        let f = Failure::from_claude("rate_limit", "Limit reached · resets 3pm (UTC)");
        assert_eq!(
            f,
            Failure::RateLimited {
                message: "Limit reached · resets 3pm (UTC)".into(),
                reset: Some("3pm (UTC)".into())
            }
        );
        let f = Failure::from_claude("invalid_request", "Prompt is too long");
        assert_eq!(f.kind(), "context_full");
        let f = Failure::from_claude("overloaded", "API Error: 529");
        assert_eq!(f.to_string(), "API error (overloaded): API Error: 529");
        let j = serde_json::to_value(&f).unwrap();
        assert_eq!(j["kind"], "api_error");
    }

    #[test]
    fn summaries_are_short_lines() {
        assert_eq!(
            summary(&json!({"command": "ls  -l\n/tmp", "description": "x"})).unwrap(),
            "ls -l /tmp"
        );
        assert_eq!(
            summary(&json!({"file_path": "/a/b", "content": "..."})).unwrap(),
            "/a/b"
        );
        assert!(summary(&json!({"a": "b".repeat(500)}))
            .unwrap()
            .ends_with('…'));
        assert_eq!(summary(&serde_json::Value::Null), None);
    }
}
