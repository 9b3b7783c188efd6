//! OSC 133 semantic prompt marks read back out of PTY output.
//!
//! The marks (FinalTerm's, also used by kitty, WezTerm and iTerm2) are OSC
//! sequences, `ESC ] 133 ; <letter> [; params] BEL` (or `ESC \` instead of BEL):
//!
//! - `A`: a prompt starts;
//! - `B`: the prompt ends, the user types from here;
//! - `C`: the command line was read, the command runs (its output follows);
//! - `D;<status>`: the command finished, with that exit status.
//!
//! [`MarkScanner`] finds marks in output fed in arbitrary chunks;
//! [`CommandTracker`] turns them into prompt / running / finished events with
//! the absolute output offsets of each command's output.
//!
//! Both shells print `D` at every prompt, including the first one and after
//! an empty command line, when no command ran. Knowing in the shell whether a
//! command ran needs state set when it starts, which bash's `PS0` cannot do
//! without a subshell or a `DEBUG` trap (both have costs and pitfalls); the
//! tracker instead ignores a `D` that no `C` preceded. `C` is only printed
//! for a command line that is actually run, so the pairing is exact.

#[cfg(test)]
mod tests;

/// A semantic prompt mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// `133;A`: a prompt starts.
    PromptStart,
    /// `133;B`: the prompt ends; input is typed from here.
    PromptEnd,
    /// `133;C`: a command line was read and runs.
    CommandStart,
    /// `133;D[;status]`: the command finished (status if given and numeric).
    CommandEnd(Option<i32>),
}

/// A mark found in the output, with the absolute stream offsets of its
/// sequence (`start` at its `ESC`, `end` just after its terminator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// Offset of the sequence's first byte (its `ESC`).
    pub(crate) start: u64,
    /// Offset just after the sequence's last byte.
    pub(crate) end: u64,
    /// The mark.
    pub(crate) mark: Mark,
}

/// Starts every escape sequence, and ST (`ESC \`).
const ESC: u8 = 0x1b;
/// Ends an OSC (xterm's short form of ST).
const BEL: u8 = 0x07;
/// Cancels any escape sequence in progress (ECMA-48).
const CAN: u8 = 0x18;
/// Cancels any escape sequence in progress, like CAN.
const SUB: u8 = 0x1a;
/// What an OSC payload must start with to be a mark.
const PREFIX: &[u8] = b"133;";
/// Longest mark payload kept; a longer one is dropped (marks are short).
pub(crate) const MAX_PAYLOAD: usize = 128;

/// Where the scanner is in the escape-sequence grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Plain output.
    Ground,
    /// After an `ESC` (at `start`).
    Escape { start: u64 },
    /// Inside an OSC begun at `start`; `mark` while its payload may still be
    /// a `133;`, else it is skipped to its end without being kept.
    Osc { start: u64, mark: bool },
    /// After an `ESC` (at `esc`) inside an OSC: `\` ends it (ST), anything
    /// else aborts it and starts a new sequence.
    OscEscape { start: u64, mark: bool, esc: u64 },
}

/// Finds OSC 133 marks in a byte stream fed in chunks split anywhere.
///
/// Holds at most [`MAX_PAYLOAD`] bytes between chunks. Other OSCs (titles,
/// hyperlinks, clipboard) are skipped without being kept, whatever their
/// length; an OSC is ended by BEL or ST and aborted by CAN, SUB or another
/// escape sequence, as a terminal does. C1 controls (8-bit `OSC`, `ST`) are
/// not recognised: in UTF-8 output those bytes are parts of characters.
#[derive(Debug)]
pub(crate) struct MarkScanner {
    /// Absolute offset of the next byte fed.
    pos: u64,
    state: State,
    payload: Vec<u8>,
}

impl Default for MarkScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl MarkScanner {
    /// A scanner whose first byte fed is at offset 0.
    pub(crate) fn new() -> Self {
        Self::starting_at(0)
    }

    /// A scanner whose first byte fed is at absolute offset `pos`.
    pub(crate) fn starting_at(pos: u64) -> Self {
        Self {
            pos,
            state: State::Ground,
            payload: Vec::new(),
        }
    }

    /// Absolute offset of the next byte to be fed.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Scans the next chunk; returns the marks whose sequences end in it,
    /// in order. A mark begun in an earlier chunk has `start` before this
    /// chunk's first offset.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<Found> {
        let base = self.pos;
        let at = |i: usize| base + i as u64;
        let mut found = Vec::new();
        let mut i = 0;
        while i < chunk.len() {
            match self.state {
                State::Ground => match chunk[i..].iter().position(|&b| b == ESC) {
                    Some(k) => {
                        self.state = State::Escape { start: at(i + k) };
                        i += k + 1;
                    }
                    None => break,
                },
                State::Escape { start } => {
                    let b = chunk[i];
                    i += 1;
                    self.state = match b {
                        b']' => {
                            self.payload.clear();
                            State::Osc { start, mark: true }
                        }
                        ESC => State::Escape { start: at(i - 1) },
                        _ => State::Ground,
                    };
                }
                State::Osc { start, mark: true } => {
                    let b = chunk[i];
                    i += 1;
                    self.state = match b {
                        BEL => {
                            found.extend(self.finish(start, at(i)));
                            State::Ground
                        }
                        ESC => State::OscEscape {
                            start,
                            mark: true,
                            esc: at(i - 1),
                        },
                        CAN | SUB => State::Ground,
                        _ if self.payload.len() == MAX_PAYLOAD => State::Ground,
                        _ => {
                            self.payload.push(b);
                            let n = self.payload.len();
                            if n <= PREFIX.len() && PREFIX[n - 1] != b {
                                State::Osc { start, mark: false }
                            } else {
                                State::Osc { start, mark: true }
                            }
                        }
                    };
                }
                State::Osc { start, mark: false } => {
                    let end = chunk[i..]
                        .iter()
                        .position(|&b| matches!(b, BEL | ESC | CAN | SUB));
                    match end {
                        Some(k) => {
                            i += k + 1;
                            self.state = if chunk[i - 1] == ESC {
                                State::OscEscape {
                                    start,
                                    mark: false,
                                    esc: at(i - 1),
                                }
                            } else {
                                State::Ground
                            };
                        }
                        None => break,
                    }
                }
                State::OscEscape { start, mark, esc } => {
                    if chunk[i] == b'\\' {
                        i += 1;
                        if mark {
                            found.extend(self.finish(start, at(i)));
                        }
                        self.state = State::Ground;
                    } else {
                        // The byte is read again as the one after a new ESC.
                        self.state = State::Escape { start: esc };
                    }
                }
            }
        }
        self.pos = at(chunk.len());
        found
    }

    /// The mark an ended OSC (payload in `self.payload`) stands for, if any.
    fn finish(&mut self, start: u64, end: u64) -> Option<Found> {
        let mark = parse_mark(&self.payload);
        self.payload.clear();
        mark.map(|mark| Found { start, end, mark })
    }
}

/// `133;<letter>[;params]` to a mark; other sub-commands are not marks.
fn parse_mark(payload: &[u8]) -> Option<Mark> {
    let mut fields = payload.strip_prefix(PREFIX)?.split(|&b| b == b';');
    Some(match fields.next()? {
        b"A" => Mark::PromptStart,
        b"B" => Mark::PromptEnd,
        b"C" => Mark::CommandStart,
        b"D" => Mark::CommandEnd(
            fields
                .next()
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse().ok()),
        ),
        _ => return None,
    })
}

/// What a marked shell is doing, as its marks tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShellEvent {
    /// A prompt was printed (`B`): the shell waits for a command line.
    AtPrompt,
    /// A command runs (`C`); its output starts at `output_start`, just after
    /// the mark.
    Running {
        /// Absolute offset of the command's first output byte.
        output_start: u64,
    },
    /// The running command finished (`D` after `C`): its output is exactly
    /// the bytes `output_start..output_end`.
    Finished {
        /// Absolute offset just after the `C` mark.
        output_start: u64,
        /// Absolute offset of the `D` mark.
        output_end: u64,
        /// The exit status the shell reported.
        exit: Option<i32>,
    },
}

/// Follows a marked shell's output and reports prompts and commands.
///
/// A `D` with no `C` since the last `D` (the first prompt, an empty command
/// line, Ctrl-C at the prompt) is no command and gives no
/// [`ShellEvent::Finished`]. Marks are followed as they come: a nested shell
/// that marks its own prompts (a user's terminal integration) is followed
/// too, its `D` ending the most recent `C`.
#[derive(Debug, Default)]
pub(crate) struct CommandTracker {
    scanner: MarkScanner,
    /// Output offset of the running command's first byte.
    running: Option<u64>,
}

impl CommandTracker {
    /// A tracker with no command running.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The running command's output start, if a command runs.
    #[cfg(test)]
    pub(crate) fn running(&self) -> Option<u64> {
        self.running
    }

    /// Feeds the chunk of output that starts at absolute offset `offset`;
    /// returns the events it completes, in order. Chunks should follow one
    /// another; after a gap (or on the first chunk) a sequence split across
    /// it is lost, and scanning restarts at `offset`.
    pub(crate) fn feed(&mut self, offset: u64, chunk: &[u8]) -> Vec<ShellEvent> {
        if offset != self.scanner.position() {
            self.scanner = MarkScanner::starting_at(offset);
        }
        let mut events = Vec::new();
        for found in self.scanner.feed(chunk) {
            match found.mark {
                Mark::PromptStart => {}
                Mark::PromptEnd => events.push(ShellEvent::AtPrompt),
                Mark::CommandStart => {
                    self.running = Some(found.end);
                    events.push(ShellEvent::Running {
                        output_start: found.end,
                    });
                }
                Mark::CommandEnd(exit) => {
                    if let Some(output_start) = self.running.take() {
                        events.push(ShellEvent::Finished {
                            output_start,
                            output_end: found.start,
                            exit,
                        });
                    }
                }
            }
        }
        events
    }
}
