//! `herd new --worktree`: real git repositories in temp dirs, a real daemon.
//! Skipped (with a message) where git is not installed.

mod common;

use common::Daemon;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const CONFIG: &str = "[limits]\nmax_sessions = 20\n[restart]\nbackoff_initial = \"10ms\"\n";

fn git_present() -> bool {
    let ok = Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: git is not installed (apt-get install git)");
    }
    ok
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=herd test",
            "-c",
            "user.email=test@herd.invalid",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository with one commit on `main`: README with one line.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join("README"), "one\n").unwrap();
    git(dir.path(), &["add", "README"]);
    git(dir.path(), &["commit", "-q", "-m", "first"]);
    dir
}

fn out(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn new_session(d: &Daemon, args: &[&str]) -> String {
    let o = d.cli(&[&["new"], args].concat());
    let (so, se) = out(&o);
    assert!(o.status.success(), "herd new {args:?}: {se}");
    so.trim().to_string()
}

fn stop(d: &Daemon, id: &str) {
    let o = d.cli(&["kill", id]);
    assert!(o.status.success(), "{:?}", out(&o));
    let o = d.cli(&["wait", id, "--state", "stopped", "--timeout", "30s"]);
    assert!(o.status.success(), "{:?}", out(&o));
}

fn worktree(v: &Value) -> PathBuf {
    PathBuf::from(v["worktree"]["path"].as_str().expect("worktree path"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_branch_changes_diff_and_rm() {
    if !git_present() {
        return;
    }
    let d = Daemon::start(CONFIG).await;
    let r = repo();
    let repo_s = r.path().to_str().unwrap();
    // A session that writes a new file and changes a tracked one.
    let id = new_session(
        &d,
        &[
            "--name",
            "fixer",
            "--cwd",
            repo_s,
            "--worktree",
            "--",
            "sh",
            "-c",
            "echo hello > made.txt; echo two >> README; exec sleep 600",
        ],
    );
    let v = d
        .wait_session(&id, T, |v| {
            v["worktree"]["dirty"] == true && v["worktree"]["diffstat"]["files"] == 2
        })
        .await;
    let wt = worktree(&v);
    assert_eq!(v["worktree"]["branch"], "herd/fixer");
    assert_eq!(
        v["worktree"]["diffstat"],
        json!({"files": 2, "insertions": 2, "deletions": 0})
    );
    assert!(wt.starts_with(d.data_dir().join("worktrees")), "{wt:?}");
    assert_eq!(PathBuf::from(v["cwd"].as_str().unwrap()), wt);
    assert!(wt.join("made.txt").is_file());
    // The user's checkout is untouched.
    assert!(!r.path().join("made.txt").exists());
    assert_eq!(git(r.path(), &["status", "--porcelain"]), "");
    // herd diff: the new file and the change.
    let o = d.cli(&["diff", &id]);
    let (diff, se) = out(&o);
    assert!(o.status.success(), "{se}");
    assert!(
        diff.contains("+++ b/made.txt") && diff.contains("+hello"),
        "{diff}"
    );
    assert!(diff.contains("+two"), "{diff}");
    // herd show and ls: branch, dirty mark, diff stat.
    let (show, _) = out(&d.cli(&["show", &id]));
    assert!(show.contains("herd/fixer* 2 files +2 -0"), "{show}");
    let (ls, _) = out(&d.cli(&["ls"]));
    assert!(ls.contains("herd/fixer*"), "{ls}");
    // Committed work still counts (since the base), and the worktree is clean.
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "work"]);
    let v = d
        .wait_session(&id, T, |v| v["worktree"]["dirty"] == false)
        .await;
    assert_eq!(v["worktree"]["diffstat"]["files"], 2);
    let (diff, _) = out(&d.cli(&["diff", &id]));
    assert!(diff.contains("+hello"), "{diff}");
    // A list answers from its cache and catches up in the background.
    let deadline = std::time::Instant::now() + T;
    loop {
        let (_, list) = d.get("/v1/sessions").await;
        if list[0]["worktree"]["dirty"] == false {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // rm of a clean worktree removes it; the branch (with the work) stays.
    let (st, _) = d
        .post(&format!("/v1/sessions/{id}/remove"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "a live session is not removed");
    assert!(wt.is_dir());
    stop(&d, &id);
    let o = d.cli(&["rm", &id]);
    let (_, note) = out(&o);
    assert!(o.status.success(), "{note}");
    assert!(
        note.contains("removed") && note.contains("branch herd/fixer is kept"),
        "{note}"
    );
    assert!(!wt.exists());
    assert!(git(r.path(), &["log", "--oneline", "herd/fixer"]).contains("work"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_keeps_a_dirty_worktree_unless_forced() {
    if !git_present() {
        return;
    }
    let d = Daemon::start(CONFIG).await;
    let r = repo();
    let repo_s = r.path().to_str().unwrap();
    let script = "echo draft > notes.txt; exec sleep 600";
    let kept = new_session(
        &d,
        &["--cwd", repo_s, "--worktree", "--", "sh", "-c", script],
    );
    let forced = new_session(
        &d,
        &["--cwd", repo_s, "--worktree", "--", "sh", "-c", script],
    );
    let mut paths = vec![];
    for id in [&kept, &forced] {
        let v = d
            .wait_session(id, T, |v| v["worktree"]["dirty"] == true)
            .await;
        // Without a name, the branch is named after the short id.
        assert_eq!(
            v["worktree"]["branch"],
            format!("herd/{}", &id.replace('-', "")[..8])
        );
        paths.push(worktree(&v));
        stop(&d, id);
    }
    let o = d.cli(&["rm", &kept]);
    let (_, note) = out(&o);
    assert!(o.status.success(), "{note}");
    assert!(note.contains("uncommitted changes and is kept"), "{note}");
    assert!(
        note.contains(paths[0].to_str().unwrap()) && note.contains("--force"),
        "{note}"
    );
    assert!(paths[0].join("notes.txt").is_file(), "the work is kept");
    let (st, v) = d.get(&format!("/v1/sessions/{kept}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let o = d.cli(&["rm", "--force", "--json", &forced]);
    let (so, se) = out(&o);
    assert!(o.status.success(), "{se}");
    assert!(!paths[1].exists(), "forced: removed");
    let removed: Value = serde_json::from_str(&so).unwrap();
    assert_eq!(removed[0]["id"], forced.as_str());
    // Both branches stay: they hold the work.
    let branches = git(r.path(), &["branch", "--list", "herd/*"]);
    assert_eq!(branches.lines().count(), 2, "{branches}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_branch_clash_bad_name_and_not_a_repo() {
    if !git_present() {
        return;
    }
    let d = Daemon::start(CONFIG).await;
    let r = repo();
    std::fs::create_dir(r.path().join("sub")).unwrap();
    std::fs::write(r.path().join("sub/f"), "x\n").unwrap();
    git(r.path(), &["add", "-A"]);
    git(r.path(), &["commit", "-q", "-m", "sub"]);
    git(r.path(), &["branch", "feature"]);
    let sleep = json!(["sh", "-c", "exec sleep 600"]);
    // An existing branch is checked out; a cwd in a subdirectory stays in it.
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({"command": sleep, "cwd": r.path().join("sub"), "worktree": "feature"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["worktree"]["branch"], "feature");
    let wt = worktree(&v);
    assert_eq!(PathBuf::from(v["cwd"].as_str().unwrap()), wt.join("sub"));
    let head = git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]);
    assert_eq!(head.trim(), "feature");
    // The same branch again: it is checked out in that worktree.
    let before = d.count().await;
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({"command": sleep, "cwd": r.path(), "worktree": "feature"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("already checked out") && msg.contains(wt.to_str().unwrap()),
        "{msg}"
    );
    // The repository's own branch is checked out there.
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({"command": sleep, "cwd": r.path(), "worktree": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // A name git refuses.
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({"command": sleep, "cwd": r.path(), "worktree": "bad..name"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("invalid worktree") && msg.contains("bad..name"),
        "{msg}"
    );
    // Not a repository.
    let plain = tempfile::tempdir().unwrap();
    let o = d.cli(&[
        "new",
        "--cwd",
        plain.path().to_str().unwrap(),
        "--worktree",
        "--",
        "sh",
    ]);
    let (_, se) = out(&o);
    assert!(!o.status.success());
    assert!(
        se.contains("invalid cwd") && se.contains("not in a git repository"),
        "{se}"
    );
    // A bad spec is refused before git runs: no worktree, no branch left behind.
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({"command": sleep, "cwd": r.path(), "worktree": "fresh", "cols": 0}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(git(r.path(), &["branch", "--list", "fresh"]), "");
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({"command": sleep, "cwd": r.path(), "worktree": 7}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(d.count().await, before, "refusals change nothing");
    let list = git(r.path(), &["worktree", "list"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    // No worktree: no diff.
    let id = d.create(json!({"command": sleep})).await;
    let (st, v) = d.get(&format!("/v1/sessions/{id}/diff")).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worktree_survives_a_daemon_crash() {
    if !git_present() {
        return;
    }
    let mut d = Daemon::start(CONFIG).await;
    let r = repo();
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({
                "command": ["sh", "-c", "pwd; echo gen >> gens.txt; exec sleep 600"],
                "cwd": r.path(),
                "worktree": "keep-me",
                "restart": {"policy": "always"},
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let wt = worktree(&v);
    d.wait_screen(&id, wt.to_str().unwrap(), T).await;
    d.kill9();
    let d = Daemon::start_in(d.into_dir(), CONFIG).await;
    // Brought back in the same worktree, on the same branch.
    let v = d
        .wait_session(&id, T, |v| v["state"] == "ready" || v["state"] == "busy")
        .await;
    assert_eq!(v["worktree"]["branch"], "keep-me");
    assert_eq!(worktree(&v), wt);
    assert_eq!(PathBuf::from(v["cwd"].as_str().unwrap()), wt);
    let two_runs = |v: &Value| v["worktree"]["diffstat"]["insertions"] == 2;
    d.wait_session(&id, T, two_runs).await;
    let gens = std::fs::read_to_string(wt.join("gens.txt")).unwrap();
    assert_eq!(gens.lines().count(), 2, "{gens}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_without_git_says_so() {
    if !git_present() {
        return;
    }
    let r = repo();
    let empty = tempfile::tempdir().unwrap();
    let d = Daemon::start_env(CONFIG, &[("PATH", empty.path().to_str().unwrap())]).await;
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({"command": ["/bin/sh", "-c", "exec sleep 600"], "cwd": r.path(), "worktree": true}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("git was not found"), "{msg}");
    assert_eq!(d.count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_template_with_a_worktree() {
    if !git_present() {
        return;
    }
    let r = repo();
    // Outside the repository, so the fake CLI's log is no change of the worktree.
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("fake-claude.log");
    let config = format!(
        "{CONFIG}[claude]\nbinary = {:?}\nhooks = false\n\
         [templates.reviewer]\nprofile = \"claude\"\nworktree = true\n\
         [templates.reviewer.claude]\nmodel = \"opus\"\npermission_mode = \"plan\"\n\
         env = {{ FAKE_CLAUDE_LOG = {:?} }}\n",
        env!("CARGO_BIN_EXE_herd-fake-claude"),
        log.display().to_string()
    );
    let d = Daemon::start(&config).await;
    // --claude with the template: the CLI's --model overrides the template's.
    let id = new_session(
        &d,
        &[
            "--claude",
            "--template",
            "reviewer",
            "--name",
            "rev",
            "--model",
            "sonnet",
            "--cwd",
            r.path().to_str().unwrap(),
        ],
    );
    let v = d.session(&id).await;
    assert_eq!(v["worktree"]["branch"], "herd/rev");
    let wt = worktree(&v);
    assert!(
        common::wait_until(T, || std::fs::read_to_string(&log)
            .is_ok_and(|l| !l.is_empty()))
        .await
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let start: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(PathBuf::from(start["cwd"].as_str().unwrap()), wt, "{start}");
    let argv: Vec<String> = serde_json::from_value(start["argv"].clone()).unwrap();
    let after = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    assert_eq!(after("--model").as_deref(), Some("sonnet"), "{argv:?}");
    assert_eq!(
        after("--permission-mode").as_deref(),
        Some("plan"),
        "{argv:?}"
    );
    // The template's worktree can be turned off by the request.
    let (st, v) = d
        .post(
            "/v1/sessions",
            json!({"template": "reviewer", "cwd": r.path(), "worktree": false}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(v.get("worktree").is_none(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_one_name_get_branches_of_their_own() {
    if !git_present() {
        return;
    }
    let d = Daemon::start(CONFIG).await;
    let r = repo();
    let body = json!({"name": "twin", "command": ["sh", "-c", "exec sleep 600"], "cwd": r.path(), "worktree": true});
    let (a, b, c) = tokio::join!(
        d.post("/v1/sessions", body.clone()),
        d.post("/v1/sessions", body.clone()),
        d.post("/v1/sessions", body.clone())
    );
    let mut branches = vec![];
    for (st, v) in [a, b, c] {
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().unwrap().replace('-', "");
        let branch = v["worktree"]["branch"].as_str().unwrap().to_string();
        assert!(
            branch == "herd/twin" || branch == format!("herd/twin-{}", &id[..8]),
            "{branch}"
        );
        branches.push(branch);
    }
    branches.sort();
    branches.dedup();
    assert_eq!(branches.len(), 3, "{branches:?}");
    assert_eq!(branches[0], "herd/twin");
}
