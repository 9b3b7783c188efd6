//! Claude Code's transcript: where the CLI writes a conversation, and one
//! turn read back from it — the assistant's words and the tokens used.
//!
//! Entries are JSON lines linked by `uuid` / `parentUuid`; a prompt's user
//! entry carries its `promptId`. The order in the file is not the order of
//! the conversation: on 2.1.197 a turn's assistant entry can be written
//! *before* the user entry of its prompt. So a turn is found by following
//! each assistant entry's parents up to the user entry that carries a
//! `promptId`, never by position.

use crate::usage::Usage;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Seek, SeekFrom};
use std::path::Path;

/// The transcript file's current length: a turn's entries follow it.
pub(crate) fn transcript_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// One turn read back: the assistant's text blocks in order, and its usage.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Turn {
    /// The assistant's text blocks, in order.
    pub(crate) texts: Vec<String>,
    /// Tokens used by the turn's API messages.
    pub(crate) usage: Usage,
}

impl Turn {
    /// The reply: the text blocks joined by blank lines; `None` if there are none.
    pub(crate) fn reply(&self) -> Option<String> {
        (!self.texts.is_empty()).then(|| self.texts.join("\n\n"))
    }
}

struct Entry {
    kind: String,
    parent: Option<String>,
    prompt_id: Option<String>,
    value: Value,
}

/// The turn of the prompt `prompt_id` (or, without one, of the first prompt
/// written after byte `from`), from entries written after `from`.
///
/// A synthetic assistant entry (`"model": "<synthetic>"`, e.g. the "No
/// response requested." that closes an interrupted turn on `--resume`) is
/// not the model's words and is skipped.
pub(crate) fn turn(path: &Path, prompt_id: Option<&str>, from: u64) -> Turn {
    let entries = read_from(path, from);
    let by_uuid: HashMap<&str, &Entry> = entries
        .iter()
        .filter_map(|e| e.value["uuid"].as_str().map(|u| (u, e)))
        .collect();
    let target = prompt_id.map(str::to_string).or_else(|| {
        entries
            .iter()
            .find(|e| e.kind == "user" && e.prompt_id.is_some())
            .and_then(|e| e.prompt_id.clone())
    });
    // The prompt whose turn an entry belongs to: the first user entry with a
    // promptId up its parents.
    let prompt_of = |e: &Entry| -> Option<String> {
        let mut parent = e.parent.as_deref();
        for _ in 0..10_000 {
            let p = by_uuid.get(parent?)?;
            if p.kind == "user" && p.prompt_id.is_some() {
                return p.prompt_id.clone();
            }
            parent = p.parent.as_deref();
        }
        None
    };
    let mut out = Turn::default();
    let mut counted: HashSet<String> = HashSet::new();
    for e in entries.iter().filter(|e| e.kind == "assistant") {
        let msg = &e.value["message"];
        if msg["model"] == "<synthetic>" {
            continue;
        }
        let belongs = match (&target, prompt_of(e)) {
            (Some(t), Some(p)) => *t == p,
            // Parents outside what was read: with no prompt known, take it.
            (None, _) => true,
            (Some(_), None) => false,
        };
        if !belongs {
            continue;
        }
        if let Some(blocks) = msg["content"].as_array() {
            for b in blocks {
                if b["type"] == "text" {
                    if let Some(t) = b["text"].as_str() {
                        out.texts.push(t.to_string());
                    }
                }
            }
        }
        // One API message can be written as several entries, each with the
        // message's usage: count it once.
        let id = msg["id"].as_str().unwrap_or_default().to_string();
        if id.is_empty() || counted.insert(id) {
            out.usage.add(&usage_of(msg));
        }
    }
    out
}

fn usage_of(msg: &Value) -> Usage {
    let u = &msg["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cache_creation_input_tokens: n("cache_creation_input_tokens"),
        cache_read_input_tokens: n("cache_read_input_tokens"),
        model: msg["model"].as_str().map(str::to_string),
    }
}

/// Every complete entry after byte `from` (a line being written is left out).
fn read_from(path: &Path, from: u64) -> Vec<Entry> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return vec![];
    };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return vec![];
    }
    let mut out = vec![];
    for line in std::io::BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            break;
        };
        out.push(Entry {
            kind: value["type"].as_str().unwrap_or_default().to_string(),
            parent: value["parentUuid"].as_str().map(str::to_string),
            prompt_id: value["promptId"].as_str().map(str::to_string),
            value,
        });
    }
    out
}

/// The transcript of a conversation, as the CLI lays it out under `home`.
/// (The CLI shortens folder names over about 200 characters; for such a cwd
/// the file is not found and replies come from the Stop hook or the screen.)
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

    fn write(lines: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("herd-transcript-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.jsonl");
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        (dir, p)
    }

    #[test]
    fn the_reply_can_come_before_its_prompt_in_the_file() {
        // As seen on 2.1.197: assistant first, then the user entry it descends from.
        let (dir, p) = write(&[
            r#"{"type":"assistant","uuid":"a1","parentUuid":"t2","message":{"id":"m1","model":"claude-opus-4-8","content":[{"type":"text","text":"MOCK-REPLY: hello"}],"usage":{"input_tokens":1817,"output_tokens":3,"cache_creation_input_tokens":0,"cache_read_input_tokens":5}}}"#,
            r#"{"type":"user","uuid":"u1","parentUuid":null,"promptId":"p1","message":{"content":"hello"}}"#,
            r#"{"type":"attachment","uuid":"t1","parentUuid":"u1"}"#,
            r#"{"type":"attachment","uuid":"t2","parentUuid":"t1"}"#,
        ]);
        let t = turn(&p, Some("p1"), 0);
        assert_eq!(t.reply().unwrap(), "MOCK-REPLY: hello");
        assert_eq!(
            (
                t.usage.input_tokens,
                t.usage.output_tokens,
                t.usage.cache_read_input_tokens
            ),
            (1817, 3, 5)
        );
        assert_eq!(t.usage.model.as_deref(), Some("claude-opus-4-8"));
        // Without the id, the first prompt after the offset is the one.
        assert_eq!(turn(&p, None, 0).reply().unwrap(), "MOCK-REPLY: hello");
        assert_eq!(turn(&p, Some("other"), 0).reply(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_turn_with_a_tool_joins_its_texts_and_counts_each_message_once() {
        let (dir, p) = write(&[
            r#"{"type":"assistant","uuid":"x0","parentUuid":null,"message":{"model":"<synthetic>","content":[{"type":"text","text":"No response requested."}]}}"#,
            r#"{"type":"user","uuid":"u1","parentUuid":"x0","promptId":"p1","message":{"content":"run"}}"#,
            r#"{"type":"assistant","uuid":"a1","parentUuid":"u1","message":{"id":"m1","content":[{"type":"text","text":"MOCK-TOOL: running a command."}],"usage":{"input_tokens":10,"output_tokens":2}}}"#,
            r#"{"type":"assistant","uuid":"a2","parentUuid":"a1","message":{"id":"m1","content":[{"type":"tool_use"}],"usage":{"input_tokens":10,"output_tokens":2}}}"#,
            r#"{"type":"user","uuid":"r1","parentUuid":"a2","message":{"content":[{"type":"tool_result"}]}}"#,
            r#"{"type":"assistant","uuid":"a3","parentUuid":"r1","message":{"id":"m2","content":[{"type":"text","text":"MOCK-REPLY: done"}],"usage":{"input_tokens":20,"output_tokens":4}}}"#,
            r#"{"type":"user","uuid":"u2","parentUuid":"a3","promptId":"p2","message":{"content":"next"}}"#,
            r#"{"type":"assistant","uuid":"b1","parentUuid":"u2","message":{"id":"m3","content":[{"type":"text","text":"other turn"}]}}"#,
            r#"{"type":"assis"#,
        ]);
        let t = turn(&p, Some("p1"), 0);
        assert_eq!(
            t.reply().unwrap(),
            "MOCK-TOOL: running a command.\n\nMOCK-REPLY: done"
        );
        assert_eq!((t.usage.input_tokens, t.usage.output_tokens), (30, 6));
        assert_eq!(turn(&p, Some("p2"), 0).reply().unwrap(), "other turn");
        std::fs::remove_dir_all(dir).unwrap();
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
