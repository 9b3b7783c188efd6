//! `herd top` for real: the binary in an 80x24 PTY against a real daemon on
//! port 0, with a shell session and a fake Claude; the screen read back with
//! vt100. Rows, a live state change, answer, interrupt, restart, attach and
//! back, and `q` giving the terminal back as it was.

mod common;

use common::{sh_in_pty, wait_until, Daemon};
use serde_json::json;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn config() -> String {
    format!(
        "[claude]\nbinary = {:?}\n[limits]\nmax_sessions = 20\nquiet_after = \"300ms\"\n[restart]\nbackoff_initial = \"10ms\"\n",
        env!("CARGO_BIN_EXE_herd-fake-claude")
    )
}

/// `herd top` in a PTY, its screen kept by a vt100 parser; the whole process
/// group is killed when dropped.
struct Top {
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

/// `stty -g` before and after `herd top`, and its exit code, as files.
const SCRIPT: &str = "stty -g > before; \"$HERD_BIN\" top; echo $? > rc; stty -g > after; exec cat";

impl Top {
    fn spawn(d: &Daemon, dir: &Path) -> Top {
        let (master, child) = sh_in_pty(d, dir, SCRIPT, &[("TERM", "xterm-256color")]);
        let mut reader = master.try_clone_reader().unwrap();
        let writer = master.take_writer().unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(24, 80, 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (Arc::clone(&screen), Arc::clone(&raw));
        std::thread::spawn(move || {
            // The master stays open in this thread so the PTY lives until
            // the reader ends.
            let _master = master;
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().process(&buf[..n]);
                r.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Top {
            writer,
            child,
            screen,
            raw,
        }
    }

    fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    fn keys(&mut self, b: &[u8]) {
        self.writer.write_all(b).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits until the screen shows every needle.
    async fn wait_for(&self, needles: &[&str]) {
        let ok = wait_until(T, || {
            let t = self.text();
            needles.iter().all(|n| t.contains(n))
        })
        .await;
        assert!(ok, "the screen never showed {needles:?}:\n{}", self.text());
    }
}

impl Drop for Top {
    fn drop(&mut self) {
        let running = matches!(self.child.try_wait(), Ok(None));
        if let (true, Some(pid)) = (running, self.child.process_id()) {
            // The shell leads its own session and process group (setsid):
            // kill it with `herd top` and `cat`.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_top_shows_the_fleet_live_and_acts_on_the_selected_session() {
    let d = Daemon::start(&config()).await;
    let dir = tempfile::tempdir().unwrap();
    let sh = d
        .create(json!({"name": "alpha", "command": ["sh", "-c", "echo hi-top; exec cat"]}))
        .await;
    let env = json!({"FAKE_CLAUDE_STARTUP_MS": "200", "FAKE_CLAUDE_BUSY_MS": "200",
                     "FAKE_CLAUDE_NOTIFY_MS": "300"});
    let cl = d
        .create(
            json!({"name": "bot", "profile": "claude", "cwd": dir.path(),
                       "claude": {"env": env}}),
        )
        .await;
    d.wait_session(&sh, T, |s| s["state"] == "ready").await;
    d.wait_session(&cl, T, |s| s["state"] == "ready").await;

    let mut top = Top::spawn(&d, dir.path());
    // One row per session, with the screen's last line; the header counts them.
    top.wait_for(&["alpha", "bot", "hi-top", "2 sessions", "2 ready"])
        .await;
    assert!(top.screen.lock().unwrap().screen().alternate_screen());

    // A state change shows up live, with why it waits.
    let (_, m) = d
        .post(
            &format!("/v1/sessions/{cl}/messages"),
            json!({"text": "run it MOCK-TOOL-BASH"}),
        )
        .await;
    top.wait_for(&["waiting_input", "perm Bash", "1 waiting_input"])
        .await;
    // Select it with the filter, answer its dialog: yes.
    top.keys(b"/bot\r");
    top.wait_for(&["filter:bot"]).await;
    top.keys(b"y");
    let mid = m["id"].as_str().unwrap().to_string();
    let m = d.wait_message(&cl, &mid, T).await;
    assert_eq!(m["state"], "done", "{m}");
    top.wait_for(&["answered yes"]).await;
    d.wait_session(&cl, T, |s| s["state"] == "ready").await;

    // Interrupt a turn in progress.
    let (_, m) = d
        .post(
            &format!("/v1/sessions/{cl}/messages"),
            json!({"text": "slow one MOCK-WAIT=20000"}),
        )
        .await;
    d.wait_session(&cl, T, |s| s["reason"] == "hook: UserPromptSubmit")
        .await;
    top.wait_for(&["busy"]).await;
    top.keys(b"i");
    let m = d.wait_message(&cl, m["id"].as_str().unwrap(), T).await;
    assert_eq!(m["state"], "interrupted", "{m}");
    top.wait_for(&["interrupted"]).await;

    // Restart asks first; `n` leaves it be, `y` restarts.
    let before = d.session(&cl).await["generation"].as_u64().unwrap();
    top.keys(b"r");
    top.wait_for(&["? y/n"]).await;
    top.keys(b"n");
    top.wait_for(&["restart cancelled"]).await;
    top.keys(b"r");
    top.wait_for(&["? y/n"]).await;
    top.keys(b"y");
    d.wait_session(&cl, T, |s| {
        s["generation"].as_u64().unwrap() > before && s["state"] == "ready"
    })
    .await;

    // Attach to the shell session and come back to top on detach.
    top.keys(b"\x1b");
    top.wait_for(&["alpha", "bot"]).await;
    top.keys(b"/alpha\r");
    top.wait_for(&["filter:alpha"]).await;
    top.keys(b"\r");
    let attached = wait_until(T, || {
        String::from_utf8_lossy(&top.raw.lock().unwrap()).contains("attached to")
    })
    .await;
    assert!(attached, "no attach:\n{}", top.text());
    top.wait_for(&["hi-top"]).await;
    top.keys(b"typed-in-attach\r");
    d.wait_screen(&sh, "typed-in-attach", T).await;
    top.keys(b"\x1c");
    top.wait_for(&["back from", "alpha"]).await;

    // `q`: the alternate screen is left and the terminal's modes are back.
    top.keys(b"q");
    let quit = wait_until(T, || !read(dir.path(), "after").is_empty()).await;
    assert!(quit, "herd top did not quit:\n{}", top.text());
    assert_eq!(read(dir.path(), "rc").trim(), "0");
    assert_eq!(read(dir.path(), "before"), read(dir.path(), "after"));
    assert!(!top.screen.lock().unwrap().screen().alternate_screen());
    assert!(!top.screen.lock().unwrap().screen().hide_cursor());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_the_terminal_back() {
    let d = Daemon::start(&config()).await;
    let dir = tempfile::tempdir().unwrap();
    d.create(json!({"name": "alpha", "command": ["sh", "-c", "echo hi-top; exec cat"]}))
        .await;
    let top = Top::spawn(&d, dir.path());
    top.wait_for(&["alpha", "1 session"]).await;
    // `herd top` is the shell's only child.
    let shell = top.child.process_id().unwrap();
    let children =
        std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap_or_default();
    let pid: i32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("herd top's pid");
    // SAFETY: kill has no memory-safety preconditions; pid is our grandchild.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let done = wait_until(T, || !read(dir.path(), "after").is_empty()).await;
    assert!(done, "herd top did not end on SIGTERM:\n{}", top.text());
    assert_eq!(read(dir.path(), "rc").trim(), "0");
    assert_eq!(read(dir.path(), "before"), read(dir.path(), "after"));
    assert!(!top.screen.lock().unwrap().screen().alternate_screen());
}
