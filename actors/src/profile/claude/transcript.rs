//! Claude Code's transcript: where the CLI writes a conversation, and the
//! assistant's words read back from it.

use std::io::{BufRead, Seek, SeekFrom};
use std::path::Path;

/// The transcript file's current length: the point a reply is read from.
pub(crate) fn transcript_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The assistant's text written to the transcript after byte `from`, blocks
/// joined by blank lines; `None` if there is none (yet).
///
/// Only what follows the first user entry after `from` (the prompt) counts:
/// on `--resume` the CLI first closes an interrupted turn with a synthetic
/// assistant entry ("No response requested."), which is not the reply.
pub(crate) fn reply_since(path: &Path, from: u64) -> Option<String> {
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
