//! `herd analyze FILE|ID`: what happened in a recording: duration, bytes,
//! inputs, idle and busy time, restarts, the output lines that look like
//! errors and the commands typed.
//!
//! Definitions:
//! - duration: the time of the last event (summed over generations);
//! - bytes out / in: UTF-8 bytes of the `o` / `i` events; inputs: `i` events;
//! - idle time: the stretches without output longer than the threshold,
//!   counted whole (between the start, each output and the end);
//! - busy time: time spent in state `busy` per the `state A -> B` markers;
//!   a generation without state markers counts its duration less idle time;
//! - restarts: `restart:` markers; for a session, also every generation
//!   after the first (the larger of the two, so none is counted twice);
//! - error lines: output lines (escape sequences stripped) containing
//!   `error`, `fatal`, `panic`, `traceback`, `exception` or `failed` in any
//!   case: the first [`MAX_ERROR_LINES`] are listed;
//! - commands: input split at Enter (`\r`, `\n`), escape sequences and
//!   control keys stripped (Backspace deletes, C-u and C-c clear the line),
//!   non-empty ones; the first [`MAX_COMMANDS`] are listed.
//!
//! Here the figures and the report; in `analyze/strip.rs` the terminal text
//! without escape sequences, in `analyze/tests.rs` the tests.

use super::args;
use super::cast::{round_time, Code, Event};
use super::source::{self, Fetch, DEFAULT_SIZE};
use anyhow::{Context, Result};
use herd_actors::{Marker, SessionState};
use serde::Serialize;
use strip::{OutputLine, Stripper, Token};

mod strip;

/// Error lines listed at most.
pub const MAX_ERROR_LINES: usize = 50;
/// Commands listed at most.
pub const MAX_COMMANDS: usize = 1000;
/// Characters kept of one line.
const MAX_LINE_CHARS: usize = 400;
/// What makes a line an error line (matched in lower case).
const ERROR_WORDS: [&str; 6] = [
    "error",
    "fatal",
    "panic",
    "traceback",
    "exception",
    "failed",
];

/// Options of `herd analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// A recording file (.cast, .cast.zst, ttyrec) or a session id (all its generations).
    #[arg(value_name = "FILE|ID")]
    pub target: String,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// A stretch without output longer than this is idle (seconds or e.g. 500ms).
    #[arg(
        long,
        default_value = "1",
        value_name = "S",
        allow_hyphen_values = true
    )]
    pub idle_threshold: String,
}

/// A line of output or input, with when it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// Seconds since the start of its generation's recording.
    pub time: f64,
    /// The generation it belongs to (0 for a file).
    pub generation: u64,
    /// The text, escape sequences stripped.
    pub text: String,
}

/// The figures of a recording (or of all generations of a session).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What was analyzed.
    pub source: String,
    /// Its format, e.g. `asciicast v2 (zstd)`.
    pub format: String,
    /// Generations analyzed.
    pub generations: u64,
    /// Seconds.
    pub duration: f64,
    /// UTF-8 bytes of output.
    pub bytes_out: u64,
    /// UTF-8 bytes of input.
    pub bytes_in: u64,
    /// Input events.
    pub inputs: u64,
    /// The idle threshold used, seconds.
    pub idle_threshold: f64,
    /// Seconds without output in stretches longer than the threshold.
    pub idle_time: f64,
    /// Seconds busy.
    pub busy_time: f64,
    /// `markers`, `estimate` (duration less idle time) or `mixed`.
    pub busy_time_from: String,
    /// Restarts.
    pub restarts: u64,
    /// Markers of any kind.
    pub markers: u64,
    /// Error lines found.
    pub error_lines_total: u64,
    /// The first of them.
    pub error_lines: Vec<Line>,
    /// Commands found.
    pub commands_total: u64,
    /// The first of them.
    pub commands: Vec<Line>,
}

/// The figures of one generation.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    generation: u64,
    duration: f64,
    bytes_out: u64,
    bytes_in: u64,
    inputs: u64,
    idle_time: f64,
    busy_time: f64,
    busy_from_markers: bool,
    restart_markers: u64,
    markers: u64,
    error_lines_total: u64,
    error_lines: Vec<Line>,
    commands_total: u64,
    commands: Vec<Line>,
}

/// Reads one generation's events in order.
pub struct Analyzer {
    g: Generation,
    threshold: f64,
    last_output: f64,
    /// The current state and since when, per the markers.
    state: Option<(SessionState, f64)>,
    out_strip: Stripper,
    out_line: OutputLine,
    in_strip: Stripper,
    command: String,
}

impl Analyzer {
    /// An analyzer of generation `generation`, idle past `threshold` seconds.
    pub fn new(generation: u64, threshold: f64) -> Self {
        Self {
            g: Generation {
                generation,
                ..Default::default()
            },
            threshold,
            last_output: 0.0,
            state: None,
            out_strip: Stripper::default(),
            out_line: OutputLine::default(),
            in_strip: Stripper::default(),
            command: String::new(),
        }
    }

    /// Takes the next event.
    pub fn event(&mut self, e: &Event) {
        let t = e.time;
        self.g.duration = self.g.duration.max(t);
        match &e.code {
            Code::Output => {
                self.g.bytes_out += e.data.len() as u64;
                self.gap(t);
                self.last_output = self.last_output.max(t);
                for c in e.data.chars() {
                    if let Some(tok) = self.out_strip.feed(c) {
                        if let Some((start, text)) = self.out_line.token(tok, t) {
                            self.output_line(start, text);
                        }
                    }
                }
            }
            Code::Input => {
                self.g.bytes_in += e.data.len() as u64;
                self.g.inputs += 1;
                for c in e.data.chars() {
                    if let Some(tok) = self.in_strip.feed(c) {
                        self.input_token(tok, t);
                    }
                }
            }
            Code::Marker => {
                self.g.markers += 1;
                self.marker(&e.data, t);
            }
            Code::Resize | Code::Other(_) => {}
        }
    }

    fn gap(&mut self, t: f64) {
        let gap = t - self.last_output;
        if gap > self.threshold {
            self.g.idle_time += gap;
        }
    }

    fn marker(&mut self, label: &str, t: f64) {
        match Marker::parse(label) {
            Some(Marker::Restart { .. }) => self.g.restart_markers += 1,
            Some(Marker::State { from, to, .. }) => {
                self.g.busy_from_markers = true;
                let (current, since) = self.state.take().unwrap_or((from, 0.0));
                if current == SessionState::Busy {
                    self.g.busy_time += (t - since).max(0.0);
                }
                self.state = Some((to, t));
            }
            Some(Marker::Exit { .. } | Marker::Gap { .. } | Marker::Truncated { .. }) | None => {}
        }
    }

    fn output_line(&mut self, time: f64, text: String) {
        let lower = text.to_lowercase();
        if !ERROR_WORDS.iter().any(|w| lower.contains(w)) {
            return;
        }
        self.g.error_lines_total += 1;
        if self.g.error_lines.len() < MAX_ERROR_LINES {
            self.g.error_lines.push(Line {
                time: round_time(time),
                generation: self.g.generation,
                text,
            });
        }
    }

    fn input_token(&mut self, tok: Token, t: f64) {
        match tok {
            Token::Char(c) if self.command.chars().count() < MAX_LINE_CHARS => {
                self.command.push(c);
            }
            Token::Control('\r' | '\n') => {
                let text = self.command.trim().to_string();
                self.command.clear();
                if text.is_empty() {
                    return;
                }
                self.g.commands_total += 1;
                if self.g.commands.len() < MAX_COMMANDS {
                    self.g.commands.push(Line {
                        time: round_time(t),
                        generation: self.g.generation,
                        text,
                    });
                }
            }
            Token::Control('\x7f' | '\x08') => {
                self.command.pop();
            }
            Token::Control('\x15' | '\x03') => self.command.clear(),
            _ => {}
        }
    }

    /// The figures, once every event was taken.
    pub fn finish(mut self) -> Generation {
        let end = self.g.duration;
        self.gap(end);
        if let Some((text, start)) = self.out_line.finish() {
            self.output_line(start, text);
        }
        if let Some((state, since)) = self.state.take() {
            if state == SessionState::Busy {
                self.g.busy_time += (end - since).max(0.0);
            }
        }
        if !self.g.busy_from_markers {
            self.g.busy_time = (self.g.duration - self.g.idle_time).max(0.0);
        }
        self.g
    }
}

impl Report {
    /// Adds up generations. `session` counts a generation after the first as
    /// a restart even without a marker.
    pub fn combine(
        source: String,
        format: String,
        threshold: f64,
        gens: Vec<Generation>,
        session: bool,
    ) -> Self {
        let n = gens.len() as u64;
        let sum = |f: fn(&Generation) -> f64| round_time(gens.iter().map(f).sum());
        let count = |f: fn(&Generation) -> u64| gens.iter().map(f).sum::<u64>();
        let with_markers = gens.iter().filter(|g| g.busy_from_markers).count();
        let busy_time_from = match with_markers {
            0 => "estimate",
            m if m == gens.len() => "markers",
            _ => "mixed",
        };
        let restart_markers = count(|g| g.restart_markers);
        let restarts = if session {
            restart_markers.max(n.saturating_sub(1))
        } else {
            restart_markers
        };
        let mut error_lines: Vec<Line> = gens.iter().flat_map(|g| g.error_lines.clone()).collect();
        error_lines.truncate(MAX_ERROR_LINES);
        let mut commands: Vec<Line> = gens.iter().flat_map(|g| g.commands.clone()).collect();
        commands.truncate(MAX_COMMANDS);
        Report {
            source,
            format,
            generations: n,
            duration: sum(|g| g.duration),
            bytes_out: count(|g| g.bytes_out),
            bytes_in: count(|g| g.bytes_in),
            inputs: count(|g| g.inputs),
            idle_threshold: threshold,
            idle_time: sum(|g| g.idle_time),
            busy_time: sum(|g| g.busy_time),
            busy_time_from: busy_time_from.to_string(),
            restarts,
            markers: count(|g| g.markers),
            error_lines_total: count(|g| g.error_lines_total),
            error_lines,
            commands_total: count(|g| g.commands_total),
            commands,
        }
    }

    /// Aligned key/value lines and short lists, for people.
    pub fn render(&self) -> String {
        let secs = |s: f64| format!("{s:.3}s");
        let busy_note = match self.busy_time_from.as_str() {
            "markers" => "from state markers",
            "estimate" => "duration less idle time: no state markers",
            _ => "state markers where recorded, else duration less idle time",
        };
        let rows = [
            ("source", self.source.clone()),
            ("format", self.format.clone()),
            ("generations", self.generations.to_string()),
            ("duration", secs(self.duration)),
            ("bytes out", self.bytes_out.to_string()),
            ("bytes in", self.bytes_in.to_string()),
            ("inputs", self.inputs.to_string()),
            (
                "idle time",
                format!(
                    "{} (no output for over {})",
                    secs(self.idle_time),
                    secs(self.idle_threshold)
                ),
            ),
            (
                "busy time",
                format!("{} ({busy_note})", secs(self.busy_time)),
            ),
            ("restarts", self.restarts.to_string()),
            ("error lines", self.error_lines_total.to_string()),
            ("commands", self.commands_total.to_string()),
        ];
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            out.push_str(&format!("{k:<w$}  {v}\n"));
        }
        let multi = self.generations > 1;
        let list = |out: &mut String, title: &str, lines: &[Line], total: u64| {
            if lines.is_empty() {
                return;
            }
            out.push_str(&format!("\n{title}:\n"));
            const SHOWN: usize = 10;
            for l in lines.iter().take(SHOWN) {
                let gen = if multi {
                    format!("gen {} ", l.generation)
                } else {
                    String::new()
                };
                out.push_str(&format!("  {gen}{:>10}  {}\n", secs(l.time), l.text));
            }
            if total as usize > SHOWN {
                out.push_str(&format!(
                    "  ... {} more (--json lists up to {})\n",
                    total as usize - SHOWN,
                    lines.len()
                ));
            }
        };
        list(
            &mut out,
            "error lines",
            &self.error_lines,
            self.error_lines_total,
        );
        list(&mut out, "commands", &self.commands, self.commands_total);
        out
    }
}

/// Analyzes every event of `events` as generation `generation`.
pub fn analyze_events<I>(events: I, generation: u64, threshold: f64) -> Result<Generation>
where
    I: IntoIterator<Item = Result<Event>>,
{
    let mut a = Analyzer::new(generation, threshold);
    for e in events {
        a.event(&e?);
    }
    Ok(a.finish())
}

/// Runs `herd analyze`.
pub async fn run(client: &impl Fetch, a: AnalyzeArgs) -> Result<()> {
    let threshold = args::seconds("--idle-threshold", &a.idle_threshold, false)?;
    let report = match source::Target::parse(&a.target) {
        source::Target::File(path) => {
            let rec = source::Recording::open(&path, DEFAULT_SIZE)?;
            let name = path.display().to_string();
            let format = rec.describe();
            let g = tokio::task::spawn_blocking(move || analyze_events(rec, 0, threshold))
                .await
                .context("the analysis stopped")?
                .with_context(|| format!("cannot read {name}"))?;
            Report::combine(name, format, threshold, vec![g], false)
        }
        source::Target::Session(id) => {
            let gens = client.generations(&id).await?;
            if gens.is_empty() {
                anyhow::bail!("session {id} has no recording");
            }
            let format = if gens.iter().any(|g| g.compressed) {
                "asciicast v2 (zstd)"
            } else {
                "asciicast v2"
            };
            let mut out = vec![];
            for gen in gens.iter().map(|g| g.generation) {
                let opened = source::open(client, &id, Some(gen), DEFAULT_SIZE).await?;
                let recording = opened.recording;
                let g =
                    tokio::task::spawn_blocking(move || analyze_events(recording, gen, threshold))
                        .await
                        .context("the analysis stopped")?
                        .with_context(|| format!("reading generation {gen} of session {id}"))?;
                out.push(g);
            }
            Report::combine(format!("session {id}"), format.into(), threshold, out, true)
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        );
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
