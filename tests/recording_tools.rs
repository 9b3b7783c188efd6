//! The tools around recordings: `herd replay`, `herd export`, `herd analyze`
//! on files written here by hand, and the recording routes of the daemon.

mod common;

use common::{herd_bin, wait_until, Daemon};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest any one CLI run may take before the test kills it.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `herd ARGS` without a terminal and without a daemon in reach; kills
/// it (by pid) if it outlives `RUN_LIMIT`. Returns its output and wall time.
fn herd(args: &[&str]) -> (Output, Duration) {
    herd_env(args, &[])
}

fn herd_env(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let mut cmd = Command::new(herd_bin());
    cmd.args(args)
        .env_remove("HERD_HOME")
        .env_remove("HERD_TOKEN")
        // Nothing listens there: a file must never need the daemon.
        .env("HERD_URL", "http://127.0.0.1:9")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn herd");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = vec![];
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = vec![];
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait herd") {
            break st;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("herd {args:?} still ran after {RUN_LIMIT:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    let output = Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    };
    (output, took)
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "herd failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

/// Writes an asciicast v2 file from a header and `(time, code, data)` events.
fn write_cast(dir: &Path, name: &str, header: Value, events: &[(f64, &str, &str)]) -> PathBuf {
    let mut text = format!("{header}\n");
    for (t, c, d) in events {
        text.push_str(&format!("{}\n", json!([t, c, d])));
    }
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn header() -> Value {
    json!({"version": 2, "width": 80, "height": 24, "timestamp": 1_700_000_000,
           "command": "demo", "env": {"TERM": "xterm-256color"}})
}

/// A 10-second session: a line each second, then input, a marker and the end.
fn ten_second_events() -> Vec<(f64, &'static str, &'static str)> {
    vec![
        (0.0, "o", "start ünï ✓\r\n"),
        (1.0, "o", "tick 1\r\n"),
        (2.0, "o", "tick 2\r\n"),
        (3.0, "i", "ls\r"),
        (3.0, "o", "tick 3\r\n"),
        (4.0, "o", "tick 4\r\n"),
        (5.0, "r", "100x30"),
        (5.0, "o", "\x1b[1mtick 5\x1b[0m\r\n"),
        (6.0, "o", "tick 6\r\n"),
        (7.0, "m", "state busy -> ready: output quiet"),
        (7.0, "o", "tick 7\r\n"),
        (8.0, "o", "tick 8\r\n"),
        (9.0, "o", "tick 9\r\n"),
        (10.0, "o", "done\r\n"),
    ]
}

fn output_of(events: &[(f64, &str, &str)]) -> String {
    events.iter().filter(|e| e.1 == "o").map(|e| e.2).collect()
}

/// Header and `[t, code, data]` events of an asciicast text.
fn parse_cast(text: &str) -> (Value, Vec<Value>) {
    let mut lines = text.lines();
    let header = serde_json::from_str(lines.next().expect("header")).expect("header JSON");
    let events = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect();
    (header, events)
}

#[test]
fn replay_at_speed_10_plays_a_10_second_session_in_about_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let events = ten_second_events();
    let f = write_cast(dir.path(), "ten.cast", header(), &events);
    let (o, took) = herd(&["replay", f.to_str().unwrap(), "--speed", "10"]);
    let out = ok(&o);
    assert_eq!(out, output_of(&events), "replay writes exactly the output");
    assert!(
        took >= Duration::from_millis(700) && took <= Duration::from_secs(3),
        "a 10 s recording at --speed 10 took {took:?}"
    );
}

#[test]
fn replay_idle_limit_shortens_a_long_pause() {
    let dir = tempfile::tempdir().unwrap();
    // A minute of silence between two bursts: 1.0 s of playback at a 0.5 s limit.
    let events = [
        (0.1, "o", "before\r\n"),
        (0.3, "o", "still before\r\n"),
        (60.3, "o", "after\r\n"),
        (60.5, "o", "end\r\n"),
    ];
    let f = write_cast(dir.path(), "pause.cast", header(), &events);
    let (o, took) = herd(&["replay", f.to_str().unwrap(), "--idle-limit", "0.5"]);
    assert_eq!(ok(&o), output_of(&events));
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_secs(3),
        "--idle-limit 0.5 took {took:?}"
    );
    // The header's idle_time_limit applies when no flag is given.
    let mut h = header();
    h["idle_time_limit"] = json!(0.5);
    let f = write_cast(dir.path(), "limited.cast", h, &events);
    let (o, took) = herd(&["replay", f.to_str().unwrap()]);
    assert_eq!(ok(&o), output_of(&events));
    assert!(
        took <= Duration::from_secs(3),
        "idle_time_limit took {took:?}"
    );
}

#[test]
fn replay_from_skips_ahead_showing_earlier_output_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let events = ten_second_events();
    let f = write_cast(dir.path(), "ten.cast", header(), &events);
    let (o, took) = herd(&["replay", f.to_str().unwrap(), "--from", "9"]);
    assert_eq!(ok(&o), output_of(&events), "earlier output is still shown");
    // One second left to play at speed 1, of ten.
    assert!(
        took >= Duration::from_millis(800) && took <= Duration::from_secs(3),
        "--from 9 took {took:?}"
    );
}

#[test]
fn replay_reads_compressed_and_ttyrec_files() {
    let dir = tempfile::tempdir().unwrap();
    let events = ten_second_events();
    let f = write_cast(dir.path(), "ten.cast", header(), &events);
    let zst = dir.path().join("ten.cast.zst");
    let packed = zstd::encode_all(std::fs::read(&f).unwrap().as_slice(), 3).unwrap();
    std::fs::write(&zst, packed).unwrap();
    let (o, _) = herd(&["replay", zst.to_str().unwrap(), "--speed", "100"]);
    assert_eq!(ok(&o), output_of(&events));
    let tty = dir.path().join("ten.tty");
    ok(&herd(&[
        "export",
        f.to_str().unwrap(),
        "--format",
        "ttyrec",
        "-o",
        tty.to_str().unwrap(),
    ])
    .0);
    let (o, took) = herd(&["replay", tty.to_str().unwrap(), "--speed", "20"]);
    assert_eq!(ok(&o), output_of(&events));
    assert!(
        took >= Duration::from_millis(350),
        "ttyrec timing kept: {took:?}"
    );
}

/// Frames of a ttyrec file: (seconds, microseconds, data).
fn ttyrec_frames(bytes: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
    let mut out = vec![];
    let mut rest = bytes;
    while !rest.is_empty() {
        let word = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().unwrap());
        let (sec, usec, len) = (word(0), word(4), word(8) as usize);
        out.push((sec, usec, rest[12..12 + len].to_vec()));
        rest = &rest[12 + len..];
    }
    out
}

#[test]
fn export_ttyrec_and_back_round_trips_output_bytes_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let events = [
        (0.123456, "o", "first \x1b[31mred\x1b[0m\r\n"),
        (0.5, "i", "typed"),
        (1.000001, "r", "90x30"),
        (2.5, "o", "ünïcödé ✓ 日本\r\n"),
        (3.0, "m", "restart: exited with code 1"),
        (7.25, "o", "last"),
    ];
    let f = write_cast(dir.path(), "a.cast", header(), &events);
    let tty = dir.path().join("a.ttyrec");
    let (o, _) = herd(&[
        "export",
        f.to_str().unwrap(),
        "--format",
        "ttyrec",
        "-o",
        tty.to_str().unwrap(),
    ]);
    assert_eq!(ok(&o), "", "-o writes nothing to stdout");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&tty).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The file itself: an empty frame at the start, then the output events.
    let frames = ttyrec_frames(&std::fs::read(&tty).unwrap());
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert_eq!(frames[0], (1_700_000_000, 0, vec![]));
    assert_eq!(
        (frames[1].0, frames[1].1),
        (1_700_000_000, 123_456),
        "little-endian seconds and microseconds"
    );
    assert_eq!(frames[2].2, "ünïcödé ✓ 日本\r\n".as_bytes());

    // Import: ttyrec → asciicast, on the default 80x24 terminal.
    let (o, _) = herd(&["export", tty.to_str().unwrap(), "--format", "cast"]);
    let (h, back) = parse_cast(&ok(&o));
    assert_eq!(
        (
            h["version"].as_u64(),
            h["width"].as_u64(),
            h["height"].as_u64()
        ),
        (Some(2), Some(80), Some(24))
    );
    assert_eq!(h["timestamp"], 1_700_000_000);
    let want: Vec<&(f64, &str, &str)> = events.iter().filter(|e| e.1 == "o").collect();
    assert_eq!(back.len(), want.len(), "{back:?}");
    for (w, b) in want.iter().zip(&back) {
        assert_eq!(b[1], "o");
        assert_eq!(b[2].as_str().unwrap(), w.2, "output bytes differ");
        let t = b[0].as_f64().unwrap();
        assert!((t - w.0).abs() <= 1e-6, "time {t} vs {}", w.0);
    }
    let (o, _) = herd(&["export", tty.to_str().unwrap(), "--size", "132x43"]);
    let (h, _) = parse_cast(&ok(&o));
    assert_eq!(
        (h["width"].as_u64(), h["height"].as_u64()),
        (Some(132), Some(43))
    );
}

#[test]
fn export_json_and_cast_of_a_compressed_recording() {
    let dir = tempfile::tempdir().unwrap();
    let events = ten_second_events();
    let f = write_cast(dir.path(), "ten.cast", header(), &events);
    let zst = dir.path().join("ten.cast.zst");
    let packed = zstd::encode_all(std::fs::read(&f).unwrap().as_slice(), 3).unwrap();
    std::fs::write(&zst, packed).unwrap();

    let (o, _) = herd(&["export", zst.to_str().unwrap(), "--format", "cast"]);
    let (h, got) = parse_cast(&ok(&o));
    assert_eq!(h["command"], "demo");
    let want: Vec<Value> = events.iter().map(|(t, c, d)| json!([t, c, d])).collect();
    assert_eq!(got, want, "decompressed, every event kept");

    let (o, _) = herd(&["export", zst.to_str().unwrap(), "--format", "json"]);
    let doc: Value = serde_json::from_str(&ok(&o)).expect("one JSON document");
    assert_eq!(doc["header"]["width"], 80);
    assert_eq!(doc["events"].as_array().unwrap(), &want);
}

#[test]
fn analyze_json_gives_the_figures_of_a_hand_made_session() {
    let dir = tempfile::tempdir().unwrap();
    let events = [
        (0.5, "o", "$ "),
        (1.0, "m", "state ready -> busy: output"),
        (1.0, "i", "cargo te"),
        (1.2, "i", "st\r"),
        (
            1.5,
            "o",
            "cargo test\r\n\x1b[31merror[E0425]\x1b[0m: cannot find value\r\n",
        ),
        (4.0, "o", "test result: FAILED. 1 passed; 1 failed\r\n"),
        (4.5, "m", "state busy -> ready: output quiet"),
        (6.0, "m", "restart: exited with code 101"),
        (9.0, "i", "\x1b[200~explain the error\x1b[201~\r"),
        (9.5, "m", "state ready -> busy: output"),
        (10.0, "o", "thinking\r\n"),
    ];
    let f = write_cast(dir.path(), "s.cast", header(), &events);
    let (o, _) = herd(&["analyze", f.to_str().unwrap(), "--json"]);
    let r: Value = serde_json::from_str(&ok(&o)).expect("JSON report");
    assert_eq!(r["duration"], 10.0);
    let out_bytes: usize = events
        .iter()
        .filter(|e| e.1 == "o")
        .map(|e| e.2.len())
        .sum();
    let in_bytes: usize = events
        .iter()
        .filter(|e| e.1 == "i")
        .map(|e| e.2.len())
        .sum();
    assert_eq!(r["bytes_out"], out_bytes);
    assert_eq!(r["bytes_in"], in_bytes);
    assert_eq!(r["inputs"], 3);
    // No output 1.5 → 4.0 (2.5 s) and 4.0 → 10.0 (6 s); the rest under 1 s.
    assert_eq!(r["idle_time"], 8.5);
    // Busy 1.0 → 4.5 and 9.5 → 10.0, from the markers.
    assert_eq!(r["busy_time"], 4.0);
    assert_eq!(r["busy_time_from"], "markers");
    assert_eq!(r["restarts"], 1);
    assert_eq!(
        r["error_lines"],
        json!([
            {"time": 1.5, "generation": 0, "text": "error[E0425]: cannot find value"},
            {"time": 4.0, "generation": 0, "text": "test result: FAILED. 1 passed; 1 failed"},
        ])
    );
    assert_eq!(
        r["commands"],
        json!([
            {"time": 1.2, "generation": 0, "text": "cargo test"},
            {"time": 9.0, "generation": 0, "text": "explain the error"},
        ])
    );
    // A higher threshold counts less idle time.
    let (o, _) = herd(&[
        "analyze",
        f.to_str().unwrap(),
        "--json",
        "--idle-threshold",
        "3s",
    ]);
    let r: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(r["idle_time"], 6.0);
    // For people: aligned keys, short lists.
    let (o, _) = herd(&["analyze", f.to_str().unwrap()]);
    let text = ok(&o);
    assert!(text.contains("duration     10.000s\n"), "{text}");
    assert!(text.contains("restarts     1\n"), "{text}");
    assert!(text.contains("error lines:\n"), "{text}");
    assert!(text.contains("1.200s  cargo test\n"), "{text}");
}

/// Runs herd and checks that it failed with exactly one line on stderr
/// containing every one of `needles`.
fn fails_with_one_line(args: &[&str], needles: &[&str]) {
    let (o, _) = herd(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "herd {args:?} succeeded: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "herd {args:?}: not one line:\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "herd {args:?}: {err:?} lacks {n:?}");
    }
}

#[test]
fn bad_files_and_values_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.cast");
    let missing = missing.to_str().unwrap();
    for cmd in ["replay", "export", "analyze"] {
        fails_with_one_line(
            &[cmd, missing],
            &["cannot open", "missing.cast", "No such file"],
        );
    }
    // A cast broken in the middle (an incomplete last line alone is tolerated:
    // a recording may be still being written).
    let corrupt = dir.path().join("corrupt.cast");
    std::fs::write(
        &corrupt,
        format!(
            "{}\n[0.5, \"o\", \"ok\"]\n[1.0, \"o\"\n[2.0, \"o\", \"x\"]\n",
            header()
        ),
    )
    .unwrap();
    let corrupt = corrupt.to_str().unwrap();
    for cmd in ["replay", "export", "analyze"] {
        fails_with_one_line(
            &[cmd, corrupt],
            &["corrupt.cast", "line 3", "invalid event"],
        );
    }
    let garbage = dir.path().join("garbage.bin");
    std::fs::write(
        &garbage,
        b"this is plain text, not a recording of anything\n",
    )
    .unwrap();
    fails_with_one_line(
        &["replay", garbage.to_str().unwrap()],
        &["garbage.bin", "not a ttyrec file"],
    );
    let bad_header = dir.path().join("bad.cast");
    std::fs::write(&bad_header, "{\"version\": 2, \"width\": \"wide\"}\n").unwrap();
    fails_with_one_line(
        &["export", bad_header.to_str().unwrap()],
        &["bad.cast", "not an asciicast v2 file"],
    );
    let ok_file = write_cast(dir.path(), "ok.cast", header(), &ten_second_events());
    let ok_file = ok_file.to_str().unwrap();
    for speed in ["0", "-1", "fast"] {
        fails_with_one_line(
            &["replay", ok_file, "--speed", speed],
            &["invalid --speed", &format!("{speed:?}")],
        );
    }
    fails_with_one_line(
        &["replay", ok_file, "--idle-limit", "0"],
        &["invalid --idle-limit"],
    );
    fails_with_one_line(&["replay", ok_file, "--from", "-3"], &["invalid --from"]);
    fails_with_one_line(&["export", ok_file, "-o", ok_file], &["is the input file"]);
    // Still intact after the refused export.
    let (o, _) = herd(&["export", ok_file]);
    assert_eq!(parse_cast(&ok(&o)).1.len(), ten_second_events().len());
}

#[test]
fn the_stock_asciinema_player_reads_our_exports() {
    let found = Command::new("asciinema")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!(
            "SKIPPED the_stock_asciinema_player_reads_our_exports: asciinema is not installed"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events = ten_second_events();
    let f = write_cast(dir.path(), "ten.cast", header(), &events);
    // Through ttyrec and back, so the file asciinema reads is our writer's.
    let tty = dir.path().join("ten.ttyrec");
    ok(&herd(&[
        "export",
        f.to_str().unwrap(),
        "--format",
        "ttyrec",
        "-o",
        tty.to_str().unwrap(),
    ])
    .0);
    let cast = dir.path().join("exported.cast");
    ok(&herd(&[
        "export",
        tty.to_str().unwrap(),
        "-o",
        cast.to_str().unwrap(),
    ])
    .0);
    let out = Command::new("asciinema")
        .arg("cat")
        .arg(&cast)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "asciinema cat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), output_of(&events));
}

/// The peak resident memory of a process, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// The routes serve files laid out as the recorder lays them out, here
/// written by hand for a session the daemon has forgotten (found on disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_routes_list_and_stream_stored_files() {
    let d = Daemon::start("").await;
    let id = "0a1b2c3d-0000-4000-8000-00000000abcd";
    let folder = d.data_dir().join("recordings").join(id);
    std::fs::create_dir_all(&folder).unwrap();
    let events = ten_second_events();
    let small = write_cast(&folder, "0.cast", header(), &events);
    // Generation 1: ~100 MB of output, compressed to a small file.
    let line = format!("[0.5, \"o\", \"{}\\r\\n\"]\n", "x".repeat(4094));
    let count = 100 * 1024 * 1024 / line.len();
    {
        let f = std::fs::File::create(folder.join("1.cast.zst")).unwrap();
        let mut z = zstd::stream::write::Encoder::new(f, 3).unwrap();
        writeln!(z, "{}", header()).unwrap();
        for _ in 0..count {
            z.write_all(line.as_bytes()).unwrap();
        }
        writeln!(z, "[1.0, \"m\", \"restart: exited with code 1\"]").unwrap();
        z.finish().unwrap();
    }
    let zst_bytes = std::fs::read(folder.join("1.cast.zst")).unwrap();

    // The list, oldest first.
    let (st, list) = d.get(&format!("/v1/sessions/{id}/recordings")).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let files: Vec<(u64, &str, u64, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["generation"].as_u64().unwrap(),
                f["file"].as_str().unwrap(),
                f["bytes"].as_u64().unwrap(),
                f["compressed"].as_bool().unwrap(),
            )
        })
        .collect();
    let small_len = std::fs::metadata(&small).unwrap().len();
    assert_eq!(
        files,
        [
            (0, "0.cast", small_len, false),
            (1, "1.cast.zst", zst_bytes.len() as u64, true)
        ]
    );
    assert!(list[1]["path"].as_str().unwrap().ends_with("/1.cast.zst"));

    // The newest generation, decompressed on the fly in chunks; the daemon's
    // memory does not grow with the file.
    let peak_before = peak_rss_kib(d.child.id());
    let mut resp = d
        .http
        .get(format!("{}/v1/sessions/{}/recording", d.url, &id[..8]))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-asciicast");
    assert_eq!(resp.headers()["herd-recording-generation"], "1");
    assert!(
        resp.headers().get("content-length").is_none(),
        "streamed, not buffered"
    );
    let (mut total, mut chunks, mut head, mut tail) = (0usize, 0usize, Vec::new(), Vec::new());
    while let Some(c) = resp.chunk().await.unwrap() {
        total += c.len();
        chunks += 1;
        if head.len() < 200 {
            head.extend_from_slice(&c[..c.len().min(200)]);
        }
        tail = c.to_vec();
    }
    let header_len = header().to_string().len() + 1;
    let marker = "[1.0, \"m\", \"restart: exited with code 1\"]\n";
    assert_eq!(total, header_len + count * line.len() + marker.len());
    assert!(chunks > 10, "{chunks} chunks");
    assert!(head.starts_with(format!("{}\n", header()).as_bytes()));
    assert!(tail.ends_with(marker.as_bytes()));
    let grown_mib = (peak_rss_kib(d.child.id()) - peak_before) / 1024;
    assert!(
        grown_mib < 48,
        "the daemon's peak memory grew {grown_mib} MiB for a 100 MB recording"
    );

    // raw=true: the stored bytes.
    let resp = d
        .http
        .get(format!(
            "{}/v1/sessions/{id}/recording?generation=1&raw=true",
            d.url
        ))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/zstd");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), zst_bytes.as_slice());

    // A plain generation by number, raw or not: the file as it is.
    for q in ["?generation=0", "?generation=0&raw=true"] {
        let resp = d
            .http
            .get(format!("{}/v1/sessions/{id}/recording{q}", d.url))
            .bearer_auth(&d.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "application/x-asciicast");
        assert_eq!(resp.bytes().await.unwrap(), std::fs::read(&small).unwrap());
    }

    // What is not there: 404 with the JSON error body; a bad query: 400.
    let (st, v) = d
        .get(&format!("/v1/sessions/{id}/recording?generation=7"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("generation 7"),
        "{v}"
    );
    let (st, v) = d.get("/v1/sessions/ffff0000/recording").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, _) = d.get("/v1/sessions/ffff0000/recordings").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = d
        .get(&format!("/v1/sessions/{id}/recording?generation=last"))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = d.get(&format!("/v1/sessions/{id}/recording?speed=2")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // The CLI by id: replay and export fetch the newest generation (or the
    // one asked for); analyze reads every generation.
    let (o, _) = herd_env(
        &["replay", id, "--generation", "0", "--speed", "100"],
        &[("HERD_URL", &d.url), ("HERD_TOKEN", &d.token)],
    );
    assert_eq!(ok(&o), output_of(&events));
    let (o, _) = herd_env(
        &["export", &id[..8], "--generation", "0", "--format", "json"],
        &[("HERD_URL", &d.url), ("HERD_TOKEN", &d.token)],
    );
    let doc: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(doc["events"].as_array().unwrap().len(), events.len());
    let (o, _) = herd_env(
        &["analyze", id, "--json"],
        &[("HERD_URL", &d.url), ("HERD_TOKEN", &d.token)],
    );
    let r: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(r["generations"], 2);
    assert_eq!(
        r["restarts"], 1,
        "one restart marker, one later generation: counted once"
    );
    assert_eq!(r["duration"], 11.0);
    assert_eq!(
        r["bytes_out"].as_u64().unwrap() as usize,
        output_of(&events).len() + count * 4096
    );
    assert_eq!(r["format"], "asciicast v2 (zstd)");
    let (o, _) = herd_env(
        &["analyze", "ffff0000"],
        &[("HERD_URL", &d.url), ("HERD_TOKEN", &d.token)],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("ffff0000"));
}

/// Recordings of a live daemon, through the routes and the CLI. Waits for
/// the recorder to write the file; without one, it says so and skips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_of_real_sessions_through_the_routes_and_cli() {
    for compress in [false, true] {
        let cfg = format!(
            "[restart]\nbackoff_initial = \"10ms\"\nmax_restarts = 2\n[recording]\ncompress = {compress}\n"
        );
        let d = Daemon::start(&cfg).await;
        let id = d
            .create(json!({
                "command": ["sh", "-c", "echo hello-rec; sleep 0.3; echo bye-rec; exit 1"],
                "restart": {"policy": "on-failure"},
            }))
            .await;
        let ext = if compress { "cast.zst" } else { "cast" };
        let first = d
            .data_dir()
            .join("recordings")
            .join(&id)
            .join(format!("0.{ext}"));
        assert!(
            wait_until(Duration::from_secs(20), || first.exists()).await,
            "the daemon wrote no recording"
        );
        // Three generations, then failed: restart intensity exceeded.
        d.wait_session(&id, Duration::from_secs(60), |s| s["state"] == "failed")
            .await;
        let env = [
            ("HERD_URL", d.url.as_str()),
            ("HERD_TOKEN", d.token.as_str()),
        ];
        // Files are finished soon after the session ends: poll the newest
        // until it ends with its exit marker.
        let deadline = Instant::now() + Duration::from_secs(20);
        let newest = loop {
            let (o, _) = herd_env(&["export", &id, "--format", "cast"], &env);
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            if o.status.success() && text.contains("\"m\", \"exit: ") {
                break text;
            }
            assert!(Instant::now() < deadline, "no finished recording: {text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (h, events) = parse_cast(&newest);
        assert_eq!(h["version"], 2);
        let (st, list) = d.get(&format!("/v1/sessions/{id}/recordings")).await;
        assert_eq!(st, StatusCode::OK);
        let gens: Vec<u64> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["generation"].as_u64().unwrap())
            .collect();
        assert_eq!(gens, [0, 1, 2], "{list}");
        assert!(list
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["compressed"] == compress));
        // What the files on disk hold, read here without herd.
        let on_disk: Vec<Vec<Value>> = gens
            .iter()
            .map(|g| {
                let p = first.with_file_name(format!("{g}.{ext}"));
                let bytes = std::fs::read(&p).unwrap();
                let text = if compress {
                    zstd::decode_all(bytes.as_slice()).unwrap()
                } else {
                    bytes
                };
                parse_cast(&String::from_utf8(text).unwrap()).1
            })
            .collect();
        let output = |events: &[Value]| -> String {
            events
                .iter()
                .filter(|e| e[1] == "o")
                .map(|e| e[2].as_str().unwrap())
                .collect()
        };
        assert_eq!(events, on_disk[2], "export gives the newest generation");
        assert!(output(&events).contains("bye-rec"));
        let resp = d
            .http
            .get(format!("{}/v1/sessions/{id}/recording?raw=true", d.url))
            .bearer_auth(&d.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["herd-recording-generation"], "2");
        let want_type = if compress {
            "application/zstd"
        } else {
            "application/x-asciicast"
        };
        assert_eq!(resp.headers()["content-type"], want_type);
        let (o, _) = herd_env(&["replay", &id, "--speed", "100"], &env);
        assert_eq!(ok(&o), output(&on_disk[2]));
        let (o, _) = herd_env(&["analyze", &id, "--json"], &env);
        let r: Value = serde_json::from_str(&ok(&o)).unwrap();
        assert_eq!(r["generations"], 3, "{r}");
        assert_eq!(r["restarts"], 2, "{r}");
        let bytes_out: usize = on_disk.iter().map(|e| output(e).len()).sum();
        assert_eq!(r["bytes_out"], bytes_out, "{r}");
        let duration: f64 = on_disk
            .iter()
            .map(|e| e.last().map_or(0.0, |l| l[0].as_f64().unwrap()))
            .sum();
        assert!(
            (r["duration"].as_f64().unwrap() - duration).abs() < 1e-5,
            "{r}"
        );
        let _ = d
            .req(
                reqwest::Method::DELETE,
                &format!("/v1/sessions/{id}?force=true"),
                None,
            )
            .await;
    }
}
