//! `herd replay FILE|ID [--speed X] [--idle-limit S] [--from T]`: plays a
//! recording in this terminal with its timing, scaled by the speed.
//!
//! The playback clock runs on the recording's time with pauses capped at the
//! idle limit (`--idle-limit`, else the header's `idle_time_limit`). When
//! standard input is a terminal it is put in raw mode (restored on every way
//! out, by a guard) and read for keys: space pauses and resumes, Right and
//! Left seek 5 seconds (back: the screen is reset and the output re-rendered
//! from the start, without delay), `q` or C-c quits. Otherwise it just plays.

use super::args;
use super::cast::{Code, Event};
use super::source::{self, Fetch, DEFAULT_SIZE};
use crate::terminal::{Output, RawMode};
use anyhow::{Context, Result};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How far Right and Left seek, seconds of playback.
pub const SEEK_STEP: f64 = 5.0;
/// Resets the terminal before a backward seek re-renders from the start.
const RESET: &[u8] = b"\x1bc";
/// How often the key reader checks whether playback ended.
const KEY_POLL_MS: i32 = 100;

/// Options of `herd replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A recording file (.cast, .cast.zst, ttyrec) or a session id (its newest recording).
    #[arg(value_name = "FILE|ID")]
    pub target: String,
    /// Playback speed: 2 plays twice as fast, 0.5 at half speed.
    #[arg(
        long,
        default_value = "1",
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub speed: String,
    /// Cap every pause at this many seconds (default: the recording's idle_time_limit).
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub idle_limit: Option<String>,
    /// Start at this time of the recording (seconds); earlier output is shown at once.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// For a session id: this generation instead of the newest.
    #[arg(long)]
    pub generation: Option<u64>,
}

/// A key that steers playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Space: pause or resume.
    Pause,
    /// Right arrow: seek forward.
    Forward,
    /// Left arrow: seek back.
    Back,
    /// `q`, C-c, or a signal: stop.
    Quit,
}

/// One piece of output on the playback clock.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    /// When it is shown, seconds of playback (idle-limited, before the speed).
    play: f64,
    /// When it happened in the recording.
    orig: f64,
    data: String,
}

/// The output of a recording on the playback clock.
#[derive(Debug, Default)]
pub struct Timeline {
    frames: Vec<Frame>,
    idle_limit: Option<f64>,
}

impl Timeline {
    /// The output events, pauses capped at `idle_limit`.
    pub fn build<I>(events: I, idle_limit: Option<f64>) -> Result<Self>
    where
        I: IntoIterator<Item = Result<Event>>,
    {
        let mut frames: Vec<Frame> = vec![];
        let (mut last_orig, mut last_play) = (0.0f64, 0.0f64);
        for e in events {
            let e = e?;
            if e.code != Code::Output {
                continue;
            }
            let mut gap = (e.time - last_orig).max(0.0);
            if let Some(limit) = idle_limit {
                gap = gap.min(limit);
            }
            last_play += gap;
            last_orig = last_orig.max(e.time);
            frames.push(Frame {
                play: last_play,
                orig: e.time,
                data: e.data,
            });
        }
        Ok(Self { frames, idle_limit })
    }

    /// Playback time of the last output.
    pub fn end(&self) -> f64 {
        self.frames.last().map_or(0.0, |f| f.play)
    }

    /// The playback time of time `t` of the recording.
    pub fn play_time(&self, t: f64) -> f64 {
        let i = self.frames.partition_point(|f| f.orig <= t);
        let (orig, play) = match i {
            0 => (0.0, 0.0),
            _ => (self.frames[i - 1].orig, self.frames[i - 1].play),
        };
        let mut gap = (t - orig).max(0.0);
        if let Some(limit) = self.idle_limit {
            gap = gap.min(limit);
        }
        let next = self.frames.get(i).map_or(f64::INFINITY, |f| f.play);
        (play + gap).min(next)
    }
}

/// Plays a timeline to `out`, steered by `keys`.
struct Player<'a, W: Write> {
    timeline: &'a Timeline,
    out: W,
    speed: f64,
    /// The first frame not shown yet.
    next: usize,
}

impl<W: Write> Player<'_, W> {
    /// Shows every frame due at playback time `t`, at once.
    fn render_until(&mut self, t: f64) -> std::io::Result<()> {
        let frames = &self.timeline.frames;
        let start = self.next;
        while self.next < frames.len() && frames[self.next].play <= t {
            self.out.write_all(frames[self.next].data.as_bytes())?;
            self.next += 1;
        }
        if self.next > start {
            self.out.flush()?;
        }
        Ok(())
    }

    /// Moves to playback time `t`: forward shows what lies between, back
    /// resets the screen and re-renders from the start.
    fn seek(&mut self, t: f64) -> std::io::Result<()> {
        let shown_past = self
            .next
            .checked_sub(1)
            .is_some_and(|i| self.timeline.frames[i].play > t);
        if shown_past {
            self.out.write_all(RESET)?;
            self.next = 0;
        }
        self.render_until(t)
    }

    /// Plays from playback time `from` until the end or [`Key::Quit`].
    fn play(&mut self, from: f64, keys: &Receiver<Key>) -> std::io::Result<()> {
        let end = self.timeline.end();
        let mut pos = from.min(end);
        let mut clock = Instant::now();
        let mut paused = false;
        loop {
            let now = if paused {
                pos
            } else {
                pos + clock.elapsed().as_secs_f64() * self.speed
            };
            if !paused {
                self.render_until(now)?;
                if self.next >= self.timeline.frames.len() {
                    return Ok(());
                }
            }
            let key = if paused {
                match keys.recv() {
                    Ok(k) => k,
                    Err(_) => return Ok(()),
                }
            } else {
                let due = (self.timeline.frames[self.next].play - now).max(0.0) / self.speed;
                let wait = Duration::from_secs_f64(due.min(3600.0));
                match keys.recv_timeout(wait) {
                    Ok(k) => k,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(wait);
                        continue;
                    }
                }
            };
            let target = match key {
                Key::Quit => return Ok(()),
                Key::Pause => {
                    paused = !paused;
                    pos = now;
                    clock = Instant::now();
                    continue;
                }
                Key::Forward => (now + SEEK_STEP).min(end),
                Key::Back => (now - SEEK_STEP).max(0.0),
            };
            self.seek(target)?;
            pos = target;
            clock = Instant::now();
        }
    }
}

/// Turns the bytes of key presses into [`Key`]s (a sequence may be split
/// between two reads).
#[derive(Debug, Default)]
pub struct KeyParser {
    /// 0: plain; 1: after ESC; 2: inside ESC [ or ESC O.
    state: u8,
}

impl KeyParser {
    /// The keys in `bytes`.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Key> {
        let mut keys = vec![];
        for &b in bytes {
            match (self.state, b) {
                (0, 0x1b) => self.state = 1,
                (0, b' ') => keys.push(Key::Pause),
                (0, b'q' | b'Q' | 0x03 | 0x04) => keys.push(Key::Quit),
                (0, _) => {}
                (1, b'[' | b'O') => self.state = 2,
                (1, 0x1b) => {}
                (1, _) => self.state = 0,
                (_, b'C') => {
                    keys.push(Key::Forward);
                    self.state = 0;
                }
                (_, b'D') => {
                    keys.push(Key::Back);
                    self.state = 0;
                }
                (_, b'0'..=b'9' | b';') => {}
                _ => self.state = 0,
            }
        }
        keys
    }
}

/// Reads keys from standard input until `stop` is set.
fn spawn_key_reader(keys: Sender<Key>, stop: Arc<AtomicBool>) -> Result<()> {
    std::thread::Builder::new()
        .name("herd-replay-keys".into())
        .spawn(move || {
            let mut parser = KeyParser::default();
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                let mut fds = libc::pollfd {
                    fd: libc::STDIN_FILENO,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let ready = unsafe { libc::poll(&mut fds, 1, KEY_POLL_MS) };
                if ready <= 0 {
                    continue;
                }
                // SAFETY: reads into a buffer we own, within its length.
                let n =
                    unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    // End of input: no more keys; playback goes on.
                    return;
                }
                for k in parser.feed(&buf[..n as usize]) {
                    if keys.send(k).is_err() {
                        return;
                    }
                }
            }
        })
        .context("starting the key reader")?;
    Ok(())
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Plays on standard output; keys from the terminal if standard input is one.
fn play_on_terminal(
    timeline: &Timeline,
    speed: f64,
    from: f64,
    keys: Sender<Key>,
    rx: Receiver<Key>,
) -> Result<()> {
    let raw = RawMode::enable(Output::Processed)?;
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(Arc::clone(&stop));
    if raw.is_some() {
        spawn_key_reader(keys, stop)?;
    } else {
        drop(keys);
    }
    let stdout = std::io::stdout();
    let mut player = Player {
        timeline,
        out: stdout.lock(),
        speed,
        next: 0,
    };
    let played = player.play(from, &rx);
    if raw.is_some() {
        // Plain attributes and a visible cursor for the shell that follows.
        let _ = player.out.write_all(b"\x1b[0m\x1b[?25h");
        let _ = player.out.flush();
    }
    match played {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to the terminal"),
    }
}

/// Runs `herd replay`.
pub async fn run(client: &impl Fetch, a: ReplayArgs) -> Result<()> {
    let speed = args::speed(&a.speed)?;
    let idle_limit = a
        .idle_limit
        .as_deref()
        .map(|s| args::seconds("--idle-limit", s, true))
        .transpose()?;
    let from = a
        .from
        .as_deref()
        .map(|s| args::seconds("--from", s, false))
        .transpose()?;
    let opened = source::open(client, &a.target, a.generation, DEFAULT_SIZE).await?;
    let name = opened.name.clone();
    let idle_limit = idle_limit.or(opened
        .recording
        .header
        .idle_time_limit
        .filter(|l| l.is_finite() && *l > 0.0));
    let recording = opened.recording;
    let (tx, rx) = std::sync::mpsc::channel();
    let keys = tx.clone();
    let mut player = tokio::task::spawn_blocking(move || -> Result<()> {
        let timeline = Timeline::build(recording, idle_limit)
            .with_context(|| format!("cannot read {name}"))?;
        let start = from.map_or(0.0, |t| timeline.play_time(t));
        play_on_terminal(&timeline, speed, start, keys, rx)
    });
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    // A signal stops playback through the player, which restores the terminal.
    let result = tokio::select! {
        r = &mut player => r,
        _ = term.recv() => { let _ = tx.send(Key::Quit); player.await }
        _ = hup.recv() => { let _ = tx.send(Key::Quit); player.await }
        _ = int.recv() => { let _ = tx.send(Key::Quit); player.await }
    };
    result.context("playback stopped")?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn timeline(events: &[(f64, &str)], limit: Option<f64>) -> Timeline {
        Timeline::build(events.iter().map(|(t, d)| Ok(Event::output(*t, *d))), limit).unwrap()
    }

    #[test]
    fn idle_limit_caps_pauses() {
        let tl = timeline(&[(1.0, "a"), (61.0, "b"), (61.5, "c")], Some(2.0));
        let plays: Vec<f64> = tl.frames.iter().map(|f| f.play).collect();
        assert_eq!(plays, [1.0, 3.0, 3.5]);
        assert_eq!(tl.end(), 3.5);
        assert_eq!(tl.play_time(30.0), 3.0);
        assert!((tl.play_time(61.2) - 3.2).abs() < 1e-9);
        let plain = timeline(&[(1.0, "a"), (61.0, "b")], None);
        assert_eq!(plain.play_time(30.0), 30.0);
        assert_eq!(plain.end(), 61.0);
    }

    #[test]
    fn input_and_markers_are_not_played() {
        let events = vec![
            Ok(Event::output(0.5, "x")),
            Ok(Event {
                time: 1.0,
                code: Code::Input,
                data: "typed".into(),
            }),
            Ok(Event {
                time: 2.0,
                code: Code::Marker,
                data: "m".into(),
            }),
        ];
        let tl = Timeline::build(events, None).unwrap();
        assert_eq!(tl.frames.len(), 1);
    }

    /// A player at normal speed from the start, writing into a buffer.
    fn player(tl: &Timeline) -> Player<'_, Vec<u8>> {
        Player {
            timeline: tl,
            out: Vec::new(),
            speed: 1.0,
            next: 0,
        }
    }

    #[test]
    fn plays_everything_in_time_and_from_a_later_point_at_once() {
        let tl = timeline(&[(0.0, "a"), (0.1, "b"), (0.2, "c")], None);
        let (_tx, rx) = mpsc::channel();
        let mut p = player(&tl);
        let t = Instant::now();
        p.play(0.0, &rx).unwrap();
        let took = t.elapsed();
        assert_eq!(p.out, b"abc");
        assert!(took >= Duration::from_millis(190), "{took:?}");

        let mut p = player(&tl);
        let t = Instant::now();
        p.play(tl.play_time(5.0), &rx).unwrap();
        assert_eq!(p.out, b"abc");
        assert!(t.elapsed() < Duration::from_millis(150));
    }

    #[test]
    fn keys_pause_seek_and_quit() {
        // Frames a second apart; the keys are queued before playing.
        let tl = timeline(&[(0.0, "0"), (10.0, "1"), (20.0, "2"), (30.0, "3")], None);
        let (tx, rx) = mpsc::channel();
        for k in [Key::Pause, Key::Forward, Key::Forward, Key::Back, Key::Quit] {
            tx.send(k).unwrap();
        }
        let mut p = player(&tl);
        let t = Instant::now();
        p.play(0.0, &rx).unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
        // 0 at once; paused; +5 → 5 (nothing new); +5 → 10 shows "1";
        // -5 → 5: reset, re-render up to 5; quit.
        let mut want = b"01".to_vec();
        want.extend_from_slice(RESET);
        want.extend_from_slice(b"0");
        assert_eq!(
            String::from_utf8_lossy(&p.out),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn parses_keys_split_between_reads() {
        let mut k = KeyParser::default();
        assert_eq!(k.feed(b" q"), [Key::Pause, Key::Quit]);
        assert_eq!(k.feed(b"\x1b[C\x1bOD"), [Key::Forward, Key::Back]);
        assert_eq!(k.feed(b"\x1b"), []);
        assert_eq!(k.feed(b"[1;5C"), [Key::Forward]);
        assert_eq!(k.feed(b"\x1b[Ax\x03"), [Key::Quit]);
    }
}
