//! `herd top`: a live view of the fleet in the terminal.
//!
//! - [`model`]: the fleet, filter, sort, selection and keys, without a terminal;
//! - [`view`]: draws the model with ratatui.
//!
//! The list (with each screen's last line) and the daemon's figures are
//! polled every [`REFRESH`]: one request each for the whole fleet, never one
//! per session. State changes arrive in between over `WS /v1/events`. The
//! terminal is restored on every way out: `q`, an error, SIGTERM/SIGHUP, a
//! panic, and around `attach`.

pub mod model;
pub mod view;

#[cfg(test)]
mod tests;

use crate::client::http::{session_path, Client};
use crate::client::output::short_id;
use crate::daemon::api::stats::Stats;
use anyhow::{bail, Context, Result};
use crossterm::event::{Event as TermEvent, KeyEventKind};
use crossterm::{cursor, execute, terminal};
use futures_util::StreamExt;
use herd_actors::{Event, SessionInfo};
use model::{Action, Model};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use reqwest::Method;
use serde_json::{json, Value};
use std::future::Future;
use std::io::Stdout;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// How often the list and the figures are fetched: at 1,000 sessions a list
/// is about a megabyte, fine every 2 s; events fill the gaps.
const REFRESH: Duration = Duration::from_secs(2);

/// The soonest a list is fetched again when an event or an action asks for
/// one (a new session, a dialog's details): bursts of events never turn
/// into a request each.
const SOONEST: Duration = Duration::from_secs(1);

/// How often the key reader checks whether it should stop.
const KEY_POLL: Duration = Duration::from_millis(50);

/// The longest an action's request may take before the view moves on.
const ACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `herd top` until `q`, Esc, Ctrl-C, SIGTERM or SIGHUP.
pub async fn run(c: &Client) -> Result<()> {
    if !crate::terminal::stdin_is_tty() {
        bail!("herd top needs a terminal (stdin is not one); see `herd ls` or `herd stats`");
    }
    // A first poll before the screen changes: a daemon that is not there
    // is one clear line on the user's screen, not a flash of an empty view.
    let (list, stats) = poll(c).await?;
    let mut model = Model::default();
    model.set_sessions(list);
    model.stats = Some(stats);
    let _hook = PanicHook::install();
    let mut screen = Screen::enter()?;
    let mut keys = KeyReader::start()?;
    let mut events = c.ws_connect("/v1/events").await.ok();
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let mut tick = tokio::time::interval(SOONEST);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fetch: Option<Fetch<'_>> = None;
    let mut last_fetch = Instant::now();
    // Something happened that the next list will show in full.
    let mut wanted = false;
    loop {
        screen
            .terminal
            .draw(|f| view::draw(f, &mut model))
            .context("drawing the screen")?;
        tokio::select! {
            _ = tick.tick() => {
                if fetch.is_none() && (wanted || last_fetch.elapsed() >= REFRESH) {
                    fetch = Some(Box::pin(poll(c)));
                    last_fetch = Instant::now();
                    wanted = false;
                }
                if events.is_none() {
                    events = c.ws_connect("/v1/events").await.ok();
                }
            }
            r = async { fetch.as_mut().expect("guarded").await }, if fetch.is_some() => {
                fetch = None;
                match r {
                    Ok((list, stats)) => {
                        model.set_sessions(list);
                        model.stats = Some(stats);
                        if model.flash.as_deref().is_some_and(|f| f.starts_with("daemon:")) {
                            model.flash = None;
                        }
                    }
                    Err(e) => model.flash = Some(format!("daemon: {e:#}")),
                }
            }
            frame = async { events.as_mut().expect("guarded").next().await }, if events.is_some() => {
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        // A session new to the list, a dialog whose details the
                        // event lacks, or a viewer that fell behind: a fresh list soon.
                        wanted |= !on_event(&mut model, text.as_str());
                    }
                    Some(Ok(_)) => {}
                    // Reconnected at the next tick.
                    Some(Err(_)) | None => events = None,
                }
            }
            k = keys.rx.recv() => match k {
                Some(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => {
                    match model.key(k) {
                        Action::None => {}
                        Action::Quit => break,
                        Action::Attach(id) => {
                            keys.stop();
                            screen.leave();
                            let r = crate::client::attach::run(c, &id.to_string()).await;
                            screen.reenter()?;
                            keys = KeyReader::start()?;
                            model.flash = Some(match r {
                                Ok(()) => format!("back from {}", short_id(&id)),
                                Err(e) => format!("{e:#}"),
                            });
                            wanted = true;
                        }
                        action => {
                            model.flash = Some(act(c, &action).await);
                            wanted = true;
                        }
                    }
                }
                Some(_) => {}
                None => bail!("reading keys from the terminal failed"),
            },
            _ = term.recv() => break,
            _ = hup.recv() => break,
        }
    }
    Ok(())
}

/// One poll in flight: the list and the figures.
type Fetch<'a> = Pin<Box<dyn Future<Output = Result<(Vec<SessionInfo>, Stats)>> + 'a>>;

/// The whole fleet (ended sessions too, with their screens' last lines)
/// and the daemon's figures, in two requests sent together.
async fn poll(c: &Client) -> Result<(Vec<SessionInfo>, Stats)> {
    let (list, stats) = tokio::join!(
        c.list("all=true&last_line=true"),
        c.json::<Stats>(Method::GET, "/v1/stats", None)
    );
    Ok((list?, stats?))
}

/// Applies one frame of `/v1/events`; false if a fresh list is needed.
fn on_event(model: &mut Model, text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return true;
    };
    if v.get("type").and_then(Value::as_str) == Some("lagged") {
        return false;
    }
    match serde_json::from_value::<Event>(v) {
        Ok(e) => model.apply_event(&e) && e.to != herd_actors::SessionState::WaitingInput,
        Err(_) => true,
    }
}

/// Sends an action's request; returns the line to show.
async fn act(c: &Client, action: &Action) -> String {
    let (id, route, body, done) = match action {
        Action::Answer(id, choice) => (
            *id,
            "/answer",
            Some(json!({ "choice": choice })),
            format!("answered {choice}"),
        ),
        Action::Interrupt(id) => (*id, "/interrupt", None, "interrupted".to_string()),
        Action::Restart(id) => (*id, "/restart", None, "restarting".to_string()),
        Action::None | Action::Quit | Action::Attach(_) => return String::new(),
    };
    let path = session_path(&id.to_string(), route);
    let r = tokio::time::timeout(
        ACTION_TIMEOUT,
        c.json::<SessionInfo>(Method::POST, &path, body.as_ref()),
    )
    .await;
    match r {
        Ok(Ok(info)) => format!("{done} {}: {}", short_id(&id), info.state),
        Ok(Err(e)) => format!("{}: {e:#}", short_id(&id)),
        Err(_) => format!("{}: no answer from the daemon in 10s", short_id(&id)),
    }
}

/// Raw mode, the alternate screen and a hidden cursor while it lives; the
/// terminal is given back when it is dropped (also on error and SIGTERM,
/// which end `run`) or left for `attach`.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    on: bool,
}

impl Screen {
    fn enter() -> Result<Self> {
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))
            .context("opening the terminal")?;
        let mut s = Self {
            terminal,
            on: false,
        };
        s.reenter()?;
        Ok(s)
    }

    /// Takes the terminal (again, after `attach`) and redraws from scratch.
    fn reenter(&mut self) -> Result<()> {
        terminal::enable_raw_mode().context("switching the terminal to raw mode")?;
        self.on = true;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .context("switching to the alternate screen")?;
        // Not `Terminal::clear`: it asks the terminal where its cursor is,
        // which a terminal that does not answer turns into an error.
        let size = self
            .terminal
            .size()
            .context("reading the terminal's size")?;
        self.terminal
            .resize(ratatui::layout::Rect::new(0, 0, size.width, size.height))
            .context("clearing the screen")?;
        Ok(())
    }

    /// Gives the terminal back as it was.
    fn leave(&mut self) {
        if std::mem::replace(&mut self.on, false) {
            restore();
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Leaves the alternate screen, shows the cursor, ends raw mode (best effort:
/// also called from the panic hook).
fn restore() {
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
    let _ = terminal::disable_raw_mode();
}

/// A panic hook that restores the terminal before the message is printed,
/// so the message is readable; the previous hook is back when dropped.
struct PanicHook;

impl PanicHook {
    fn install() -> Self {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        Self
    }
}

impl Drop for PanicHook {
    fn drop(&mut self) {
        // The default hook again (ours wraps the previous one, which was
        // the default in the CLI).
        let _ = std::panic::take_hook();
    }
}

/// Reads terminal events on a plain thread; stopped (and joined) before
/// `attach` reads stdin itself, so no key is taken by both.
struct KeyReader {
    rx: mpsc::Receiver<TermEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeyReader {
    fn start() -> Result<Self> {
        let (tx, rx) = mpsc::channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("herd-top-keys".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match crossterm::event::poll(KEY_POLL) {
                        Ok(false) => continue,
                        Ok(true) => {}
                        Err(_) => return,
                    }
                    match crossterm::event::read() {
                        Ok(ev) => {
                            if tx.blocking_send(ev).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            })
            .context("starting the key reader")?;
        Ok(Self {
            rx,
            stop,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for KeyReader {
    fn drop(&mut self) {
        self.stop();
    }
}
