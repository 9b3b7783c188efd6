//! The shell profile: bash or zsh, started with startup files that make it
//! print OSC 133 prompt marks. Ready at the prompt, busy while a command
//! runs; a message's reply is exactly the command's output, with its exit
//! status. A shell that cannot be marked (another program, `bash -c`, a
//! login shell) behaves as the generic profile, and says so in the log.
//!
//! - [`rc`]: the startup files and the command line that reads them;
//! - [`marks`]: the marks read back out of the output.

pub(crate) mod marks;
pub(crate) mod rc;

use super::generic::Generic;
use super::{Ctx, Effect, Effects, Launch, Strategy};
use crate::queue::{self, Outcome};
use crate::state::SessionState::{Busy, Ready};
use bytes::Bytes;
use marks::{CommandTracker, ShellEvent};

/// The shell strategy.
#[derive(Default)]
pub(crate) struct Shell {
    /// The current child was started with herd's startup files.
    marked: bool,
    /// A mark was seen from the current child: from then on, marks decide.
    seen_mark: bool,
    /// Follows the marks of the current child.
    tracker: CommandTracker,
    /// A message was written and its command has not finished yet.
    awaiting: bool,
    /// What an unmarked shell (or one whose marks never come) does.
    fallback: Generic,
}

impl Strategy for Shell {
    fn prepare(&mut self, launch: &mut Launch) {
        let dir = launch.runtime_dir.join("shell");
        self.marked = match rc::prepare(&launch.argv, &mut launch.env, &dir) {
            Ok(rc::Launch::Marked { argv, .. }) => {
                launch.argv = argv;
                true
            }
            Ok(rc::Launch::Unmarked(why)) => {
                tracing::info!(argv0 = ?launch.argv.first(), ?why, "shell profile: no prompt marks, state from output as for any program");
                false
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "shell profile: cannot write the startup files ({e}); state from output as for any program");
                false
            }
        };
    }

    fn started(&mut self, _cx: &Ctx<'_>, _out: &mut Effects) {
        self.seen_mark = false;
        self.awaiting = false;
        self.tracker = CommandTracker::new();
    }

    fn output(&mut self, cx: &Ctx<'_>, offset: u64, data: &[u8], out: &mut Effects) {
        if !self.marked {
            return self.fallback.output(cx, offset, data, out);
        }
        for event in self.tracker.feed(offset, data) {
            self.seen_mark = true;
            match event {
                ShellEvent::Running { .. } => {
                    out.push(Effect::Go(Busy, "shell: command started".into()))
                }
                ShellEvent::Finished {
                    output_start,
                    output_end,
                    exit,
                } => {
                    if std::mem::take(&mut self.awaiting) && cx.in_flight() {
                        let len = output_end.saturating_sub(output_start) as usize;
                        let raw = cx.handle.output(output_start, len);
                        out.push(Effect::Complete(Outcome {
                            exit_code: exit,
                            ..Outcome::done(queue::clean_text(&raw.data))
                        }));
                    }
                }
                ShellEvent::AtPrompt => {
                    // A message that ran no command (a comment, an empty line).
                    if std::mem::take(&mut self.awaiting) && cx.in_flight() {
                        out.push(Effect::Complete(Outcome::done(String::new())));
                    }
                    out.push(Effect::Go(Ready, "shell: prompt".into()));
                }
            }
        }
    }

    fn quiet(&mut self, cx: &Ctx<'_>, out: &mut Effects) {
        // Until a mark shows that the startup files took, quiet means ready
        // as for any program (a shell whose rc failed still becomes usable).
        if !self.marked || !self.seen_mark {
            self.fallback.quiet(cx, out);
        }
    }

    fn deliver(&mut self, cx: &Ctx<'_>, text: &str, out: &mut Effects) -> Bytes {
        self.awaiting = self.marked && self.seen_mark;
        if !self.awaiting {
            return self.fallback.deliver(cx, text, out);
        }
        out.push(Effect::Go(Busy, "message delivered".into()));
        Bytes::from(queue::payload(text, cx.bracketed_paste()))
    }
}
