//! Recordings written by the real daemon: lossless, in order, playable by
//! the stock asciinema player.

mod common;

use common::{wait_until, Daemon};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn cast_path(d: &Daemon, id: &str, generation: u64, zst: bool) -> PathBuf {
    let ext = if zst { "cast.zst" } else { "cast" };
    d.data_dir()
        .join("recordings")
        .join(id)
        .join(format!("{generation}.{ext}"))
}

/// Header and events of a recording (plain or zstd).
fn read_cast(path: &Path) -> (Value, Vec<Value>) {
    let bytes = std::fs::read(path).unwrap();
    let text = if path.extension().is_some_and(|e| e == "zst") {
        zstd::decode_all(&bytes[..]).unwrap()
    } else {
        bytes
    };
    let text = String::from_utf8(text).unwrap();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let events = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    (header, events)
}

fn output_of(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_recording_holds_exactly_what_the_child_wrote() {
    let d = Daemon::start("").await;
    // 50 MB of random base64 text, written through a raw terminal (no \n → \r\n).
    let src = d.dir.path().join("payload.b64");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut line = [0u8; 77];
        for _ in 0..(50_000_000 / 77) {
            for b in line.iter_mut().take(76) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = alphabet[(x % 64) as usize];
            }
            line[76] = b'\n';
            f.write_all(&line).unwrap();
        }
    }
    let script = format!("stty raw -echo; cat {}", src.display());
    let id = d
        .create(json!({"command": ["sh", "-c", script], "restart": {"policy": "never"}}))
        .await;
    let s = d.wait_session(&id, T, |s| s["state"] == "stopped").await;
    let expected = std::fs::read(&src).unwrap();
    assert_eq!(s["metrics"]["bytes_out"], expected.len() as u64);
    let path = cast_path(&d, &id, 0, false);
    assert!(wait_until(T, || path.exists()).await);
    let (header, events) = read_cast(&path);
    assert_eq!(
        (header["version"].as_u64(), header["width"].as_u64()),
        (Some(2), Some(120))
    );
    assert!(header["command"].as_str().unwrap().starts_with("sh -c"));
    let got = output_of(&events);
    assert_eq!(got.len(), expected.len());
    assert!(
        got.as_bytes() == expected.as_slice(),
        "the recording differs from what the child wrote"
    );
    // Times never go backwards.
    let times: Vec<f64> = events.iter().map(|e| e[0].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generation_is_recorded_with_input_resizes_and_markers() {
    let d = Daemon::start("[restart]\nbackoff_initial = \"10ms\"\n[recording]\ncompress = true\n")
        .await;
    let id = d
        .create(json!({"command": ["bash", "--norc", "--noprofile"], "restart": {"policy": "always"}, "name": "rec"}))
        .await;
    d.wait_session(&id, T, |s| s["state"] == "ready").await;
    d.post(
        &format!("/v1/sessions/{id}/resize"),
        json!({"cols": 90, "rows": 20}),
    )
    .await;
    d.post(
        &format!("/v1/sessions/{id}/input"),
        json!({"text": "echo gen-zero-$((1+1))\r"}),
    )
    .await;
    d.wait_screen(&id, "gen-zero-2\n", T).await;
    d.post(
        &format!("/v1/sessions/{id}/input"),
        json!({"text": "exit 3\r"}),
    )
    .await;
    d.wait_session(&id, T, |s| s["generation"] == 1 && s["state"] == "ready")
        .await;
    d.post(
        &format!("/v1/sessions/{id}/input"),
        json!({"text": "echo gen-one\r"}),
    )
    .await;
    d.wait_screen(&id, "gen-one\n", T).await;
    let mut d = d;
    // A graceful stop finishes every file.
    d.stop();
    let (h0, e0) = read_cast(&cast_path(&d, &id, 0, true));
    assert_eq!(h0["title"], "rec");
    assert!(output_of(&e0).contains("gen-zero-2"));
    assert!(e0
        .iter()
        .any(|e| e[1] == "i" && e[2] == "echo gen-zero-$((1+1))\r"));
    assert!(e0.iter().any(|e| e[1] == "r" && e[2] == "90x20"));
    assert!(
        e0.iter()
            .any(|e| e[1] == "m" && e[2].as_str().unwrap().starts_with("state ")),
        "no state markers"
    );
    assert_eq!(e0.last().unwrap()[2], "exit: exited with code 3");
    let (_, e1) = read_cast(&cast_path(&d, &id, 1, true));
    assert!(
        e1.iter()
            .any(|e| e[1] == "m" && e[2] == "restart: exited with code 3"),
        "{e1:?}"
    );
    assert!(output_of(&e1).contains("gen-one"));
    assert!(!output_of(&e1).contains("gen-zero"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_prints_at_once_has_its_first_output_in_every_generation() {
    let d = Daemon::start("[restart]\nbackoff_initial = \"5ms\"\nmax_restarts = 7\n").await;
    let id = d
        .create(json!({"command": ["sh", "-c", "echo first-words-$$; exit 1"]}))
        .await;
    d.wait_session(&id, T, |s| s["state"] == "failed").await;
    let mut d = d;
    d.stop();
    for generation in 0..=7 {
        let (_, events) = read_cast(&cast_path(&d, &id, generation, false));
        assert!(
            output_of(&events).contains("first-words-"),
            "generation {generation} lost its first output: {events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_asciinema_player_reads_our_recordings() {
    let Ok(which) = std::process::Command::new("sh")
        .args(["-c", "command -v asciinema"])
        .output()
    else {
        return;
    };
    if !which.status.success() {
        eprintln!("SKIPPED the_stock_asciinema_player_reads_our_recordings: asciinema is not installed (.ci/run installs it)");
        return;
    }
    let d = Daemon::start("").await;
    let id = d
        .create(json!({"command": ["sh", "-c", "printf 'played back: %s\\n' ok; printf 'é ü €\\n'"], "restart": {"policy": "never"}}))
        .await;
    d.wait_session(&id, T, |s| s["state"] == "stopped").await;
    let path = cast_path(&d, &id, 0, false);
    assert!(wait_until(T, || path.exists()).await);
    let (_, events) = read_cast(&path);
    let out = std::process::Command::new("asciinema")
        .arg("cat")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "asciinema cat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let played = String::from_utf8_lossy(&out.stdout);
    assert!(
        played.contains("played back: ok") && played.contains("é ü €"),
        "{played}"
    );
    assert_eq!(played, output_of(&events));
}
