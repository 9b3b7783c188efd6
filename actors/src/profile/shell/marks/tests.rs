//! Tests of the marks and of the startup files, with real bash and zsh in PTYs.
//! (Long: every case of the scanner, the tracker and the startup files, and the
//! PTY harness they share, in one place.)
use super::*;
use crate::profile::shell::rc::*;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|a| a.to_string()).collect()
}

/// A directory under the system's temporary directory, unique to this
/// process and test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("herd-shell-marks-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Plain text, a title OSC, a CSI, and all four marks in both terminator
/// styles, with the marks' offsets.
fn stream() -> (Vec<u8>, Vec<Found>) {
    let parts: [(&[u8], Option<Mark>); 14] = [
        (b"plain text ", None),
        (b"\x1b]0;a title\x07", None),
        (b"\x1b]133;A\x07", Some(Mark::PromptStart)),
        (b"$ ", None),
        (b"\x1b]133;B\x07", Some(Mark::PromptEnd)),
        (b"ls\r\n", None),
        (b"\x1b]133;C\x1b\\", Some(Mark::CommandStart)),
        (b"file\r\n\x1b[1mbold\x1b[0m\r\n", None),
        (b"\x1b]133;D;7\x07", Some(Mark::CommandEnd(Some(7)))),
        (b"\x1b]133;A;aid=1;cl=m\x1b\\", Some(Mark::PromptStart)),
        (b"\x1b]2;another\x1b\\$ ", None),
        (b"\x1b]133;B\x07", Some(Mark::PromptEnd)),
        (b"\x1b]133;D\x07", Some(Mark::CommandEnd(None))),
        (b"tail", None),
    ];
    let mut bytes = Vec::new();
    let mut marks = Vec::new();
    for (part, mark) in parts {
        let start = bytes.len() as u64;
        bytes.extend_from_slice(part);
        if let Some(mark) = mark {
            marks.push(Found {
                start,
                end: bytes.len() as u64,
                mark,
            });
        }
    }
    (bytes, marks)
}

fn scan_in(chunks: &[&[u8]]) -> Vec<Found> {
    let mut scanner = MarkScanner::new();
    let found = chunks.iter().flat_map(|c| scanner.feed(c)).collect();
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    assert_eq!(scanner.position(), total as u64);
    found
}

#[test]
fn finds_the_same_marks_wherever_the_stream_is_cut() {
    let (bytes, expected) = stream();
    assert_eq!(scan_in(&[&bytes]), expected);
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        assert_eq!(scan_in(&[a, b]), expected, "cut at {cut}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(scan_in(&singles), expected, "byte by byte");
}

#[test]
fn the_tracker_reports_the_same_events_wherever_the_stream_is_cut() {
    let (bytes, marks) = stream();
    // Offsets that do not start at 0, as for a session's later output.
    const BASE: u64 = 1000;
    let (c_end, d_start) = (marks[2].end, marks[3].start);
    assert_eq!(
        &bytes[c_end as usize..d_start as usize],
        b"file\r\n\x1b[1mbold\x1b[0m\r\n"
    );
    let expected = vec![
        ShellEvent::AtPrompt,
        ShellEvent::Running {
            output_start: BASE + c_end,
        },
        ShellEvent::Finished {
            output_start: BASE + c_end,
            output_end: BASE + d_start,
            exit: Some(7),
        },
        ShellEvent::AtPrompt,
    ];
    let run = |chunks: &[&[u8]]| {
        let mut tracker = CommandTracker::new();
        let mut offset = BASE;
        let mut events = Vec::new();
        for c in chunks {
            events.extend(tracker.feed(offset, c));
            offset += c.len() as u64;
        }
        events
    };
    assert_eq!(run(&[&bytes]), expected);
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        assert_eq!(run(&[a, b]), expected, "cut at {cut}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&singles), expected, "byte by byte");
}

fn marks_of(bytes: &[u8]) -> Vec<Mark> {
    MarkScanner::new()
        .feed(bytes)
        .into_iter()
        .map(|f| f.mark)
        .collect()
}

#[test]
fn st_terminates_like_bel() {
    let found = MarkScanner::new().feed(b"ab\x1b]133;C\x1b\\cd");
    assert_eq!(
        found,
        vec![Found {
            start: 2,
            end: 11,
            mark: Mark::CommandStart
        }]
    );
}

#[test]
fn parameters_and_sub_commands() {
    use Mark::*;
    assert_eq!(marks_of(b"\x1b]133;A;aid=1\x07"), vec![PromptStart]);
    assert_eq!(marks_of(b"\x1b]133;B;x\x07"), vec![PromptEnd]);
    assert_eq!(marks_of(b"\x1b]133;D\x07"), vec![CommandEnd(None)]);
    assert_eq!(marks_of(b"\x1b]133;D;\x07"), vec![CommandEnd(None)]);
    assert_eq!(marks_of(b"\x1b]133;D;aid=1\x07"), vec![CommandEnd(None)]);
    assert_eq!(
        marks_of(b"\x1b]133;D;-1;aid=1\x07"),
        vec![CommandEnd(Some(-1))]
    );
    assert_eq!(
        marks_of(b"\x1b]133;D;130\x1b\\"),
        vec![CommandEnd(Some(130))]
    );
    // Not marks: other sub-commands, other OSC numbers, no sub-command.
    for other in [
        &b"\x1b]133;P;k=i\x07"[..],
        b"\x1b]133;AB\x07",
        b"\x1b]133;\x07",
        b"\x1b]133\x07",
        b"\x1b]1330;A\x07",
        b"\x1b]13;A\x07",
        b"\x1b]633;A\x07",
        b"\x1b[133;A\x07",
        b"]133;A\x07",
    ] {
        assert_eq!(marks_of(other), vec![], "{other:?}");
    }
}

#[test]
fn interrupted_sequences() {
    use Mark::*;
    // ESC inside an OSC aborts it and starts the next sequence.
    let found = MarkScanner::new().feed(b"\x1b]0;title\x1b]133;B\x07");
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].start, found[0].mark), (9, PromptEnd));
    assert_eq!(marks_of(b"\x1b]133;A\x1b[0m\x07"), vec![]);
    assert_eq!(marks_of(b"\x1b\x1b]133;A\x07"), vec![PromptStart]);
    // CAN and SUB cancel.
    assert_eq!(marks_of(b"\x1b]133;A\x18\x07"), vec![]);
    assert_eq!(marks_of(b"\x1b]0;t\x1a\x1b]133;C\x07"), vec![CommandStart]);
}

#[test]
fn unterminated_garbage_is_bounded() {
    let mut scanner = MarkScanner::new();
    assert!(scanner.feed(b"\x1b]133;A;").is_empty());
    for _ in 0..100 {
        assert!(scanner.feed(&[b'x'; 1000]).is_empty());
    }
    assert!(scanner.payload.capacity() <= MAX_PAYLOAD);
    // The late BEL ends nothing; the next real mark is found.
    assert!(scanner.feed(b"\x07").is_empty());
    let found = scanner.feed(b"\x1b]133;B\x07");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].start, 100_009);
    // A long OSC that is not a mark is skipped without being kept.
    assert!(scanner.feed(b"\x1b]52;c;").is_empty());
    for _ in 0..100 {
        assert!(scanner.feed(&[b'Q'; 1000]).is_empty());
    }
    assert!(scanner.payload.capacity() <= MAX_PAYLOAD);
    assert_eq!(scanner.feed(b"\x07\x1b]133;A\x07").len(), 1);
    // Exactly the longest payload kept still parses.
    let mut long = b"\x1b]133;A;".to_vec();
    long.resize(2 + MAX_PAYLOAD, b'p');
    long.push(0x07);
    assert_eq!(marks_of(&long), vec![Mark::PromptStart]);
}

#[test]
fn a_chunk_without_escape_only_moves_the_position() {
    let mut scanner = MarkScanner::starting_at(5);
    assert!(scanner.feed(b"hello world\r\n").is_empty());
    assert_eq!(scanner.position(), 18);
    assert!(scanner.feed(b"").is_empty());
    assert_eq!(scanner.position(), 18);
}

#[test]
fn d_without_c_is_no_command() {
    let mut t = CommandTracker::new();
    let first = b"\x1b]133;D;0\x07\x1b]133;A\x07$ \x1b]133;B\x07";
    assert_eq!(t.feed(0, first), vec![ShellEvent::AtPrompt]);
    // An empty command line: D and a new prompt, no C.
    let empty = b"\r\n\x1b]133;D;0\x07\x1b]133;A\x07$ \x1b]133;B\x07";
    let at = first.len() as u64;
    assert_eq!(t.feed(at, empty), vec![ShellEvent::AtPrompt]);
    assert_eq!(t.running(), None);
    let at = at + empty.len() as u64;
    let cmd = b"x\r\n\x1b]133;C\x07out\x1b]133;D;1\x07";
    assert_eq!(
        t.feed(at, cmd),
        vec![
            ShellEvent::Running {
                output_start: at + 11
            },
            ShellEvent::Finished {
                output_start: at + 11,
                output_end: at + 14,
                exit: Some(1)
            }
        ]
    );
    // A second D is no second command.
    assert_eq!(t.feed(at + cmd.len() as u64, b"\x1b]133;D;1\x07"), vec![]);
}

#[test]
fn a_gap_restarts_the_scan_at_the_new_offset() {
    let mut t = CommandTracker::new();
    assert_eq!(
        t.feed(0, b"\x1b]133;C\x07ab\x1b]13"),
        vec![ShellEvent::Running { output_start: 8 }]
    );
    // The split D is lost with the gap; offsets follow the new chunk.
    assert_eq!(t.feed(100, b"3;D;0\x07"), vec![]);
    assert_eq!(
        t.feed(106, b"cd\x1b]133;D;0\x07"),
        vec![ShellEvent::Finished {
            output_start: 8,
            output_end: 108,
            exit: Some(0)
        }]
    );
}

fn marked(launch: Launch) -> (Shell, Vec<String>) {
    match launch {
        Launch::Marked { shell, argv } => (shell, argv),
        other => panic!("expected marked, got {other:?}"),
    }
}

#[test]
fn bash_command_lines() {
    let tmp = TempDir::new("bash-argv");
    let dir = tmp.0.join("rc");
    let rc = dir.join("bashrc").to_string_lossy().into_owned();
    let prep = |argv: &[&str]| {
        let mut env = vec![("HERD_BASHRC".to_string(), "stale".to_string())];
        let launch = prepare(&s(argv), &mut env, &dir).expect("prepare");
        let user_rc = env
            .iter()
            .find(|(k, _)| k == "HERD_BASHRC")
            .map(|(_, v)| v.clone());
        (launch, user_rc)
    };
    let (launch, user_rc) = prep(&["bash"]);
    assert_eq!(
        marked(launch),
        (Shell::Bash, s(&["bash", "--rcfile", &rc, "-i"]))
    );
    assert_eq!(user_rc, None);
    let (launch, _) = prep(&["/usr/bin/bash", "-i"]);
    assert_eq!(
        marked(launch).1,
        s(&["/usr/bin/bash", "--rcfile", &rc, "-i"])
    );
    let (launch, user_rc) = prep(&["bash", "--norc", "--noprofile", "-o", "vi", "-x"]);
    assert_eq!(
        marked(launch).1,
        s(&[
            "bash",
            "--rcfile",
            &rc,
            "--noprofile",
            "-i",
            "-o",
            "vi",
            "-x"
        ])
    );
    assert_eq!(user_rc.as_deref(), Some(""));
    let (launch, user_rc) = prep(&["bash", "--rcfile", "my.rc", "-s", "a", "b"]);
    assert_eq!(
        marked(launch).1,
        s(&["bash", "--rcfile", &rc, "-i", "-s", "a", "b"])
    );
    assert_eq!(user_rc.as_deref(), Some("my.rc"));
    let (launch, _) = prep(&["bash", "--"]);
    assert_eq!(marked(launch).1, s(&["bash", "--rcfile", &rc, "-i", "--"]));
    for (argv, why) in [
        (&["bash", "-c", "echo hi"][..], Unmarked::NotInteractive),
        (&["bash", "-ec", "echo hi"], Unmarked::NotInteractive),
        (&["bash", "script.sh"], Unmarked::NotInteractive),
        (&["bash", "-x", "--", "script.sh"], Unmarked::NotInteractive),
        (&["bash", "--version"], Unmarked::NotInteractive),
        (&["bash", "-l"], Unmarked::StartupFilesBypassed),
        (&["bash", "--login"], Unmarked::StartupFilesBypassed),
        (&["bash", "--posix"], Unmarked::StartupFilesBypassed),
        (&["bash", "-o", "posix"], Unmarked::StartupFilesBypassed),
        (&["bash", "--rcfile"], Unmarked::StartupFilesBypassed),
        (&["sh"], Unmarked::UnknownShell),
        (&["bashful"], Unmarked::UnknownShell),
        (&["/bin/fish"], Unmarked::UnknownShell),
        (&[], Unmarked::UnknownShell),
    ] {
        let mut env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(
            prepare(&s(argv), &mut env, &dir).expect("prepare"),
            Launch::Unmarked(why),
            "{argv:?}"
        );
        assert_eq!(env, vec![("A".to_string(), "1".to_string())], "{argv:?}");
    }
}

#[test]
fn zsh_command_lines_and_environment() {
    let tmp = TempDir::new("zsh-argv");
    let dir = tmp.0.join("rc");
    let zdir = dir.join("zsh").to_string_lossy().into_owned();
    let mut env = vec![
        ("ZDOTDIR".to_string(), "/home/u/.config/zsh".to_string()),
        ("X".to_string(), "y".to_string()),
    ];
    let launch = prepare(&s(&["/bin/zsh", "-l"]), &mut env, &dir).expect("prepare");
    assert_eq!(marked(launch), (Shell::Zsh, s(&["/bin/zsh", "-l"])));
    assert_eq!(
        env,
        vec![
            ("X".to_string(), "y".to_string()),
            ("ZDOTDIR".to_string(), zdir.clone()),
            (
                "HERD_ORIG_ZDOTDIR".to_string(),
                "/home/u/.config/zsh".to_string()
            ),
        ]
    );
    for name in [".zshenv", ".zprofile", ".zshrc", ".zlogin"] {
        assert!(dir.join("zsh").join(name).is_file(), "{name}");
    }
    let (_, argv) =
        marked(prepare(&s(&["zsh", "-o", "vi", "-s", "a"]), &mut env, &dir).expect("prepare"));
    assert_eq!(argv, s(&["zsh", "-o", "vi", "-s", "a"]));
    for (argv, why) in [
        (&["zsh", "-c", "echo"][..], Unmarked::NotInteractive),
        (&["zsh", "script.zsh"], Unmarked::NotInteractive),
        (&["zsh", "--version"], Unmarked::NotInteractive),
        (&["zsh", "-f"], Unmarked::StartupFilesBypassed),
        (&["zsh", "--no-rcs"], Unmarked::StartupFilesBypassed),
        (&["zsh", "--NO_RCS"], Unmarked::StartupFilesBypassed),
        (&["zsh", "+o", "rcs"], Unmarked::StartupFilesBypassed),
        (&["zsh", "--emulate", "sh"], Unmarked::StartupFilesBypassed),
    ] {
        let mut env = Vec::new();
        assert_eq!(
            prepare(&s(argv), &mut env, &dir).expect("prepare"),
            Launch::Unmarked(why),
            "{argv:?}"
        );
        assert!(env.is_empty());
    }
}

#[test]
fn files_are_private_idempotent_and_safe_to_write_at_once() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("files");
    let dir = tmp.0.join("rc");
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let argv = if n % 2 == 0 {
                    s(&["bash"])
                } else {
                    s(&["zsh"])
                };
                for _ in 0..20 {
                    prepare(&argv, &mut Vec::new(), &dir).expect("prepare");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a preparing thread panicked");
    }
    let mode = |p: &Path| p.metadata().expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("zsh")), 0o700);
    assert_eq!(
        std::fs::read_to_string(dir.join("bashrc")).expect("read"),
        BASHRC
    );
    assert_eq!(mode(&dir.join("bashrc")), 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.join("zsh/.zshrc")).expect("read"),
        ZSHRC
    );
    // No temporary file is left behind.
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&dir), ["bashrc", "zsh"]);
    assert_eq!(
        names(&dir.join("zsh")),
        [".zlogin", ".zprofile", ".zshenv", ".zshrc"]
    );
    // A tampered file is rewritten; an open directory is closed again.
    std::fs::write(dir.join("bashrc"), "echo pwned").expect("write");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    prepare(&s(&["bash"]), &mut Vec::new(), &dir).expect("prepare");
    assert_eq!(
        std::fs::read_to_string(dir.join("bashrc")).expect("read"),
        BASHRC
    );
    assert_eq!(mode(&dir), 0o700);
    // A symlink is not followed.
    let link = tmp.0.join("link");
    std::os::unix::fs::symlink(&dir, &link).expect("symlink");
    let err = prepare(&s(&["bash"]), &mut Vec::new(), &link).expect_err("symlink accepted");
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
}

// ---- Real shells in a real PTY ----

/// How long a real shell may take to answer, on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// A shell on a PTY, with its output collected and tracked. Dropping it
/// kills the shell.
struct PtyShell {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    output_rx: mpsc::Receiver<Vec<u8>>,
    output: Vec<u8>,
    tracker: CommandTracker,
    events: Vec<ShellEvent>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Drop for PtyShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PtyShell {
    fn start(argv: &[String], env: &[(String, String)], home: &Path) -> Self {
        use portable_pty::{native_pty_system, CommandBuilder, PtySize};
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 80,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("openpty");
        let mut cmd = CommandBuilder::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd.env_clear();
        cmd.env("HOME", home);
        cmd.env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        );
        cmd.env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.cwd(home);
        let child = pair.slave.spawn_command(cmd).expect("spawn the shell");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let (tx, output_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            writer,
            output_rx,
            output: Vec::new(),
            tracker: CommandTracker::new(),
            events: Vec::new(),
            _master: pair.master,
        }
    }

    fn type_line(&mut self, text: &str) {
        self.writer
            .write_all(text.as_bytes())
            .expect("write to the pty");
        self.writer.flush().expect("flush the pty");
    }

    /// Index of the first event at or after `from` that `want` accepts,
    /// reading output until it comes.
    fn wait_for(&mut self, from: usize, what: &str, want: impl Fn(&ShellEvent) -> bool) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(k) = self.events[from..].iter().position(&want) {
                return from + k;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output_rx.recv_timeout(left) {
                Ok(chunk) => {
                    let offset = self.output.len() as u64;
                    self.events.extend(self.tracker.feed(offset, &chunk));
                    self.output.extend_from_slice(&chunk);
                }
                Err(e) => panic!(
                    "no {what} ({e}); events {:?}; output {:?}",
                    self.events,
                    String::from_utf8_lossy(&self.output)
                ),
            }
        }
    }

    fn wait_prompt(&mut self, from: usize) -> usize {
        self.wait_for(from, "prompt", |e| *e == ShellEvent::AtPrompt)
    }

    /// Types `line`, waits for the command to finish and for the next
    /// prompt; returns the command's output and exit status.
    fn run(&mut self, line: &str) -> (Vec<u8>, Option<i32>) {
        let from = self.events.len();
        self.type_line(line);
        let k = self.wait_for(from, "finished command", |e| {
            matches!(e, ShellEvent::Finished { .. })
        });
        let ShellEvent::Finished {
            output_start,
            output_end,
            exit,
        } = self.events[k]
        else {
            unreachable!()
        };
        self.wait_prompt(k);
        (
            self.output[output_start as usize..output_end as usize].to_vec(),
            exit,
        )
    }
}

fn find(program: &str) -> Option<PathBuf> {
    crate::spec::find_program(program, None, std::env::var("PATH").ok().as_deref())
}

/// Runs the scenario on `program`: with a user rc file (name, content)
/// in HOME, `echo $MYVAR` must show the rc ran and `prompt` must show up.
fn exercise(program: &str, user_rc: Option<(&str, &str)>, prompt: Option<&str>) {
    let Some(path) = find(program) else {
        eprintln!("{program} is not installed: skipping the real {program} test");
        return;
    };
    let tag = format!(
        "{program}-{}",
        if user_rc.is_some() { "rc" } else { "plain" }
    );
    let tmp = TempDir::new(&tag);
    let home = tmp.0.join("home");
    std::fs::create_dir(&home).expect("create HOME");
    if let Some((name, text)) = user_rc {
        std::fs::write(home.join(name), text).expect("write the user's rc");
    }
    let mut env = Vec::new();
    let argv = vec![path.to_string_lossy().into_owned()];
    let (_, argv) = marked(prepare(&argv, &mut env, &tmp.0.join("rc")).expect("prepare"));
    let mut sh = PtyShell::start(&argv, &env, &home);

    sh.wait_prompt(0);
    let (word, line) = match user_rc {
        Some(_) => ("from-user-rc", "echo $MYVAR; (exit 3)\r"),
        None => ("hello", "echo hello; (exit 3)\r"),
    };
    let (out, exit) = sh.run(line);
    assert_eq!(exit, Some(3));
    // Exactly the command's output: not the echoed line, not the prompt.
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("{word}\r\n"),
        "all output: {:?}",
        String::from_utf8_lossy(&sh.output)
    );
    if let Some(prompt) = prompt {
        let all = String::from_utf8_lossy(&sh.output);
        assert!(all.contains(prompt), "no {prompt:?} in {all:?}");
    }

    let (out, exit) = sh.run("true\r");
    assert_eq!((out, exit), (Vec::new(), Some(0)));

    let (out, exit) = sh.run("printf 'a\\nb'; false\r");
    assert_eq!(
        (String::from_utf8_lossy(&out).as_ref(), exit),
        ("a\r\nb", Some(1))
    );

    // An empty line: a new prompt and no command.
    let from = sh.events.len();
    sh.type_line("\r");
    let k = sh.wait_prompt(from);
    assert_eq!(&sh.events[from..=k], [ShellEvent::AtPrompt]);
}

#[test]
fn real_bash_marks_commands() {
    exercise("bash", None, None);
}

#[test]
fn real_bash_runs_the_users_rc_first() {
    exercise(
        "bash",
        Some((".bashrc", "PS1='custom> '\nMYVAR=from-user-rc\n")),
        Some("custom> "),
    );
}

#[test]
fn real_zsh_marks_commands() {
    exercise("zsh", None, None);
}

#[test]
fn real_zsh_runs_the_users_rc_first() {
    exercise(
        "zsh",
        Some((".zshrc", "PS1='custom> '\nMYVAR=from-user-rc\n")),
        Some("custom> "),
    );
}
