//! The version of this build, with the git commit it was built from
//! (`unknown` when built outside a git checkout, e.g. from a tarball).

/// The commit, e.g. `a1fbb51c0d2e`.
pub const COMMIT: &str = env!("HERD_COMMIT");

/// `herd --version`: `0.1.0 (commit a1fbb51c0d2e)`.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HERD_COMMIT"),
    ")"
);
