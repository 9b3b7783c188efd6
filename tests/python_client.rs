//! The Python client example (`examples/python/herd_client.py`, standard
//! library only) runs its demo against a real daemon.

mod common;

use common::Daemon;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_drives_a_session() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed");
        return;
    }
    let d = Daemon::start("").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/python/herd_client.py"
    );
    let o = Command::new("python3")
        .arg(script)
        .env("HERD_URL", &d.url)
        .env("HERD_TOKEN", &d.token)
        .env_remove("HERD_HOME")
        .output()
        .expect("run python3");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("state ready\n"), "{out}");
    assert!(out.contains("reply hello from python\n"), "{out}");
    assert!(out.contains("task True\n"), "{out}");
    assert!(out.contains("state stopped\n"), "{out}");
    assert!(out.contains("after remove 404 not_found\n"), "{out}");
    assert_eq!(d.count().await, 0, "the demo removes its session");
}
