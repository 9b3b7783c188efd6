//! The actor system used as a library, without the daemon.
//!
//! Three sessions run side by side, each in its own pseudo-terminal under its
//! own SessionActor: a ticker, an interactive shell that is sent a command,
//! and a worker that crashes (exit code 1) and is restarted by its
//! `on-failure` policy while the other two carry on untouched. Every state
//! transition is printed as it arrives on the event bus.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example embed
//! ```
//!
//! It ends on its own after a few seconds, and `Registry::shutdown` leaves no
//! process behind.

use herd_actors::{
    Event, Registry, RestartPolicy, SessionDefaults, SessionHandle, SessionSpec, SessionState,
};
use std::error::Error;
use std::time::Duration;
use tokio::sync::broadcast;

/// How long to wait for anything in this demo before giving up.
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Defaults every session inherits; a spec may override each of them.
    let mut defaults = SessionDefaults::default();
    defaults.limits.quiet_after = Duration::from_millis(300);
    defaults.limits.stop_grace = Duration::from_secs(1);
    defaults.restart.backoff_initial = Duration::from_millis(250);
    let registry = Registry::start(defaults).await?;

    // Print transitions until all three sessions are final. Subscribe before
    // the first create, so that no event is missed.
    let events = registry.events().subscribe();
    let printer = tokio::spawn(print_events(registry.clone(), events, 3));

    let ticker = registry
        .create(named(
            "ticker",
            ["sh", "-c", "while true; do echo tick; sleep 0.5; done"],
        ))
        .await?;
    let shell = registry.create(named("shell", ["sh", "-i"])).await?;
    let mut spec = named(
        "worker",
        [
            "sh",
            "-c",
            "echo working in $$; sleep 1; echo crashing; exit 1",
        ],
    );
    spec.restart.policy = Some(RestartPolicy::OnFailure);
    let worker = registry.create(spec).await?;

    // Talk to the shell through its terminal.
    registry
        .wait_for(shell.id, PATIENCE, |i| i.pid.is_some())
        .await?;
    registry
        .input(shell.id, "echo the answer is $((6*7))\r".into())
        .await?;

    // The worker crashes after a second; its policy starts generation 1.
    let restarted = registry
        .wait_for(worker.id, PATIENCE, |i| {
            i.generation == 1 && i.pid.is_some()
        })
        .await?;
    println!(
        "\nworker restarted: generation {}, new pid {:?}, last exit code {:?}",
        restarted.generation, restarted.pid, restarted.exit_code
    );

    // The new worker runs the same command again; the shell has answered.
    let worker_handle = registry.get(worker.id).ok_or("worker vanished")?;
    wait_for_text(&worker_handle, "working in", 2).await;
    let shell_handle = registry.get(shell.id).ok_or("shell vanished")?;
    let answer = wait_for_text(&shell_handle, "the answer is 42", 1).await;
    println!("shell answered: {}", answer.trim());

    let ticker_now = registry.get(ticker.id).ok_or("ticker vanished")?.info();
    println!(
        "ticker untouched: generation {}, pid {:?}, {} bytes of output\n",
        ticker_now.generation, ticker_now.pid, ticker_now.metrics.bytes_out
    );

    for info in registry.list(&Default::default()) {
        let handle = registry.get(info.id).ok_or("session vanished")?;
        let out = handle.output(0, usize::MAX);
        let text = String::from_utf8_lossy(&out.data);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        println!(
            "{:<7} {:<8} gen {} restarts {}  last line: {}",
            info.name.as_deref().unwrap_or("?"),
            info.state.as_str(),
            info.generation,
            info.restarts,
            last.trim()
        );
    }
    println!();

    // Stop everything: SIGTERM, grace, SIGKILL of each process tree.
    registry.shutdown(Duration::from_secs(5)).await;
    tokio::time::timeout(PATIENCE, printer).await??;
    for info in registry.list(&herd_actors::ListFilter {
        all: true,
        ..Default::default()
    }) {
        println!(
            "{:<7} ended {} ({})",
            info.name.as_deref().unwrap_or("?"),
            info.state,
            info.reason
        );
    }
    Ok(())
}

/// Waits (up to [`PATIENCE`]) until the session's output holds `needle`
/// `count` times; returns the last line that holds it.
async fn wait_for_text(handle: &SessionHandle, needle: &str, count: usize) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let out = handle.output(0, usize::MAX);
        let text = String::from_utf8_lossy(&out.data);
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if lines.len() >= count || left.is_zero() {
            return lines.last().map(|l| l.to_string()).unwrap_or_default();
        }
        // Returns as soon as output past `out.end` arrives.
        handle.wait_output(out.end, 0, left).await;
    }
}

fn named<const N: usize>(name: &str, command: [&str; N]) -> SessionSpec {
    let mut spec = SessionSpec::new(command);
    spec.name = Some(name.into());
    spec
}

/// Prints each transition from the bus; returns once `sessions` sessions
/// have reached a final state.
async fn print_events(registry: Registry, mut rx: broadcast::Receiver<Event>, sessions: usize) {
    let mut ended = 0;
    while ended < sessions {
        let e: Event = match rx.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                println!("(missed {n} events)");
                continue;
            }
            Err(_) => break,
        };
        let name = registry
            .get(e.session_id)
            .and_then(|h| h.info().name)
            .unwrap_or_else(|| e.session_id.to_string());
        println!(
            "[{name:<6}] gen {} {:>10} -> {:<10} {}",
            e.generation,
            e.from.as_str(),
            e.to.as_str(),
            e.reason
        );
        if matches!(e.to, SessionState::Stopped | SessionState::Failed) {
            ended += 1;
        }
    }
}
