//! The baselines: the same children in bare portable-pty terminals, with no
//! supervisor in between.

use crate::util;
use anyhow::{anyhow, Context, Result};
use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Terminal size of every bench session (herd's default).
pub const COLS: u16 = 120;
/// See [`COLS`].
pub const ROWS: u16 = 40;

/// A child in a bare PTY; its process group is SIGKILLed and reaped on drop.
pub struct BareChild {
    /// The master side (reader and writer are taken from it).
    pub master: Box<dyn MasterPty + Send>,
    child: Box<dyn Child + Send + Sync>,
    pid: i32,
    ticket: u64,
}

impl BareChild {
    /// Opens a PTY and spawns `argv` in it, like herd's PtyActor does.
    pub fn spawn(argv: &[String]) -> Result<Self> {
        Self::spawn_cmd(
            argv,
            CommandBuilder::from_argv(argv.iter().map(Into::into).collect()),
        )
    }

    /// Spawns `argv` in `cwd` with exactly `env` (plus `TERM`), nothing
    /// inherited: how the Claude harness runs the CLI (`env -i ...`).
    pub fn spawn_env(argv: &[String], env: &[(String, String)], cwd: &Path) -> Result<Self> {
        let mut cmd = CommandBuilder::from_argv(argv.iter().map(Into::into).collect());
        cmd.env_clear();
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.cwd(cwd);
        Self::spawn_cmd(argv, cmd)
    }

    /// The child's pid (also its process group).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn spawn_cmd(argv: &[String], mut cmd: CommandBuilder) -> Result<Self> {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| anyhow!("openpty: {e}"))?;
        cmd.env("TERM", "xterm-256color");
        let child = pair
            .slave
            .spawn_command(cmd)
            .map_err(|e| anyhow!("spawn {argv:?}: {e}"))?;
        drop(pair.slave);
        let pid = child
            .process_id()
            .ok_or_else(|| anyhow!("spawned child has no pid"))? as i32;
        let ticket = util::register(pid, util::Reap::Group);
        Ok(Self {
            master: pair.master,
            child,
            pid,
            ticket,
        })
    }
}

impl Drop for BareChild {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the child is ours
        // and not yet reaped, so its pid (= its group id) is not reused.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
            libc::kill(self.pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        util::forget(self.ticket);
    }
}

/// One bare throughput run: spawns `argv` (which waits for a line of input),
/// sends the line, then reads the terminal to EOF with a 64 KiB buffer.
/// Returns the bytes read and the seconds from the input to EOF.
pub fn drain(argv: &[String]) -> Result<(u64, f64)> {
    let c = BareChild::spawn(argv)?;
    let mut reader = c
        .master
        .try_clone_reader()
        .map_err(|e| anyhow!("reader: {e}"))?;
    // Kept until the end: dropping the writer sends EOF to the child.
    let mut writer = c.master.take_writer().map_err(|e| anyhow!("writer: {e}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    writer.write_all(b"\r").context("write")?;
    writer.flush().ok();
    let t0 = Instant::now();
    let mut bytes = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break, // EIO: the child and its terminal are gone
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    drop(writer);
    drop(c);
    Ok((bytes, secs))
}

/// Spawns `n` children of `argv` in bare PTYs, one after the other; returns
/// them (alive) and the seconds it took.
pub fn spawn_many(argv: &[String], n: usize) -> Result<(Vec<BareChild>, Duration)> {
    let mut out = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        out.push(BareChild::spawn(argv).with_context(|| format!("bare spawn {i}"))?);
    }
    Ok((out, t0.elapsed()))
}
