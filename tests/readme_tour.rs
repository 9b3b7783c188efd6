//! The README stays true: every ```` ```bash tour ```` block of README.md
//! runs, as one bash script, against a real daemon (a temp `HERD_HOME`, a
//! free port), with `herd` the binary under test.

mod common;

use common::{herd_bin, Daemon};
use std::process::Command;

/// The `bash tour` blocks of the README, in order.
fn tour_blocks(readme: &str) -> Vec<String> {
    let mut blocks = vec![];
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim() == "```bash tour" => current = Some(String::new()),
            Some(block) if line.trim() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tour_command_runs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let blocks = tour_blocks(&readme);
    assert!(blocks.len() >= 2, "no `bash tour` blocks in the README");
    let d = Daemon::start("").await;
    for block in blocks {
        if block.contains("curl ") && Command::new("curl").arg("--version").output().is_err() {
            eprintln!("SKIPPED a README block: curl is not installed");
            continue;
        }
        // Every line runs; a failing one stops the script with its line.
        let script = format!(
            "set -euo pipefail\ntrap 'echo \"failed at: $BASH_COMMAND\" >&2' ERR\nherd() {{ \"$HERD_BIN\" \"$@\"; }}\n{block}"
        );
        let o = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(d.dir.path())
            .env("HERD_BIN", herd_bin())
            .env("HERD_HOME", d.data_dir())
            .env_remove("HERD_URL")
            .env_remove("HERD_TOKEN")
            .output()
            .expect("run bash");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "README block failed:\n{block}\nstdout:\n{out}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        if block.contains("'echo hello' --wait") {
            assert!(out.contains("hello\n"), "{out}");
            assert!(out.contains("cancelled"), "the cancel line: {out}");
            assert!(out.contains("removed"), "{out}");
        }
        if block.contains("curl ") {
            assert!(out.contains("job-43"), "{out}");
        }
    }
}
