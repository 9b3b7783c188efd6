//! `herd attach ID`: puts the local terminal on a session, over
//! `WS /v1/sessions/{id}/attach` (see `daemon/api/attach.rs` for the protocol).
//!
//! The terminal is switched to raw mode (when stdin is a terminal) so every
//! key goes to the session; C-\ detaches. The session follows the local window
//! size. The terminal's modes are restored on every way out: detach, session
//! end, error, signal or panic.

use crate::client::http::{enc, Client};
use crate::client::output::short_id;
use crate::terminal::{Output, RawMode};
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use herd_actors::SessionInfo;
use herd_actors::{MAX_COLS, MAX_ROWS};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The detach key, C-\ (what tmux and screen users reach for is taken by programs).
pub const DETACH_KEY: u8 = 0x1c;

/// How long the goodbye close frame may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the stdin reader checks whether it should stop.
const STDIN_POLL_MS: i32 = 100;

/// How an attachment ended without error.
enum Outcome {
    /// The user pressed the detach key.
    Detached,
    /// The session reached this final state.
    Ended(String),
}

/// Runs `herd attach ID` until detach or the session's end.
pub async fn run(client: &Client, id: &str) -> Result<()> {
    let info: SessionInfo = client
        .json(Method::GET, &format!("/v1/sessions/{}", enc(id)), None)
        .await?;
    let id8 = short_id(&info.id);
    if info.state.is_final() {
        return Err(crate::client::exit::CliError::error(
            crate::client::exit::Exit::Conflict,
            format!(
                "session {id8} is {} ({}): nothing to attach to; see `herd logs {id8}` or `herd replay {id8}`",
                info.state, info.reason
            ),
        ));
    }
    let size = window_size();
    let query = match size {
        Some((cols, rows)) => format!("?cols={cols}&rows={rows}"),
        None => String::new(),
    };
    let ws = client
        .ws_connect(&format!("/v1/sessions/{}/attach{query}", info.id))
        .await?;
    // Said before the screen changes, on stderr so it never mixes with output.
    eprintln!("attached to {id8}: detach with Ctrl+\\ (C-\\)");
    let (outcome, alt_screen) = {
        let raw = RawMode::enable(Output::Raw)?;
        let screen = AltScreen::enter();
        let alt_screen = screen.is_some();
        (attached(ws, raw.is_some()).await, alt_screen)
        // Drops in reverse order: the screen is left, then the modes are back.
    };
    // Back on the user's screen the cursor is where it was; else start a line.
    let lead = if alt_screen { "" } else { "\n" };
    match outcome? {
        Outcome::Detached => println!("{lead}[detached from {id8}]"),
        Outcome::Ended(state) => println!("{lead}[session {id8} ended: {state}]"),
    }
    Ok(())
}

/// The attached loop: output to stdout, stdin to the session, window size.
async fn attached<S>(ws: S, tty: bool) -> Result<Outcome>
where
    S: futures_util::Stream<Item = Result<Message, WsError>>
        + futures_util::Sink<Message, Error = WsError>
        + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_reader = StopOnDrop(Arc::clone(&stop));
    let mut input = spawn_stdin_reader(stop)?;
    let mut input_open = true;
    let mut winch =
        signal(SignalKind::window_change()).context("listening for window size changes")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let mut ended: Option<String> = None;
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            m = stream.next() => match m {
                Some(Ok(Message::Binary(data))) => {
                    out.write_all(&data).context("writing to the terminal")?;
                    out.flush().context("writing to the terminal")?;
                }
                Some(Ok(Message::Text(text))) => {
                    if let Some(state) = on_control(text.as_str(), tty) {
                        ended = Some(state);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if let Some(state) = ended {
                        return Ok(Outcome::Ended(state));
                    }
                    let why = match frame {
                        Some(f) if f.code != CloseCode::Normal && !f.reason.is_empty() => {
                            f.reason.as_str().to_string()
                        }
                        Some(f) => format!("close code {}", u16::from(f.code)),
                        None => "no reason given".into(),
                    };
                    bail!("the daemon closed the connection: {why}");
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => match ended {
                    Some(state) => return Ok(Outcome::Ended(state)),
                    None => bail!("connection to the daemon lost: {e}"),
                },
                None => match ended {
                    Some(state) => return Ok(Outcome::Ended(state)),
                    None => bail!("connection to the daemon lost"),
                },
            },
            chunk = input.recv(), if input_open => match chunk {
                None => input_open = false,
                Some(data) => {
                    let (keys, detach) = match data.iter().position(|b| *b == DETACH_KEY) {
                        Some(at) => (&data[..at], true),
                        None => (&data[..], false),
                    };
                    if !keys.is_empty() {
                        sink.send(Message::Binary(keys.to_vec().into()))
                            .await
                            .context("sending input to the daemon")?;
                    }
                    if detach {
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(None))).await;
                        return Ok(Outcome::Detached);
                    }
                }
            },
            _ = winch.recv() => {
                if let Some((cols, rows)) = window_size() {
                    let msg = json!({"type": "resize", "cols": cols, "rows": rows});
                    sink.send(Message::Text(msg.to_string().into()))
                        .await
                        .context("sending the window size to the daemon")?;
                }
            }
            _ = term.recv() => bail!("stopped by SIGTERM"),
            _ = hup.recv() => bail!("stopped by SIGHUP (terminal gone)"),
        }
    }
}

/// Acts on a control message; returns the final state on `end`.
fn on_control(text: &str, tty: bool) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    match v["type"].as_str()? {
        "end" => Some(v["state"].as_str().unwrap_or("ended").to_string()),
        "error" => {
            let nl = if tty { "\r\n" } else { "\n" };
            let msg = v["message"].as_str().unwrap_or("unknown error");
            eprint!("{nl}[herd: {msg}]{nl}");
            None
        }
        // hello, state and resync need nothing: a resync's redraw follows as output.
        _ => None,
    }
}

/// Sets the stop flag of the stdin reader when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Reads stdin on a plain thread (not tokio's blocking pool, which would keep
/// the process waiting for a key at exit). It polls so that it stops reading
/// soon after detach, leaving later keys to the shell.
fn spawn_stdin_reader(stop: Arc<AtomicBool>) -> Result<mpsc::Receiver<Vec<u8>>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
    std::thread::Builder::new()
        .name("herd-attach-stdin".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd: libc::STDIN_FILENO,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, count 1.
                let n = unsafe { libc::poll(&mut pfd, 1, STDIN_POLL_MS) };
                if n < 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                if n == 0 || stop.load(Ordering::Relaxed) {
                    continue;
                }
                // SAFETY: reads at most buf.len() bytes into buf.
                let got =
                    unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
                if got < 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                if got == 0 || tx.blocking_send(buf[..got as usize].to_vec()).is_err() {
                    return;
                }
            }
        })
        .context("starting the stdin reader")?;
    Ok(rx)
}

/// The local window size `(cols, rows)` within the session limits, if stdin
/// or stdout is a terminal.
fn window_size() -> Option<(u16, u16)> {
    [libc::STDIN_FILENO, libc::STDOUT_FILENO]
        .into_iter()
        .find_map(|fd| {
            // SAFETY: winsize is plain data; TIOCGWINSZ fills it or fails.
            let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
            // SAFETY: fd is a standard descriptor; ws is a valid winsize.
            let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
            (r == 0 && ws.ws_col > 0 && ws.ws_row > 0)
                .then_some((ws.ws_col.clamp(2, MAX_COLS), ws.ws_row.clamp(1, MAX_ROWS)))
        })
}

/// Switches to the alternate screen.
const ENTER_SCREEN: &str = "\x1b[?1049h";

/// Leaves modes a program may have set on the terminal (hidden cursor, mouse
/// reporting, bracketed paste, application keys, scroll region, colors), then
/// the alternate screen.
const LEAVE_SCREEN: &str = "\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\
                            \x1b[?1l\x1b>\x1b[r\x1b[0m\x1b[?1049l";

/// Writes control sequences to the terminal, ignoring errors (best effort).
fn write_terminal(seq: &str) {
    let mut out = std::io::stdout();
    let _ = out.write_all(seq.as_bytes());
    let _ = out.flush();
}

/// The alternate screen while attached, as tmux does, so the user's screen
/// is back after; left when dropped (also on panic).
struct AltScreen;

impl AltScreen {
    /// Enters the alternate screen if stdout is a terminal.
    fn enter() -> Option<Self> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(libc::STDOUT_FILENO) } != 1 {
            return None;
        }
        write_terminal(ENTER_SCREEN);
        Some(Self)
    }
}

impl Drop for AltScreen {
    fn drop(&mut self) {
        write_terminal(LEAVE_SCREEN);
    }
}
