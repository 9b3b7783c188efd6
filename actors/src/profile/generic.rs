//! The generic profile: any interactive program. Busy from its first output
//! and while output keeps arriving, ready after `quiet_after` of silence; a
//! message's reply is what the program printed between delivery and quiet,
//! without the terminal's echo of the prompt and without the program's next
//! prompt line.

use super::{Ctx, Effect, Effects, Strategy};
use crate::queue::{self, Outcome};
use crate::state::SessionState::{Busy, Ready, Starting};
use bytes::Bytes;

/// Bytes before a delivery read to find the prompt the program showed.
const PROMPT_LOOKBACK: u64 = 512;

/// The reply proper: `output` (since delivery) without the echo of `text`
/// at its start, and without a last, unfinished line equal to the one the
/// program showed before the delivery (`before`'s last line: its prompt).
fn reply(before: &str, output: &str, text: &str) -> String {
    let mut rest = output;
    for line in text.lines() {
        let trimmed = line.trim_end();
        match rest.split_once('\n') {
            Some((first, tail)) if !trimmed.is_empty() && first.trim_end().ends_with(trimmed) => {
                rest = tail
            }
            _ => break,
        }
    }
    let prompt = before.rsplit('\n').next().unwrap_or("");
    if !prompt.trim().is_empty() {
        if let Some(body) = rest.strip_suffix(prompt) {
            if body.is_empty() || body.ends_with('\n') {
                rest = body;
            }
        }
    }
    rest.to_string()
}

/// The generic strategy: it keeps no state of its own.
#[derive(Default)]
pub(crate) struct Generic;

impl Strategy for Generic {
    fn output(&mut self, cx: &Ctx<'_>, _offset: u64, _data: &[u8], out: &mut Effects) {
        // The session watches for quiet after every output; what moves here
        // is only the start of a burst.
        if matches!(cx.state, Starting | Ready) {
            out.push(Effect::Go(Busy, "output".into()));
        }
    }

    fn quiet(&mut self, cx: &Ctx<'_>, out: &mut Effects) {
        if !matches!(cx.state, Starting | Busy) {
            return;
        }
        out.push(Effect::Go(Ready, "output quiet".into()));
        if let Some(start) = cx.reply_start() {
            let raw = cx.handle.output(start, usize::MAX);
            let from = start.saturating_sub(PROMPT_LOOKBACK);
            let before = cx.handle.output(from, (start - from) as usize);
            let text = crate::handle::lock(&cx.handle.queue)
                .in_flight()
                .map(|m| m.text.clone())
                .unwrap_or_default();
            out.push(Effect::Complete(Outcome::done(reply(
                &queue::clean_text(&before.data),
                &queue::clean_text(&raw.data),
                &text,
            ))));
        }
    }

    fn deliver(&mut self, cx: &Ctx<'_>, text: &str, out: &mut Effects) -> Bytes {
        // Busy from the moment the prompt is written: the answer may start silently.
        out.push(Effect::Go(Busy, "message delivered".into()));
        Bytes::from(queue::payload(text, cx.bracketed_paste()))
    }
}

#[cfg(test)]
mod tests {
    use super::reply;

    #[test]
    fn reply_drops_the_echo_and_the_next_prompt() {
        assert_eq!(reply("$ ", "echo hi\nhi\n$ ", "echo hi"), "hi\n");
        assert_eq!(reply(">>> ", "1+1\n2\n>>> ", "1+1"), "2\n");
        // Multi-line text: each echoed line goes.
        assert_eq!(reply("$ ", "a\n> b\nout\n$ ", "a\nb"), "out\n");
        // No prompt known, or a last line that is not the prompt: kept.
        assert_eq!(reply("", "x\nresult", "x"), "result");
        assert_eq!(reply("$ ", "x\nDone", "x"), "Done");
        // Output that does not start with the echo is left whole.
        assert_eq!(reply("$ ", "other\n", "x"), "other\n");
    }
}
