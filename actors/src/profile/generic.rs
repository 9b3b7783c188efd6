//! The generic profile: any interactive program. Busy from its first output
//! and while output keeps arriving, ready after `quiet_after` of silence; a
//! message's reply is what the program printed between delivery and quiet.

use super::{Ctx, Effect, Effects, Strategy};
use crate::queue::{self, Outcome};
use crate::state::SessionState::{Busy, Ready, Starting};
use bytes::Bytes;

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
            out.push(Effect::Complete(Outcome::done(queue::clean_text(
                &raw.data,
            ))));
        }
    }

    fn deliver(&mut self, cx: &Ctx<'_>, text: &str, out: &mut Effects) -> Bytes {
        // Busy from the moment the prompt is written: the answer may start silently.
        out.push(Effect::Go(Busy, "message delivered".into()));
        Bytes::from(queue::payload(text, cx.bracketed_paste()))
    }
}
