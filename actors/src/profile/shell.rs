//! The shell profile: bash or zsh with OSC 133 prompt marks (wired in next).

use super::{Ctx, Effects, Strategy};
use bytes::Bytes;

/// Placeholder until the marks are wired: behaves like the generic profile.
#[derive(Default)]
pub(crate) struct Shell(super::generic::Generic);

impl Strategy for Shell {
    fn output(&mut self, cx: &Ctx<'_>, offset: u64, data: &[u8], out: &mut Effects) {
        self.0.output(cx, offset, data, out)
    }
    fn quiet(&mut self, cx: &Ctx<'_>, out: &mut Effects) {
        self.0.quiet(cx, out)
    }
    fn deliver(&mut self, cx: &Ctx<'_>, text: &str, out: &mut Effects) -> Bytes {
        self.0.deliver(cx, text, out)
    }
}
