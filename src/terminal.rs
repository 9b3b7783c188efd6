//! The local terminal of a CLI command (`attach`, `replay`): raw mode that
//! is always undone.

use anyhow::{Context, Result};

/// How raw the terminal goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Everything raw: bytes reach the screen as they are (attach: the
    /// session's terminal does its own output processing).
    Raw,
    /// Raw input, but output processing kept, so a lone `\n` still starts a
    /// line at the left (replay of recordings).
    Processed,
}

/// Raw mode on stdin while it lives; the saved modes come back when it is
/// dropped, also on error and on panic.
pub struct RawMode {
    saved: libc::termios,
}

/// True if standard input is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

impl RawMode {
    /// Raw mode if stdin is a terminal, else `None`.
    pub fn enable(output: Output) -> Result<Option<Self>> {
        let fd = libc::STDIN_FILENO;
        if !stdin_is_tty() {
            return Ok(None);
        }
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open; saved is a valid termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error()).context("reading the terminal's modes");
        }
        let mut raw = saved;
        // SAFETY: raw is a valid termios.
        unsafe { libc::cfmakeraw(&mut raw) };
        if output == Output::Processed {
            raw.c_oflag = saved.c_oflag;
        }
        // SAFETY: fd is open; raw is a valid termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("switching the terminal to raw mode");
        }
        Ok(Some(Self { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the modes read from the same descriptor.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, &self.saved) };
    }
}
