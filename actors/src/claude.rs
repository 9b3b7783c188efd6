//! The Claude Code profile, actor side: its state read from the screen, its
//! first-run dialogs answered, and its replies read from its transcript.
//!
//! Markers observed on the real CLI 2.1.197 (see the claude-harness README):
//! busy = footer `esc to interrupt`; waiting for input = `Do you want to
//! proceed?` or the `Esc to cancel` footer; ready = the input line `❯` with
//! neither. The folder-trust and custom-API-key dialogs can appear before the
//! first prompt; the daemon seeds a config that avoids them, and this module
//! answers them if they show up anyway.

use std::io::{BufRead, Seek, SeekFrom};
use std::path::Path;

/// What the screen says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreenState {
    /// Neither an input line nor a known dialog yet.
    Starting,
    /// The input line, with no spinner and no dialog.
    Ready,
    /// A turn is running (`esc to interrupt`).
    Busy,
    /// A question to the user (permission dialog): its text.
    WaitingInput(String),
    /// A first-run dialog that herd answers: the keys to send.
    FirstRun(FirstRunDialog),
}

/// Dialogs the CLI may show before its first prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRunDialog {
    /// "Is this a project you created or one you trust?"
    Trust,
    /// "Do you want to use this API key?"
    ApiKey,
}

impl FirstRunDialog {
    /// The keys that accept the dialog.
    pub fn answer(self) -> &'static [u8] {
        match self {
            // The cursor starts on "1. Yes, I trust this folder".
            Self::Trust => b"\r",
            // The cursor starts on "2. No (recommended)": select 1. Yes.
            Self::ApiKey => b"\x1b[A\r",
        }
    }
}

/// Reads the state from the screen text.
pub fn classify(screen: &str) -> ScreenState {
    if screen.contains("Is this a project you created or one you trust?")
        || screen.contains("Do you trust the files in this folder?")
    {
        return ScreenState::FirstRun(FirstRunDialog::Trust);
    }
    if screen.contains("Do you want to use this API key?") {
        return ScreenState::FirstRun(FirstRunDialog::ApiKey);
    }
    let lines: Vec<&str> = screen.lines().collect();
    let footer_cancel = lines
        .iter()
        .any(|l| l.trim_start().starts_with("Esc to cancel"));
    if screen.contains("Do you want to proceed?") || footer_cancel {
        return ScreenState::WaitingInput(dialog_text(&lines));
    }
    if lines.iter().any(|l| l.contains("esc to interrupt")) {
        return ScreenState::Busy;
    }
    if lines.iter().any(|l| l.starts_with('❯')) {
        return ScreenState::Ready;
    }
    ScreenState::Starting
}

/// The text in the input box (the last line that starts with `❯`), if any.
pub fn input_line(screen: &str) -> Option<String> {
    screen
        .lines()
        .rev()
        .find(|l| l.starts_with('❯'))
        .map(|l| l.trim_start_matches('❯').trim().to_string())
}

/// True if the input box still holds the start of `prompt`: it was typed
/// but not submitted.
pub fn prompt_pending(screen: &str, prompt: &str) -> bool {
    let head: String = prompt
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(24)
        .collect();
    !head.is_empty() && input_line(screen).is_some_and(|l| l.starts_with(&head))
}

/// The dialog: from the last rule (`───`) above the question to its footer.
fn dialog_text(lines: &[&str]) -> String {
    let end = lines
        .iter()
        .rposition(|l| l.trim_start().starts_with("Esc to cancel"))
        .unwrap_or(lines.len().saturating_sub(1));
    let start = lines[..end]
        .iter()
        .rposition(|l| l.starts_with('─'))
        .map(|i| i + 1)
        .unwrap_or(0);
    lines[start..=end.min(lines.len().saturating_sub(1))]
        .iter()
        .map(|l| l.trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        .trim_matches('\n')
        .to_string()
}

/// The transcript file's current length: the point a reply is read from.
pub fn transcript_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The assistant's text written to the transcript after byte `from`, blocks
/// joined by blank lines; `None` if there is none (yet).
///
/// Only what follows the first user entry after `from` (the prompt) counts:
/// on `--resume` the CLI first closes an interrupted turn with a synthetic
/// assistant entry ("No response requested."), which is not the reply.
pub fn reply_since(path: &Path, from: u64) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    if f.seek(SeekFrom::Start(from)).is_err() {
        return None;
    }
    let mut texts = vec![];
    let mut prompt_seen = false;
    for line in std::io::BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            // A line being written right now: stop at it.
            break;
        };
        if v["type"] == "user" {
            prompt_seen = true;
            continue;
        }
        if v["type"] != "assistant" || !prompt_seen || v["message"]["model"] == "<synthetic>" {
            continue;
        }
        if let Some(blocks) = v["message"]["content"].as_array() {
            for b in blocks {
                if b["type"] == "text" {
                    if let Some(t) = b["text"].as_str() {
                        texts.push(t.to_string());
                    }
                }
            }
        }
    }
    (!texts.is_empty()).then(|| texts.join("\n\n"))
}

/// The transcript of a conversation, as the CLI lays it out under `home`.
/// (The CLI shortens folder names over about 200 characters; for such a cwd
/// the file is not found and replies fall back to the screen.)
pub fn transcript_path(home: &Path, cwd: &Path, session: &uuid::Uuid) -> std::path::PathBuf {
    let mangled: String = cwd
        .to_string_lossy()
        .chars()
        // As the CLI does: every character but ASCII letters and digits becomes '-'.
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    home.join(".claude/projects")
        .join(mangled)
        .join(format!("{session}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARNESS: &str = "../../shared/claude-harness";

    fn capture(name: &str) -> Option<String> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(HARNESS)
            .join(name);
        std::fs::read_to_string(p).ok()
    }

    #[test]
    fn classifies_the_real_captures() {
        let cases = [
            ("idle.txt", "ready"),
            ("busy.txt", "busy"),
            ("busy_streaming.txt", "busy"),
            ("permission.txt", "waiting"),
            ("reply.txt", "ready"),
            ("interrupted.txt", "ready"),
        ];
        let mut seen = 0;
        for (file, want) in cases {
            let Some(text) = capture(file) else { continue };
            seen += 1;
            let got = classify(&text);
            let ok = match (want, &got) {
                ("ready", ScreenState::Ready) | ("busy", ScreenState::Busy) => true,
                ("waiting", ScreenState::WaitingInput(d)) => {
                    d.contains("Do you want to proceed?")
                        && d.contains("1. Yes")
                        && d.contains("Bash command")
                }
                _ => false,
            };
            assert!(ok, "{file}: {got:?}");
        }
        if seen == 0 {
            eprintln!("claude-harness captures not found beside the project: screen tests skipped");
        }
    }

    #[test]
    fn sees_an_unsubmitted_prompt() {
        let screen = "❯ hello\n\n● MOCK-REPLY: hello\n───\n❯\u{a0}and now after the crash\n───\n";
        assert!(prompt_pending(screen, "and now after the crash"));
        assert!(!prompt_pending(screen, "hello"));
        assert!(!prompt_pending("❯\u{a0}\n", "x"));
    }

    #[test]
    fn first_run_dialogs_and_starting() {
        let trust = "Accessing workspace:\n Quick safety check: Is this a project you created or one you trust?\n ❯ 1. Yes, I trust this folder";
        assert_eq!(
            classify(trust),
            ScreenState::FirstRun(FirstRunDialog::Trust)
        );
        let key = " Detected a custom API key\n Do you want to use this API key?\n   1. Yes\n ❯ 2. No (recommended)";
        assert_eq!(classify(key), ScreenState::FirstRun(FirstRunDialog::ApiKey));
        assert_eq!(
            classify(" ▐▛███▜▌   Claude Code v2.1.197\n"),
            ScreenState::Starting
        );
    }

    #[test]
    fn reads_assistant_text_after_an_offset() {
        let dir = std::env::temp_dir().join(format!("herd-claude-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.jsonl");
        let old = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"old"}]}}"#;
        std::fs::write(&p, format!("{old}\n")).unwrap();
        let from = transcript_len(&p);
        assert_eq!(reply_since(&p, from), None);
        let new = r#"{"type":"assistant","message":{"model":"<synthetic>","content":[{"type":"text","text":"No response requested."}]}}
{"type":"user","message":{"content":"hi"}}
{"type":"assistant","message":{"content":[{"type":"tool_use"},{"type":"text","text":"MOCK-REPLY: hi"}]}}
{"type":"assistant","message":{"content":[{"type":"text","text":"second"}]}}
{"type":"assis"#;
        std::fs::write(&p, format!("{old}\n{new}")).unwrap();
        assert_eq!(reply_since(&p, from).unwrap(), "MOCK-REPLY: hi\n\nsecond");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn transcript_path_mangles_the_cwd_like_the_cli() {
        let id = uuid::Uuid::nil();
        let p = transcript_path(
            Path::new("/h"),
            Path::new("/tmp/claude-harness.YmogUx/work"),
            &id,
        );
        assert_eq!(
            p,
            Path::new("/h/.claude/projects/-tmp-claude-harness-YmogUx-work/00000000-0000-0000-0000-000000000000.jsonl")
        );
    }
}
