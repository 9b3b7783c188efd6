//! `herd-fake-claude`: a small, offline stand-in for the Claude Code CLI
//! (`claude` 2.1.197), built as a test binary of the herd package.
//!
//! It draws the same screen markers as the real TUI (see
//! `/work/shared/claude-harness/README.md` and the captured `*.txt` screens,
//! which it reproduces line for line at 120x40 apart from the random spinner
//! verb, the timings and the occasional `⎿  Tip:` line): the header, the `❯`
//! input line between two `─` rules, the `? for shortcuts` /
//! `esc to interrupt` footers, the `<glyph> <Verb>…` spinner, `● ` replies,
//! `✻ Worked for Ns`, the Bash permission dialog and `⎿  Interrupted · …`.
//! It writes the session transcript like the real CLI, to
//! `$HOME/.claude/projects/<cwd, non-alphanumerics as '-'>/<session>.jsonl`.
//! Replies follow the harness mock API: `MOCK-REPLY: <first 40 chars>`, with
//! the prompt switches `MOCK-WAIT=<ms>`, `MOCK-SLOW=<ms>` (per word),
//! `MOCK-LINES=<n>` (paragraphs `line i of n`) and `MOCK-TOOL-BASH`.
//!
//! Integration tests start it in a PTY in place of the real CLI, via
//! `env!("CARGO_BIN_EXE_herd-fake-claude")`. Environment knobs:
//! - `FAKE_CLAUDE_STARTUP_MS` (default 300): header only, then idle;
//! - `FAKE_CLAUDE_BUSY_MS` (default 400): wait before a reply unless the
//!   prompt says `MOCK-WAIT=`;
//! - `FAKE_CLAUDE_DIALOGS`: contains `trust` and/or `apikey` to show those
//!   first-run dialogs after startup;
//! - `FAKE_CLAUDE_LOG`: append one JSON line per start: `argv` (without the
//!   program name), `cwd`, `pid`, `home`, `has_api_key`, `has_oauth_token`
//!   (never the secrets themselves).
//!
//! - `FAKE_CLAUDE_LOGGED_OUT`: behave as a CLI with no credentials (footer
//!   `Not logged in · Run /login`, every prompt fails with StopFailure
//!   `authentication_failed`);
//! - prompt switch `MOCK-429=<n>`: the first n submissions of that prompt
//!   fail with StopFailure `rate_limit` ("try again in 200ms");
//! - `FAKE_CLAUDE_NOTIFY_MS` (default 6000): the `permission_prompt`
//!   notification this long after a permission dialog opens.
//!
//! Hooks (`hooks.rs`): UserPromptSubmit (with `prompt_id`), PreToolUse,
//! PermissionRequest, PostToolUse, Notification, Stop (with
//! `last_assistant_message`), StopFailure (for `MOCK-STATUS=<code>` prompts
//! and when logged out, at once instead of after the real CLI's retries),
//! SessionEnd. As on the real CLI, a turn's first assistant entry is written
//! to the transcript before the user entry of its prompt (linked by
//! `parentUuid`; the user entry carries `promptId`), with `usage`.
//!
//! Exit codes: 0 for `/exit` or a double Ctrl-C (within 1 s), 1 for bad
//! arguments or a declined dialog, 128+signal for SIGTERM/SIGHUP, 129 when
//! the terminal goes away.
//!
//! (Long: one file is the whole fake TUI — arguments, keys, turns, drawing —
//! as a test binary; its hooks are in `fake_claude/hooks.rs`.)

#[path = "fake_claude/hooks.rs"]
mod hooks;

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const VERSION: &str = "2.1.197";
/// `⎿` is followed by a space and a no-break space on the real screen.
const ELBOW: &str = "  ⎿ \u{a0}";
const INTERRUPTED: &str = "Interrupted · What should Claude do instead?";
const TOOL_COMMAND: &str = "touch mock-tool-ran.txt && echo mock-tool-ran";
const TOOL_PREFACE: &str = "MOCK-TOOL: running a command.";
const GLYPHS: [&str; 6] = ["✻", "✶", "·", "✽", "*", "✢"];
/// Spinner verbs (the real CLI picks one at random per turn).
const VERBS: &str = "Actioning Architecting Brewing Churning Cogitating Forming Waddling";
const PERMISSION_MODES: &str = "acceptEdits, auto, bypassPermissions, default, dontAsk, plan";
const CTRL_C_WINDOW: Duration = Duration::from_secs(1);
const ESC_TIMEOUT: Duration = Duration::from_millis(30);

const HELP: &str = "Usage: claude [options] [prompt]

Claude Code (fake, for herd's tests) - starts an interactive session

Arguments:
  prompt                                Your prompt

Options:
  --allowedTools, --allowed-tools <tools...>
                                        Comma or space-separated list of tool names to allow
  --append-system-prompt <prompt>       Append a system prompt to the default system prompt
  --dangerously-skip-permissions        Bypass all permission checks
  --disallowedTools, --disallowed-tools <tools...>
                                        Comma or space-separated list of tool names to deny
  -h, --help                            Display help for command
  --model <model>                       Model for the current session
  --permission-mode <mode>              Permission mode to use for the session (choices:
                                        \"acceptEdits\", \"auto\", \"bypassPermissions\",
                                        \"default\", \"dontAsk\", \"plan\")
  -r, --resume <sessionId>              Resume a conversation by session ID
  --session-id <uuid>                   Use a specific session ID for the conversation
                                        (must be a valid UUID)
  -v, --version                         Output the version number
";

static WINCH: AtomicBool = AtomicBool::new(false);
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGWINCH {
        WINCH.store(true, Ordering::SeqCst);
    } else {
        STOP_SIGNAL.store(sig, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------- arguments

#[derive(Default)]
struct Args {
    session_id: Option<String>,
    resume: Option<String>,
    model: Option<String>,
    append_system_prompt: Option<String>,
    allowed_tools: Vec<String>,
    disallowed_tools: Vec<String>,
    permission_mode: Option<String>,
    skip_permissions: bool,
    prompt: Option<String>,
    settings: Option<String>,
}

enum Parsed {
    Run(Box<Args>),
    Help,
    Version,
}

/// Parses like the real CLI (commander): `--opt value` or `--opt=value`,
/// variadic tool lists take the following non-option arguments.
fn parse_args(argv: &[String]) -> Result<Parsed, String> {
    let mut a = Args::default();
    let mut i = 0;
    while i < argv.len() {
        let arg = argv[i].clone();
        i += 1;
        if arg == "--" {
            for p in &argv[i..] {
                set_prompt(&mut a, p)?;
            }
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            set_prompt(&mut a, &arg)?;
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-v" | "--version" => return Ok(Parsed::Version),
            "--dangerously-skip-permissions" => a.skip_permissions = true,
            "--allowedTools" | "--allowed-tools" | "--disallowedTools" | "--disallowed-tools" => {
                let mut values: Vec<String> = inline.into_iter().collect();
                while i < argv.len() && !argv[i].starts_with('-') {
                    values.push(argv[i].clone());
                    i += 1;
                }
                if values.is_empty() {
                    return Err(format!(
                        "error: option '{name} <tools...>' argument missing"
                    ));
                }
                let tools = values
                    .iter()
                    .flat_map(|v| v.split([',', ' ']))
                    .filter(|t| !t.is_empty())
                    .map(str::to_string);
                if name.starts_with("--allowed") {
                    a.allowed_tools.extend(tools);
                } else {
                    a.disallowed_tools.extend(tools);
                }
            }
            "--session-id"
            | "--resume"
            | "-r"
            | "--model"
            | "--append-system-prompt"
            | "--settings"
            | "--permission-mode" => {
                let value = match inline {
                    Some(v) => v,
                    None if i < argv.len() => {
                        i += 1;
                        argv[i - 1].clone()
                    }
                    None => return Err(format!("error: option '{name}' argument missing")),
                };
                match name.as_str() {
                    "--session-id" => a.session_id = Some(value),
                    "--resume" | "-r" => a.resume = Some(value),
                    "--model" => a.model = Some(value),
                    "--append-system-prompt" => a.append_system_prompt = Some(value),
                    "--settings" => a.settings = Some(value),
                    _ => {
                        if !PERMISSION_MODES.split(", ").any(|m| m == value) {
                            return Err(format!(
                                "error: option '--permission-mode <mode>' argument '{value}' is \
                                 invalid. Allowed choices are {}.",
                                PERMISSION_MODES
                            ));
                        }
                        a.permission_mode = Some(value);
                    }
                }
            }
            _ => return Err(format!("error: unknown option '{arg}'")),
        }
    }
    Ok(Parsed::Run(Box::new(a)))
}

fn set_prompt(a: &mut Args, p: &str) -> Result<(), String> {
    if a.prompt.is_some() {
        return Err("error: too many arguments. Expected 1 argument.".to_string());
    }
    a.prompt = Some(p.to_string());
    Ok(())
}

// ---------------------------------------------------------------- helpers

fn env_ms(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// `NAME=<digits>` anywhere in the prompt, like the mock's `NAME=(\d+)`.
fn switch(prompt: &str, name: &str) -> Option<u64> {
    let key = format!("{name}=");
    prompt.match_indices(&key).find_map(|(at, _)| {
        let digits: String = prompt[at + key.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

/// Words with their trailing whitespace (the mock's `\S+\s*|\s+`).
fn split_tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if !c.is_whitespace() && cur.chars().next_back().is_some_and(char::is_whitespace) {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The mock API's reply: `MOCK-REPLY: <first 40 chars>` (+ `MOCK-LINES`).
fn reply_text(prompt: &str) -> String {
    let flat = prompt.trim().replace('\n', " ");
    let mut text = format!("MOCK-REPLY: {}", flat.chars().take(40).collect::<String>());
    let n = switch(prompt, "MOCK-LINES").unwrap_or(0);
    for i in 1..=n {
        text.push_str(&format!("\n\nline {i} of {n}"));
    }
    text
}

/// `● first line` then continuation lines indented by two spaces.
fn bullet_lines(text: &str) -> Vec<String> {
    indented(text.trim_end(), "● ")
}

fn indented(text: &str, first: &str) -> Vec<String> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| match (i, l.is_empty()) {
            (0, _) => format!("{first}{l}").trim_end().to_string(),
            (_, true) => String::new(),
            _ => format!("  {l}"),
        })
        .collect()
}

/// The project folder name the real CLI uses: every non-alphanumeric -> `-`.
fn project_slug(cwd: &str) -> String {
    cwd.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn iso_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, ms) = (d.as_secs() as i64, d.subsec_millis());
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn append_line(path: &PathBuf, line: &str) {
    if let Some(dir) = path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(format!("{line}\n").as_bytes());
        let _ = f.flush();
    }
}

fn term_size() -> (usize, usize) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    for fd in [1, 0] {
        // SAFETY: TIOCGWINSZ only writes into the winsize we pass.
        let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
        if ok && ws.ws_col > 0 && ws.ws_row > 0 {
            return (usize::from(ws.ws_col), usize::from(ws.ws_row));
        }
    }
    (120, 40)
}

fn write_out(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

// ---------------------------------------------------------------- input

enum Key {
    Char(char),
    Enter,
    Newline,
    Backspace,
    CtrlC,
    CtrlU,
    Esc,
    Up,
    Down,
    Paste(String),
    PasteStart,
}

const PASTE_END: &[u8] = b"\x1b[201~";

/// Turns raw terminal bytes into keys; keeps incomplete sequences for later.
#[derive(Default)]
struct KeyParser {
    buf: Vec<u8>,
    paste: Option<Vec<u8>>,
}

impl KeyParser {
    fn feed(&mut self, data: &[u8]) -> Vec<Key> {
        self.buf.extend_from_slice(data);
        let mut keys = Vec::new();
        let mut i = 0;
        while i < self.buf.len() {
            let rest = &self.buf[i..];
            if let Some(p) = self.paste.as_mut() {
                if let Some(pos) = rest.windows(PASTE_END.len()).position(|w| w == PASTE_END) {
                    p.extend_from_slice(&rest[..pos]);
                    let text = String::from_utf8_lossy(p).replace("\r\n", "\n");
                    keys.push(Key::Paste(text.replace('\r', "\n")));
                    self.paste = None;
                    i += pos + PASTE_END.len();
                    continue;
                }
                // Keep a possible partial end marker for the next read.
                let keep = (1..PASTE_END.len())
                    .rev()
                    .find(|&k| rest.ends_with(&PASTE_END[..k]))
                    .unwrap_or(0);
                p.extend_from_slice(&rest[..rest.len() - keep]);
                i = self.buf.len() - keep;
                break;
            }
            let Some((used, key)) = next_key(rest) else {
                break;
            };
            i += used;
            match key {
                Some(Key::PasteStart) => self.paste = Some(Vec::new()),
                Some(k) => keys.push(k),
                None => {}
            }
        }
        self.buf.drain(..i);
        keys
    }

    /// Bytes are waiting for the rest of an escape sequence or character.
    fn pending(&self) -> bool {
        !self.buf.is_empty() && self.paste.is_none()
    }

    /// The rest never came: a lone ESC is the Escape key.
    fn flush(&mut self) -> Vec<Key> {
        if self.paste.is_some() || self.buf.first() != Some(&0x1b) {
            self.buf.clear();
            return Vec::new();
        }
        let rest = self.buf.split_off(1);
        self.buf.clear();
        let mut keys = vec![Key::Esc];
        keys.extend(self.feed(&rest));
        keys
    }
}

/// The key at the front of `buf` and its length; `None` if incomplete.
fn next_key(buf: &[u8]) -> Option<(usize, Option<Key>)> {
    let one = |k: Key| Some((1, Some(k)));
    let arrow = |f: &u8| match f {
        b'A' => Some(Key::Up),
        b'B' => Some(Key::Down),
        _ => None,
    };
    match *buf.first()? {
        0x1b => match *buf.get(1)? {
            b'[' => {
                let end = 2 + buf[2..].iter().position(|b| !(0x20..0x40).contains(b))?;
                let key = match &buf[2..=end] {
                    b"200~" => Some(Key::PasteStart),
                    [f] => arrow(f),
                    _ => None,
                };
                Some((end + 1, key))
            }
            b'O' => Some((3, arrow(buf.get(2)?))),
            _ => one(Key::Esc),
        },
        b'\r' => one(Key::Enter),
        b'\n' => one(Key::Newline),
        0x7f | 0x08 => one(Key::Backspace),
        0x03 => one(Key::CtrlC),
        0x15 => one(Key::CtrlU),
        c if c < 0x20 => Some((1, None)),
        c => {
            let len = match c {
                0xf0.. => 4,
                0xe0.. => 3,
                0xc0.. => 2,
                _ => 1,
            };
            let ch = std::str::from_utf8(buf.get(..len)?).ok();
            match ch.and_then(|s| s.chars().next()) {
                Some(ch) => Some((len, Some(Key::Char(ch)))),
                None => Some((1, None)),
            }
        }
    }
}

// ---------------------------------------------------------------- the app

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Starting(Instant),
    Trust(usize),
    ApiKey(usize),
    Idle,
    Busy,
    Permission(usize),
}

/// One streamed assistant message: the next word arrives at `next_at`.
struct Segment {
    words: Vec<String>,
    shown: usize,
    next_at: Instant,
    tool_preface: bool,
}

struct Turn {
    prompt: String,
    started: Instant,
    verb: &'static str,
    seg: Segment,
    tokens: usize,
    wait: Duration,
    slow: Duration,
    tool_item: usize,
}

impl Segment {
    fn new(text: &str, wait: Duration, slow: Duration, tool_preface: bool) -> Self {
        let next_at = Instant::now() + wait + slow;
        let words = split_tokens(text);
        Segment {
            words,
            shown: 0,
            next_at,
            tool_preface,
        }
    }
}

struct App {
    cwd: String,
    session_id: String,
    transcript: PathBuf,
    mode: Mode,
    dialogs: VecDeque<Mode>,
    items: Vec<Vec<String>>,
    input: String,
    queue: VecDeque<String>,
    turn: Option<Turn>,
    ctrl_c_at: Option<Instant>,
    last_uuid: Option<String>,
    has_messages: bool,
    bash_enabled: bool,
    bash_allowed: bool,
    busy_ms: u64,
    rng: u64,
    exit: Option<i32>,
    exit_message: Option<String>,
    last_frame: String,
    hooks: hooks::Hooks,
    /// The prompt id of the turn in flight.
    prompt_id: Option<String>,
    /// The turn's user entry, written after its first assistant entry (as
    /// the real CLI does).
    pending_user: Option<Value>,
    logged_out: bool,
    /// When the permission dialog opened; whether its notification went out.
    permission_since: Option<Instant>,
    notified: bool,
    notify_ms: u64,
    /// Submissions per prompt text (for `MOCK-429=<n>`: the first n fail).
    attempts: std::collections::HashMap<String, u32>,
}

impl App {
    fn verb(&mut self) -> &'static str {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let verbs: Vec<&'static str> = VERBS.split(' ').collect();
        verbs[(self.rng % verbs.len() as u64) as usize]
    }

    fn record(&mut self, kind: &str, message: Value) {
        let uuid = uuid::Uuid::new_v4().to_string();
        let rec = json!({
            "parentUuid": self.last_uuid, "isSidechain": false, "userType": "external",
            "cwd": self.cwd, "sessionId": self.session_id, "version": VERSION,
            "type": kind, "message": message, "uuid": uuid, "timestamp": iso_now(),
        });
        append_line(&self.transcript, &rec.to_string());
        self.last_uuid = Some(uuid);
        self.has_messages = true;
    }

    fn record_user_text(&mut self, text: &str) {
        let content = json!([{"type": "text", "text": text}]);
        self.record("user", json!({"role": "user", "content": content}));
    }

    fn record_assistant(&mut self, content: Value) {
        let words: usize = content
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["text"].as_str())
            .map(|t| t.split_whitespace().count())
            .sum();
        let id = uuid::Uuid::new_v4().to_string();
        self.record(
            "assistant",
            json!({"role": "assistant", "id": id, "model": "claude-fake-1", "content": content,
                   "usage": {"input_tokens": 100, "output_tokens": words,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 7}}),
        );
        self.flush_user();
    }

    /// Writes the held user entry of the turn's prompt.
    fn flush_user(&mut self) {
        if let Some(rec) = self.pending_user.take() {
            append_line(&self.transcript, &rec.to_string());
        }
    }

    /// A failed turn: the CLI shows the error and fires StopFailure.
    fn fail_turn(&mut self, error: &str, message: &str) {
        self.items.push(vec![format!("{ELBOW}{message}")]);
        self.items.push(vec!["✻ Worked for 0s".to_string()]);
        self.flush_user();
        self.hooks.fire(
            "StopFailure",
            json!({"prompt_id": self.prompt_id, "error": error, "last_assistant_message": message}),
        );
        self.mode = Mode::Idle;
    }

    /// Shows the turns of an earlier transcript (for `--resume`).
    fn load_transcript(&mut self, text: &str) {
        for v in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        {
            if v["isMeta"].as_bool() == Some(true) {
                continue;
            }
            let content = &v["message"]["content"];
            let blocks = content.as_array().cloned().unwrap_or_default();
            match v["type"].as_str() {
                Some("user") => {
                    let text = content.as_str().map(str::to_string).or_else(|| {
                        let t = blocks.iter().find_map(|b| b["text"].as_str())?;
                        (!t.starts_with("[Request interrupted")).then(|| t.to_string())
                    });
                    if let Some(t) = text {
                        self.items.push(indented(&t, "❯ "));
                    }
                }
                Some("assistant") => {
                    for b in &blocks {
                        match (b["type"].as_str(), b["text"].as_str()) {
                            (Some("text"), Some(t)) => self.items.push(bullet_lines(t)),
                            (Some("tool_use"), _) => self.items.push(vec![format!(
                                "● {}({})",
                                b["name"].as_str().unwrap_or("Tool"),
                                b["input"]["command"].as_str().unwrap_or("")
                            )]),
                            _ => {}
                        }
                    }
                }
                _ => continue,
            }
            if let Some(u) = v["uuid"].as_str() {
                self.last_uuid = Some(u.to_string());
            }
            self.has_messages = true;
        }
    }

    // ------------------------------------------------------------ turns

    fn submit(&mut self, prompt: String) {
        if matches!(prompt.trim(), "/exit" | "/quit") {
            self.exit = Some(0);
            return;
        }
        self.items.push(indented(&prompt, "❯ "));
        let prompt_id = uuid::Uuid::new_v4().to_string();
        let uuid = uuid::Uuid::new_v4().to_string();
        self.pending_user = Some(json!({
            "parentUuid": self.last_uuid, "isSidechain": false, "userType": "external",
            "cwd": self.cwd, "sessionId": self.session_id, "version": VERSION,
            "type": "user", "promptId": prompt_id, "uuid": uuid, "timestamp": iso_now(),
            "message": {"role": "user", "content": prompt},
        }));
        self.last_uuid = Some(uuid);
        self.has_messages = true;
        // As the real CLI: bookkeeping entries go out at once (so a resume
        // finds the conversation), the prompt's own entry after the reply's.
        append_line(
            &self.transcript,
            &json!({"type": "last-prompt", "lastPrompt": prompt, "sessionId": self.session_id})
                .to_string(),
        );
        self.prompt_id = Some(prompt_id.clone());
        self.hooks.fire(
            "UserPromptSubmit",
            json!({"prompt_id": prompt_id, "prompt": prompt}),
        );
        if self.logged_out {
            return self.fail_turn("authentication_failed", "Not logged in · Please run /login");
        }
        let attempt = {
            let n = self.attempts.entry(prompt.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if switch(&prompt, "MOCK-429").is_some_and(|n| u64::from(attempt) <= n) {
            return self.fail_turn(
                "rate_limit",
                "API Error: Rate limit reached · try again in 200ms",
            );
        }
        match switch(&prompt, "MOCK-STATUS") {
            Some(401) => {
                return self.fail_turn(
                    "authentication_failed",
                    "Please run /login · API Error: 401 mock authentication_error (401)",
                )
            }
            Some(429) => {
                return self.fail_turn(
                    "rate_limit",
                    "API Error: Rate limit reached · resets 3pm (UTC)",
                )
            }
            Some(code) if code >= 400 => {
                let error = if code == 529 {
                    "overloaded"
                } else {
                    "server_error"
                };
                return self.fail_turn(error, &format!("API Error: {code} mock error"));
            }
            _ => {}
        }
        let tool = prompt.contains("MOCK-TOOL-BASH") && self.bash_enabled;
        let text = if tool {
            TOOL_PREFACE.to_string()
        } else {
            reply_text(&prompt)
        };
        let wait = Duration::from_millis(switch(&prompt, "MOCK-WAIT").unwrap_or(self.busy_ms));
        let slow = Duration::from_millis(switch(&prompt, "MOCK-SLOW").unwrap_or(0));
        let turn = Turn {
            started: Instant::now(),
            verb: self.verb(),
            seg: Segment::new(&text, wait, slow, tool),
            tokens: 0,
            wait,
            slow,
            tool_item: 0,
            prompt,
        };
        self.turn = Some(turn);
        self.mode = Mode::Busy;
    }

    fn tick(&mut self, now: Instant) {
        match self.mode {
            Mode::Starting(until) if now >= until => self.next_dialog(),
            Mode::Permission(_) => {
                let due = self
                    .permission_since
                    .is_some_and(|s| now - s >= Duration::from_millis(self.notify_ms));
                if due && !std::mem::replace(&mut self.notified, true) {
                    self.hooks.fire(
                        "Notification",
                        json!({"prompt_id": self.prompt_id, "message": "Claude needs your permission",
                               "notification_type": "permission_prompt"}),
                    );
                }
            }
            Mode::Busy => {
                let Some(t) = self.turn.as_mut() else {
                    self.mode = Mode::Idle;
                    return;
                };
                let s = &mut t.seg;
                while s.shown < s.words.len() && now >= s.next_at {
                    s.shown += 1;
                    t.tokens += 1;
                    s.next_at += t.slow;
                }
                if s.shown >= s.words.len() {
                    self.finish_segment();
                }
            }
            _ => {}
        }
    }

    fn next_dialog(&mut self) {
        self.mode = self.dialogs.pop_front().unwrap_or(Mode::Idle);
        if self.mode == Mode::Idle {
            if let Some(p) = self.queue.pop_front() {
                self.submit(p);
            }
        }
    }

    fn finish_segment(&mut self) {
        let Some(mut t) = self.turn.take() else {
            return;
        };
        let text = t.seg.words.concat();
        self.items.push(bullet_lines(&text));
        if t.seg.tool_preface {
            self.items.push(vec![
                format!("● Bash({TOOL_COMMAND})"),
                format!("{ELBOW}Waiting…"),
            ]);
            t.tool_item = self.items.len() - 1;
            self.record_assistant(json!([
                {"type": "text", "text": text},
                {"type": "tool_use", "id": "toolu_fake_1", "name": "Bash",
                 "input": {"command": TOOL_COMMAND, "description": "Mock tool call"}},
            ]));
            self.turn = Some(t);
            let tool = json!({"tool_name": "Bash", "prompt_id": self.prompt_id,
                "tool_input": {"command": TOOL_COMMAND, "description": "Mock tool call"},
                "tool_use_id": "toolu_fake_1"});
            self.hooks.fire("PreToolUse", tool.clone());
            if self.bash_allowed {
                self.approve(false);
            } else {
                self.hooks.fire("PermissionRequest", tool);
                self.permission_since = Some(Instant::now());
                self.notified = false;
                self.mode = Mode::Permission(0);
            }
            return;
        }
        let secs = t.started.elapsed().as_secs();
        self.items.push(vec![format!("✻ Worked for {secs}s")]);
        self.record_assistant(json!([{"type": "text", "text": text}]));
        self.hooks.fire(
            "Stop",
            json!({"prompt_id": self.prompt_id, "stop_hook_active": false,
                   "last_assistant_message": text.trim_end()}),
        );
        self.mode = Mode::Idle;
        if let Some(next) = self.queue.pop_front() {
            self.submit(next);
        }
    }

    fn approve(&mut self, always: bool) {
        let Some(mut t) = self.turn.take() else {
            return;
        };
        self.bash_allowed |= always;
        self.permission_since = None;
        let _ = fs::write(PathBuf::from(&self.cwd).join("mock-tool-ran.txt"), "");
        self.hooks.fire(
            "PostToolUse",
            json!({"tool_name": "Bash", "prompt_id": self.prompt_id,
                "tool_input": {"command": TOOL_COMMAND, "description": "Mock tool call"},
                "tool_response": {"stdout": "mock-tool-ran", "stderr": "", "interrupted": false},
                "tool_use_id": "toolu_fake_1"}),
        );
        self.set_tool_status(t.tool_item, "mock-tool-ran");
        self.record(
            "user",
            json!({"role": "user", "content": [{"type": "tool_result",
                "tool_use_id": "toolu_fake_1", "content": "mock-tool-ran", "is_error": false}]}),
        );
        t.seg = Segment::new(
            "MOCK-REPLY: tool_result: mock-tool-ran",
            t.wait,
            t.slow,
            false,
        );
        self.turn = Some(t);
        self.mode = Mode::Busy;
    }

    /// The `  ⎿  Waiting…` line under `● Bash(…)`.
    fn set_tool_status(&mut self, item: usize, status: &str) {
        if let Some(line) = self.items.get_mut(item).and_then(|i| i.get_mut(1)) {
            *line = format!("{ELBOW}{status}");
        }
    }

    fn reject(&mut self) {
        if let Some(t) = self.turn.take() {
            self.set_tool_status(t.tool_item, INTERRUPTED);
        }
        self.record(
            "user",
            json!({"role": "user", "content": [{"type": "tool_result",
                "tool_use_id": "toolu_fake_1", "is_error": true,
                "content": "The user doesn't want to proceed with this tool use."}]}),
        );
        self.record_user_text("[Request interrupted by user for tool use]");
        self.end_interrupted();
    }

    /// Escape / Ctrl-C while busy.
    fn interrupt(&mut self) {
        let Some(t) = self.turn.take() else {
            self.mode = Mode::Idle;
            return;
        };
        if t.tokens == 0 {
            // Nothing arrived yet: the prompt goes back into the input line.
            self.items.pop();
            self.input = if self.input.is_empty() {
                t.prompt
            } else {
                format!("{}\n{}", t.prompt, self.input)
            };
        } else {
            let partial = t.seg.words[..t.seg.shown].concat();
            let mut item = Vec::new();
            if !partial.trim().is_empty() {
                item = bullet_lines(&partial);
                self.record_assistant(json!([{"type": "text", "text": partial.trim_end()}]));
            }
            item.push(format!("{ELBOW}{INTERRUPTED}"));
            self.items.push(item);
            self.record_user_text("[Request interrupted by user]");
        }
        self.end_interrupted();
    }

    fn end_interrupted(&mut self) {
        self.flush_user();
        self.permission_since = None;
        let queued: Vec<String> = self.queue.drain(..).collect();
        if !queued.is_empty() {
            let mut parts = vec![std::mem::take(&mut self.input)];
            parts.extend(queued);
            parts.retain(|p| !p.is_empty());
            self.input = parts.join("\n");
        }
        self.mode = Mode::Idle;
    }

    // ------------------------------------------------------------ keys

    fn key(&mut self, key: Key) {
        match self.mode {
            Mode::Trust(sel) => match choice(key, sel, 2) {
                Choice::Move(s) => self.mode = Mode::Trust(s),
                Choice::Pick(0) => self.next_dialog(),
                Choice::Pick(_) | Choice::Cancel => self.exit = Some(1),
                Choice::None => {}
            },
            Mode::ApiKey(sel) => match choice(key, sel, 2) {
                Choice::Move(s) => self.mode = Mode::ApiKey(s),
                Choice::Pick(0) => self.next_dialog(),
                Choice::Pick(_) | Choice::Cancel => {
                    self.exit_message = Some("Not logged in · Please run /login".to_string());
                    self.exit = Some(1);
                }
                Choice::None => {}
            },
            Mode::Permission(sel) => match choice(key, sel, 3) {
                Choice::Move(s) => self.mode = Mode::Permission(s),
                Choice::Pick(p @ (0 | 1)) => self.approve(p == 1),
                Choice::Pick(_) | Choice::Cancel => self.reject(),
                Choice::None => {}
            },
            Mode::Starting(_) | Mode::Idle | Mode::Busy => self.edit_key(key),
        }
    }

    fn edit_key(&mut self, key: Key) {
        let busy = self.mode == Mode::Busy;
        match key {
            Key::Char(c) => self.input.push(c),
            Key::Newline => self.input.push('\n'),
            Key::Paste(text) => self.input.push_str(&text),
            Key::Backspace => {
                self.input.pop();
            }
            Key::CtrlU => self.input.clear(),
            Key::Up | Key::Down | Key::PasteStart => {}
            Key::Esc if busy => self.interrupt(),
            Key::Esc => {}
            Key::CtrlC if busy => self.interrupt(),
            Key::CtrlC => {
                let now = Instant::now();
                if self.ctrl_c_at.is_some_and(|t| now - t < CTRL_C_WINDOW) {
                    self.exit = Some(0);
                } else {
                    self.ctrl_c_at = Some(now);
                    self.input.clear();
                }
            }
            Key::Enter => {
                if self.input.trim().is_empty() {
                    return;
                }
                let text = std::mem::take(&mut self.input);
                if self.mode == Mode::Idle {
                    self.submit(text);
                } else {
                    self.queue.push_back(text);
                }
            }
        }
    }

    // ------------------------------------------------------------ drawing

    fn frame(&self, cols: usize) -> Vec<String> {
        let rule = "─".repeat(cols);
        match self.mode {
            Mode::Trust(sel) => {
                let mut l = vec![String::new(), rule, " Accessing workspace:".into()];
                l.extend([String::new(), format!(" {}", self.cwd), String::new()]);
                l.push(" Quick safety check: Is this a project you created or one you trust? (Like your own code, a well-known open source".into());
                l.push(" project, or work from your team). If not, take a moment to review what's in this folder first.".into());
                l.push(String::new());
                l.push(" Claude Code'll be able to read, edit, and execute files here.".into());
                l.extend([String::new(), " Security guide".into(), String::new()]);
                l.extend(options(" ", sel, &["Yes, I trust this folder", "No, exit"]));
                l.extend([String::new(), " Enter to confirm · Esc to cancel".into()]);
                return l;
            }
            Mode::ApiKey(sel) => {
                let mut l = vec![String::new(), rule];
                l.push("  Detected a custom API key in your environment".into());
                l.extend([String::new(), "  ANTHROPIC_API_KEY: sk-ant-...".into()]);
                l.extend([String::new(), "  Do you want to use this API key?".into()]);
                l.push(String::new());
                l.extend(options("  ", sel, &["Yes", "No (recommended)"]));
                l.extend([String::new(), "  Enter to confirm · Esc to cancel".into()]);
                return l;
            }
            _ => {}
        }
        let mut l = vec![
            format!(" ▐▛███▜▌   Claude Code v{VERSION}"),
            "▝▜█████▛▘  Opus 4.8 (1M context) · API Usage Billing".to_string(),
            format!("  ▘▘ ▝▝    {}", self.cwd),
        ];
        if matches!(self.mode, Mode::Starting(_)) {
            return l;
        }
        l.push(String::new());
        for item in self.items.iter().chain(self.live_items().iter()) {
            l.push(String::new());
            l.extend(item.iter().cloned());
        }
        l.push(String::new());
        l.push(rule.clone());
        if let Mode::Permission(sel) = self.mode {
            l.extend([" Bash command".into(), String::new()]);
            l.extend([format!("   {TOOL_COMMAND}"), "   Mock tool call".into()]);
            l.extend([String::new(), " Do you want to proceed?".into()]);
            let folder = self.cwd.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
            let always = format!("Yes, and always allow access to {folder}/ from this project");
            l.extend(options(" ", sel, &["Yes", &always, "No"]));
            l.push(String::new());
            l.push(" Esc to cancel · Tab to amend · ctrl+e to explain".into());
            return l;
        }
        let input = if self.input.is_empty() && !self.queue.is_empty() {
            "Press up to edit queued messages"
        } else {
            &self.input
        };
        l.extend(indented(input, "❯\u{a0}").into_iter().map(|s| {
            if s == "❯" {
                "❯\u{a0}".to_string()
            } else {
                s
            }
        }));
        l.push(rule);
        let ctrl_c = self.ctrl_c_at.is_some_and(|t| t.elapsed() < CTRL_C_WINDOW);
        let footer = if ctrl_c {
            "  Press Ctrl-C again to exit"
        } else if self.mode == Mode::Busy {
            "  esc to interrupt · ← for agents"
        } else if self.input.is_empty() {
            "  ? for shortcuts · ← for agents"
        } else {
            ""
        };
        let right = if self.logged_out {
            "Not logged in · Run /login"
        } else {
            "● high · /effort"
        };
        let width = cols.saturating_sub(2 + right.chars().count());
        if ctrl_c || footer.chars().count() + 1 > width {
            l.push(footer.to_string());
        } else {
            let pad = width - footer.chars().count();
            l.push(format!("{footer}{}{right}", " ".repeat(pad)));
        }
        l
    }

    /// The streaming `●` bullet and the spinner (with queued messages).
    fn live_items(&self) -> Vec<Vec<String>> {
        let Some(t) = self.turn.as_ref().filter(|_| self.mode == Mode::Busy) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if t.seg.shown > 0 {
            // Like the real TUI: only completed lines are drawn while streaming.
            let text = t.seg.words[..t.seg.shown].concat();
            out.push(match text.rfind('\n') {
                Some(end) => bullet_lines(&text[..end]),
                None => vec!["●".to_string()],
            });
        }
        let elapsed = t.started.elapsed();
        let glyph = GLYPHS[(elapsed.as_millis() / 100) as usize % GLYPHS.len()];
        let mut spinner = format!("{glyph} {}…", t.verb);
        if t.tokens > 0 {
            let secs = elapsed.as_secs();
            spinner.push_str(&format!(" ({secs}s · ↓ {} tokens)", t.tokens));
        }
        let mut item = vec![spinner];
        item.extend(
            self.queue
                .iter()
                .map(|q| format!("  ❯ {}", q.replace('\n', " "))),
        );
        out.push(item);
        out
    }

    fn draw(&mut self) {
        let (cols, rows) = term_size();
        let mut lines: Vec<String> = Vec::new();
        for line in self.frame(cols) {
            let chars: Vec<char> = line.chars().collect();
            if chars.is_empty() {
                lines.push(String::new());
            }
            lines.extend(chars.chunks(cols).map(|c| c.iter().collect::<String>()));
        }
        let skip = lines.len().saturating_sub(rows);
        let frame = lines[skip..].join("\r\n");
        if frame != self.last_frame {
            write_out(&format!("\x1b[H\x1b[2J{frame}"));
            self.last_frame = frame;
        }
    }

    // ------------------------------------------------------------ main loop

    fn run(&mut self) -> i32 {
        let mut parser = KeyParser::default();
        let mut esc_deadline: Option<Instant> = None;
        let mut buf = [0u8; 4096];
        loop {
            let sig = STOP_SIGNAL.load(Ordering::SeqCst);
            if sig != 0 {
                return 128 + sig;
            }
            if WINCH.swap(false, Ordering::SeqCst) {
                self.last_frame.clear();
            }
            let now = Instant::now();
            self.tick(now);
            if let Some(code) = self.exit {
                return code;
            }
            self.draw();
            let timed = matches!(self.mode, Mode::Starting(_) | Mode::Busy)
                || self
                    .ctrl_c_at
                    .is_some_and(|t| t.elapsed() < CTRL_C_WINDOW * 2);
            let mut timeout: i32 = if timed { 25 } else { 500 };
            if let Some(d) = esc_deadline {
                timeout = timeout.min(d.saturating_duration_since(now).as_millis() as i32 + 1);
            }
            let mut pfd = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, timeout) };
            let keys = if n > 0 {
                // SAFETY: reads at most buf.len() bytes into buf.
                let r = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
                if r == 0 {
                    return 129; // terminal hung up
                }
                if r < 0 {
                    let err = std::io::Error::last_os_error().raw_os_error();
                    if err == Some(libc::EINTR) || err == Some(libc::EAGAIN) {
                        continue;
                    }
                    return 129;
                }
                let keys = parser.feed(&buf[..r as usize]);
                esc_deadline = parser.pending().then(|| Instant::now() + ESC_TIMEOUT);
                keys
            } else if esc_deadline.is_some_and(|d| Instant::now() >= d) {
                esc_deadline = None;
                parser.flush()
            } else {
                continue;
            };
            for key in keys {
                if self.exit.is_none() {
                    self.key(key);
                }
            }
        }
    }
}

enum Choice {
    None,
    Move(usize),
    Pick(usize),
    Cancel,
}

/// Keys in a numbered menu: arrows move, digits pick, Enter picks `sel`.
fn choice(key: Key, sel: usize, n: usize) -> Choice {
    match key {
        Key::Up => Choice::Move(sel.saturating_sub(1)),
        Key::Down => Choice::Move((sel + 1).min(n - 1)),
        Key::Enter => Choice::Pick(sel),
        Key::Esc | Key::CtrlC => Choice::Cancel,
        Key::Char(c) => match c.to_digit(10) {
            Some(d) if d >= 1 && (d as usize) <= n => Choice::Pick(d as usize - 1),
            _ => Choice::None,
        },
        _ => Choice::None,
    }
}

/// ` ❯ 1. Yes` / `   2. No` with the marker on the selected line.
fn options(indent: &str, sel: usize, labels: &[&str]) -> Vec<String> {
    labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let mark = if i == sel { "❯" } else { " " };
            format!("{indent}{mark} {}. {label}", i + 1)
        })
        .collect()
}

// ---------------------------------------------------------------- terminal

fn enter_raw_mode() -> Option<libc::termios> {
    // SAFETY: termios is plain data; tcgetattr/tcsetattr only touch it.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            return None;
        }
        let orig = t;
        libc::cfmakeraw(&mut t);
        libc::tcsetattr(0, libc::TCSANOW, &t);
        Some(orig)
    }
}

fn restore_terminal(orig: Option<libc::termios>) {
    write_out("\x1b[?2004l");
    if let Some(t) = orig {
        // SAFETY: restores the attributes read by enter_raw_mode.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
    }
}

fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGWINCH, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into atomics; no SA_RESTART so that
        // poll() wakes up with EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

// ---------------------------------------------------------------- main

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1);
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| ".".to_string());
    let home = std::env::var("HOME").unwrap_or_default();
    if let Ok(log) = std::env::var("FAKE_CLAUDE_LOG") {
        let rec = json!({
            "argv": argv, "cwd": cwd, "pid": std::process::id(), "home": home,
            "has_api_key": env_set("ANTHROPIC_API_KEY"),
            "has_oauth_token": env_set("CLAUDE_CODE_OAUTH_TOKEN"),
        });
        append_line(&PathBuf::from(log), &rec.to_string());
    }
    let args = match parse_args(&argv) {
        Ok(Parsed::Help) => {
            print!("{HELP}");
            return;
        }
        Ok(Parsed::Version) => {
            println!("{VERSION} (Claude Code, fake)");
            return;
        }
        Ok(Parsed::Run(a)) => a,
        Err(e) => fail(&e),
    };
    if args.session_id.is_some() && args.resume.is_some() {
        fail(
            "Error: --session-id can only be used with --continue or --resume if \
             --fork-session is also specified.",
        );
    }
    let project = PathBuf::from(&home)
        .join(".claude/projects")
        .join(project_slug(&cwd));
    let mut earlier = None;
    let session_id = if let Some(id) = &args.session_id {
        if uuid::Uuid::parse_str(id).is_err() {
            fail("Error: Invalid session ID. Must be a valid UUID.");
        }
        if project.join(format!("{id}.jsonl")).exists() {
            fail(&format!("Error: Session ID {id} is already in use."));
        }
        id.clone()
    } else if let Some(id) = &args.resume {
        match fs::read_to_string(project.join(format!("{id}.jsonl"))) {
            Ok(text) => earlier = Some(text),
            Err(_) => fail(&format!("No conversation found with session ID: {id}")),
        }
        id.clone()
    } else {
        uuid::Uuid::new_v4().to_string()
    };
    // Accepted (and logged via FAKE_CLAUDE_LOG) but without effect here.
    let _ = (&args.model, &args.append_system_prompt);

    let has_tool = |list: &[String]| list.iter().any(|t| t == "Bash" || t == "Bash(*)");
    let mut dialogs = VecDeque::new();
    let wanted = std::env::var("FAKE_CLAUDE_DIALOGS").unwrap_or_default();
    if wanted.contains("trust") {
        dialogs.push_back(Mode::Trust(0));
    }
    if wanted.contains("apikey") {
        dialogs.push_back(Mode::ApiKey(1));
    }
    let startup = Duration::from_millis(env_ms("FAKE_CLAUDE_STARTUP_MS", 300));
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id());
    let transcript = project.join(format!("{session_id}.jsonl"));
    let hooks = hooks::Hooks::load(
        args.settings.as_deref(),
        &home,
        &cwd,
        json!({"session_id": session_id, "transcript_path": transcript, "cwd": cwd,
               "permission_mode": args.permission_mode.as_deref().unwrap_or("default")}),
    );
    let mut app = App {
        transcript,
        cwd,
        session_id,
        mode: Mode::Starting(Instant::now() + startup),
        dialogs,
        items: Vec::new(),
        input: String::new(),
        queue: args.prompt.clone().into_iter().collect(),
        turn: None,
        ctrl_c_at: None,
        last_uuid: None,
        has_messages: false,
        bash_enabled: !has_tool(&args.disallowed_tools),
        bash_allowed: args.skip_permissions
            || has_tool(&args.allowed_tools)
            || args.permission_mode.as_deref() == Some("bypassPermissions"),
        busy_ms: env_ms("FAKE_CLAUDE_BUSY_MS", 400),
        rng: seed | 1,
        exit: None,
        exit_message: None,
        last_frame: String::new(),
        hooks,
        prompt_id: None,
        pending_user: None,
        logged_out: env_set("FAKE_CLAUDE_LOGGED_OUT"),
        permission_since: None,
        notified: false,
        notify_ms: env_ms("FAKE_CLAUDE_NOTIFY_MS", 6000),
        attempts: Default::default(),
    };
    if let Some(text) = earlier {
        app.load_transcript(&text);
    }

    install_signal_handlers();
    let orig = enter_raw_mode();
    write_out("\x1b[?2004h");
    let code = app.run();
    app.hooks
        .fire("SessionEnd", json!({"reason": "prompt_input_exit"}));
    restore_terminal(orig);
    println!();
    if let Some(msg) = &app.exit_message {
        eprintln!("{msg}");
    }
    if code == 0 && app.has_messages {
        println!("Resume this session with:");
        println!("claude --resume {}", app.session_id);
    }
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
