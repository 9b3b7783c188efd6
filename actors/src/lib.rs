//! # herd-actors
//!
//! The actor system of herd: supervised interactive programs, each in its own
//! pseudo-terminal, on [ractor] and tokio. Usable on its own, without the daemon:
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd_actors::HerdError> {
//! use herd_actors::{Registry, SessionDefaults, SessionSpec};
//! let registry = Registry::start(SessionDefaults::default()).await?;
//! let info = registry.create(SessionSpec::new(["bash"])).await?;
//! registry.input(info.id, "echo hi\r".into()).await?;
//! # Ok(()) }
//! ```
//!
//! The tree:
//! - [`registry`]: RegistryActor, a one-for-one supervisor owning the session table;
//! - [`session`]: SessionActor, one per session: state machine and restart policy;
//! - [`pty`]: PtyActor, one child in a PTY (reader, waiter and writer threads);
//! - [`metrics`]: MetricsActor, CPU and RSS of the child's process tree.
//!
//! Around them:
//! - [`state`]: the states and the one table of allowed transitions;
//! - [`events`]: the bus every transition is published on;
//! - [`journal`]: ordered records of every change, for a store;
//! - [`tap`]: every session's output, input and markers, for a recorder;
//! - [`policy`]: restart decisions, intensity and backoff;
//! - [`config`]: defaults and per-session overrides;
//! - [`spec`]: what a session runs, with validation;
//! - [`handle`]: the shared read side of a session (info, output, screen);
//! - [`output`], [`screen`]: the output ring buffer and the vt100 screen;
//! - [`queue`]: the prompt queue (send, and wait for the reply);
//! - [`claude`]: the Claude Code profile: state from the screen, replies from the transcript;
//! - [`keys`]: key names to terminal bytes;
//! - [`spawn`]: starting a child on a PTY with posix_spawn;
//! - [`process`]: process groups, trees and liveness on Linux;
//! - [`credits`]: backpressure from a reader thread into a mailbox.
#![warn(missing_docs, unreachable_pub)]

pub mod bytesize;
pub mod claude;
pub mod config;
pub mod credits;
pub mod error;
pub mod events;
pub mod handle;
pub mod info;
pub mod journal;
pub mod keys;
pub mod metrics;
pub mod output;
pub mod policy;
pub mod process;
pub mod pty;
pub mod queue;
pub mod registry;
pub mod screen;
pub mod session;
// Used by the shell profile (wired in separately).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod shell_marks;
pub mod spawn;
pub mod spec;
pub mod state;
pub mod tap;

pub use bytesize::ByteSize;
pub use config::{
    LimitOverrides, LimitsConfig, MetricsConfig, RestartConfig, RestartOverrides, RestartPolicy,
    SessionDefaults,
};
pub use error::HerdError;
pub use events::{Event, EventBus};
pub use handle::{OutputChunk, SessionHandle};
pub use info::{Metrics, SessionInfo};
pub use journal::{Journal, Record, SHUTDOWN_REASON};
pub use output::OutputSlice;
pub use policy::ExitStatus;
pub use queue::{Message, MessageState};
pub use registry::{Hooks, ListFilter, Registry, Restore};
pub use spec::{ClaudeOptions, Profile, Secret, SessionPatch, SessionSpec};
pub use state::{SessionState, TransitionError};
pub use tap::{Tap, TapEvent};
