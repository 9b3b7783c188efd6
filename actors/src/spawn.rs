//! Starting a child on a PTY with `posix_spawn`.
//!
//! portable-pty forks, then scans and closes every descriptor in the child.
//! In a daemon with thousands of sessions (threads, mappings, descriptors)
//! that fork copies large page tables, the child's `exec` tears them down
//! again, and the scan walks thousands of fds: spawning grows with the
//! fleet. `posix_spawn` uses a vfork-style clone instead (no copy), and every
//! descriptor herd opens is close-on-exec already, so nothing needs closing.
//!
//! The child becomes a session leader (`POSIX_SPAWN_SETSID`) and then opens
//! the PTY slave as its stdin, which makes it its controlling terminal (job
//! control, SIGWINCH, Ctrl-C); stdout and stderr are copies of it. Signals
//! the daemon ignores or blocks are reset to their defaults.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Signals whose disposition the child gets back to default.
const RESET: [i32; 7] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGALRM,
    libc::SIGCHLD,
    libc::SIGPIPE,
];

fn cstring(what: &str, s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

/// Starts `program` (an absolute or cwd-relative path) with `argv` and the
/// full environment `env` in `cwd`, on the terminal `tty`. Returns its pid.
pub(crate) fn spawn_on_tty(
    program: &Path,
    argv: &[String],
    env: &[(OsString, OsString)],
    cwd: Option<&Path>,
    tty: &Path,
) -> io::Result<i32> {
    let program = cstring("program", program.as_os_str())?;
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| cstring("argument", OsStr::new(a)))
        .collect::<io::Result<_>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            cstring("environment", &kv)
        })
        .collect::<io::Result<_>>()?;
    let tty = cstring("tty path", tty.as_os_str())?;
    let cwd = cwd.map(|c| cstring("cwd", c.as_os_str())).transpose()?;
    let mut argv_ptrs: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut env_ptrs: Vec<*mut libc::c_char> = envp.iter().map(|e| e.as_ptr() as *mut _).collect();
    env_ptrs.push(std::ptr::null_mut());

    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(r))
        }
    };
    // SAFETY: the attribute and file-action objects are initialised before
    // use and destroyed on every path; every pointer handed to posix_spawn
    // points into CStrings and vectors that outlive the call.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut actions))?;
        if let Err(e) = check(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut actions);
            return Err(e);
        }
        let result = (|| {
            if let Some(cwd) = &cwd {
                check(libc::posix_spawn_file_actions_addchdir_np(
                    &mut actions,
                    cwd.as_ptr(),
                ))?;
            }
            // Opened after setsid: the slave becomes the controlling terminal.
            check(libc::posix_spawn_file_actions_addopen(
                &mut actions,
                0,
                tty.as_ptr(),
                libc::O_RDWR,
                0,
            ))?;
            check(libc::posix_spawn_file_actions_adddup2(&mut actions, 0, 1))?;
            check(libc::posix_spawn_file_actions_adddup2(&mut actions, 0, 2))?;
            let mut defaults: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut defaults);
            for s in RESET {
                libc::sigaddset(&mut defaults, s);
            }
            check(libc::posix_spawnattr_setsigdefault(&mut attr, &defaults))?;
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            check(libc::posix_spawnattr_setsigmask(&mut attr, &empty))?;
            let flags = libc::POSIX_SPAWN_SETSID as libc::c_int
                | libc::POSIX_SPAWN_SETSIGDEF
                | libc::POSIX_SPAWN_SETSIGMASK;
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                flags as libc::c_short,
            ))?;
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                &actions,
                &attr,
                argv_ptrs.as_ptr(),
                env_ptrs.as_ptr(),
            ))?;
            Ok(pid)
        })();
        libc::posix_spawnattr_destroy(&mut attr);
        libc::posix_spawn_file_actions_destroy(&mut actions);
        result
    }
}
