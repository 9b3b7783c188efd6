//! The fence: a watchdog process beside a clustered daemon that kills the
//! node's sessions when its lease may have expired and the daemon did not
//! stop them itself — because it is frozen (SIGSTOP, a paused VM), hung, or
//! dead. Without it, a frozen daemon's children would run on while another
//! node runs the same sessions.
//!
//! The daemon starts it as `herd __fence` with a pipe on its stdin and
//! writes one line after each lease renewal and each agent tick:
//! - `arm MS`: the lease may expire in MS milliseconds from now;
//! - `pids PID:START PID:START ...`: the sessions' children (process group
//!   leaders) and their start times, so a reused pid is never touched (the
//!   ones known before that still run are kept);
//! - `add PID:START`: a child that just started (sent as the spawn is
//!   journaled, so no child runs unknown to the fence for long);
//! - `exit`: the daemon stops cleanly; nothing to kill.
//!
//! At the deadline it kills every listed process group (SIGKILL) and waits
//! for the next `arm`. If the pipe closes without `exit` (the daemon died),
//! it keeps the last deadline, kills, and exits.

use herd_actors::process;
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The argument that makes the herd binary the fence.
pub const ARG: &str = "__fence";

/// The daemon's end of the fence.
pub struct Fence {
    pipe: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
    /// What the fence kills before the lease's end, for the kill itself.
    margin: Duration,
}

impl Fence {
    /// Starts the fence process (this binary with [`ARG`]).
    pub fn spawn(margin: Duration) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg(ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Self {
            pipe: Mutex::new(pipe),
            child: Mutex::new(child),
            margin,
        })
    }

    fn send(&self, line: &str) {
        let mut pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipe.as_mut() {
            if let Err(e) = p.write_all(line.as_bytes()).and_then(|_| p.flush()) {
                tracing::error!("the fence process is gone ({e}): a frozen daemon's sessions would outlive its lease");
                *pipe = None;
            }
        }
    }

    /// The lease runs `remaining` from now at the latest.
    pub fn arm(&self, remaining: Duration) {
        let ms = remaining.saturating_sub(self.margin).as_millis();
        self.send(&format!("arm {ms}\n"));
    }

    /// The children to kill at the deadline: (pid, start time).
    pub fn track(&self, pids: &[(i32, u64)]) {
        let mut line = String::from("pids");
        for (p, s) in pids {
            line.push_str(&format!(" {p}:{s}"));
        }
        line.push('\n');
        self.send(&line);
    }

    /// A child that just started.
    pub fn add(&self, pid: i32, start: u64) {
        self.send(&format!("add {pid}:{start}\n"));
    }

    /// The daemon stops cleanly: the fence exits without killing.
    pub fn disarm(&self) {
        self.send("exit\n");
        *self.pipe.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.wait();
    }
}

/// One line from the daemon.
#[derive(Debug, PartialEq)]
enum Line {
    Arm(Duration),
    Pids(Vec<(i32, u64)>),
    Add(i32, u64),
    Exit,
}

fn parse(line: &str) -> Option<Line> {
    let mut words = line.split_whitespace();
    match words.next()? {
        "arm" => Some(Line::Arm(Duration::from_millis(
            words.next()?.parse().ok()?,
        ))),
        "pids" => Some(Line::Pids(
            words
                .filter_map(|w| {
                    let (p, s) = w.split_once(':')?;
                    Some((p.parse().ok()?, s.parse().ok()?))
                })
                .collect(),
        )),
        "add" => {
            let (p, s) = words.next()?.split_once(':')?;
            Some(Line::Add(p.parse().ok()?, s.parse().ok()?))
        }
        "exit" => Some(Line::Exit),
        _ => None,
    }
}

/// The fence process's main: returns when it should exit.
pub fn watchdog() {
    let (tx, rx) = std::sync::mpsc::channel::<Option<Line>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if let Some(l) = parse(&line) {
                if tx.send(Some(l)).is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(None);
    });
    let mut deadline: Option<Instant> = None;
    let mut pids: Vec<(i32, u64)> = vec![];
    loop {
        let wait = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        match rx.recv_timeout(wait) {
            Ok(Some(Line::Arm(ms))) => deadline = Some(Instant::now() + ms),
            // The full list, joined with the children added since that
            // still run (a list taken just before a spawn must not drop it).
            Ok(Some(Line::Pids(p))) => {
                pids.retain(|&(pid, start)| process::start_time(pid) == Some(start));
                for x in p {
                    if !pids.contains(&x) {
                        pids.push(x);
                    }
                }
            }
            Ok(Some(Line::Add(p, s))) => {
                if !pids.contains(&(p, s)) {
                    pids.push((p, s));
                }
            }
            Ok(Some(Line::Exit)) => return,
            // The daemon is gone: its lease ends at the last deadline.
            Ok(None) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(d) = deadline {
                    std::thread::sleep(d.saturating_duration_since(Instant::now()));
                    kill(&pids);
                }
                return;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    kill(&pids);
                    pids.clear();
                    deadline = None;
                }
            }
        }
    }
}

fn kill(pids: &[(i32, u64)]) {
    let mut killed = 0;
    for &(pid, start) in pids {
        if process::start_time(pid) == Some(start) {
            process::signal_group(pid, libc::SIGKILL);
            process::signal(pid, libc::SIGKILL);
            killed += 1;
        }
    }
    if killed > 0 {
        eprintln!("herd fence: the daemon did not renew its cluster lease in time; killed {killed} session process group(s)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            parse("arm 1500"),
            Some(Line::Arm(Duration::from_millis(1500)))
        );
        assert_eq!(
            parse("pids 12:34 56:78 bad"),
            Some(Line::Pids(vec![(12, 34), (56, 78)]))
        );
        assert_eq!(parse("pids"), Some(Line::Pids(vec![])));
        assert_eq!(parse("exit"), Some(Line::Exit));
        assert_eq!(parse("add 5:6"), Some(Line::Add(5, 6)));
        assert_eq!(parse("add 5"), None);
        assert_eq!(parse("arm x"), None);
        assert_eq!(parse("what"), None);
    }
}
