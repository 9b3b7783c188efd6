//! What Claude Code's screen says: busy, waiting for an answer, ready, or a
//! first-run dialog to answer.
//!
//! Markers observed on the real CLI 2.1.197 (see the claude-harness README):
//! busy = footer `esc to interrupt`; waiting for input = `Do you want to
//! proceed?` or the `Esc to cancel` footer; ready = the input line `❯` with
//! neither. The folder-trust and custom-API-key dialogs can appear before the
//! first prompt; the daemon seeds a config that avoids them, and this module
//! answers them if they show up anyway.

/// What the screen says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScreenState {
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
pub(crate) enum FirstRunDialog {
    /// "Is this a project you created or one you trust?"
    Trust,
    /// "Do you want to use this API key?"
    ApiKey,
}

impl FirstRunDialog {
    /// The keys that accept the dialog.
    pub(crate) fn answer(self) -> &'static [u8] {
        match self {
            // The cursor starts on "1. Yes, I trust this folder".
            Self::Trust => b"\r",
            // The cursor starts on "2. No (recommended)": select 1. Yes.
            Self::ApiKey => b"\x1b[A\r",
        }
    }
}

/// Reads the state from the screen text.
pub(crate) fn classify(screen: &str) -> ScreenState {
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
pub(crate) fn input_line(screen: &str) -> Option<String> {
    screen
        .lines()
        .rev()
        .find(|l| l.starts_with('❯'))
        .map(|l| l.trim_start_matches('❯').trim().to_string())
}

/// The first 24 characters of a prompt's first line: what the screen shows of it.
fn head(prompt: &str) -> String {
    prompt
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(24)
        .collect()
}

/// True if the input box still holds the start of `prompt`: it was typed
/// but not submitted (or an interrupt put it back).
pub(crate) fn prompt_pending(screen: &str, prompt: &str) -> bool {
    let head = head(prompt);
    !head.is_empty() && input_line(screen).is_some_and(|l| l.starts_with(&head))
}

/// True if the footer says the CLI has no credentials (`Not logged in · Run /login`).
pub(crate) fn not_logged_in(screen: &str) -> bool {
    screen.lines().any(|l| l.contains("Not logged in"))
}

/// The lines of the conversation after the echo of `prompt` (`❯ prompt`),
/// up to the input box; `None` if the echo is not on screen.
fn after_prompt<'a>(screen: &'a str, prompt: &str) -> Option<Vec<&'a str>> {
    let head = head(prompt);
    let lines: Vec<&str> = screen.lines().collect();
    // The input box is the last `❯` line; the echo is an earlier one.
    let input = lines.iter().rposition(|l| l.starts_with('❯'))?;
    let echo = lines[..input]
        .iter()
        .rposition(|l| l.starts_with('❯') && l.trim_start_matches('❯').trim().starts_with(&head))?;
    Some(lines[echo + 1..input].to_vec())
}

/// True if the turn of `prompt` ended with `⎿  Interrupted · ...` on screen.
pub(crate) fn interrupted_after(screen: &str, prompt: &str) -> bool {
    after_prompt(screen, prompt).is_some_and(|ls| ls.iter().any(|l| l.contains("Interrupted ·")))
}

/// What the assistant had said of an interrupted turn: the `● ` lines after
/// the prompt's echo, up to the `Interrupted` line.
pub(crate) fn partial_reply(screen: &str, prompt: &str) -> Option<String> {
    let lines = after_prompt(screen, prompt)?;
    let mut out: Vec<String> = vec![];
    let mut in_reply = false;
    for l in lines {
        if l.contains("Interrupted ·") || l.starts_with('─') {
            break;
        }
        if let Some(t) = l.strip_prefix("● ") {
            in_reply = true;
            out.push(t.trim_end().to_string());
        } else if in_reply && l.starts_with("  ") && !l.trim_start().starts_with('⎿') {
            out.push(l.trim().to_string());
        } else {
            in_reply = false;
        }
    }
    let text = out.join("\n").trim().to_string();
    (!text.is_empty()).then_some(text)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
    fn interrupts_and_login_on_screen() {
        let screen = "❯ w1 w2 MOCK-SLOW=500\n\n● MOCK-REPLY: w1 w2\n  ⎿  Interrupted · What should Claude do instead?\n\n───\n❯\u{a0}\n───\n  ? for shortcuts";
        assert!(interrupted_after(screen, "w1 w2 MOCK-SLOW=500"));
        assert_eq!(
            partial_reply(screen, "w1 w2 MOCK-SLOW=500").as_deref(),
            Some("MOCK-REPLY: w1 w2")
        );
        assert!(!interrupted_after(screen, "something else"));
        let done = "❯ hello\n\n● MOCK-REPLY: hello\n\n✻ Churned for 0s\n───\n❯\u{a0}\n───";
        assert!(!interrupted_after(done, "hello"));
        assert!(not_logged_in(
            "  ? for shortcuts · ← for agents     Not logged in · Run /login"
        ));
        assert!(!not_logged_in(done));
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
}
