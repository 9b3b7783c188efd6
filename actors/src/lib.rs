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
//! - `registry`: RegistryActor, a one-for-one supervisor owning the session table;
//! - `session`: SessionActor, one per session: lifecycle, limits, restart policy;
//! - `pty`: PtyActor, one child in a PTY (reader, waiter and writer tasks);
//! - `metrics`: MetricsActor, CPU and RSS of the child's process tree.
//!
//! Around them (dependencies point down this list, never up):
//! - `profile`: what a session's events mean — generic, shell, claude strategies;
//! - `handle`: the shared read side of a session, and its one transition function;
//! - `journal`, `tap`: ordered records for a store; output and markers for a recorder;
//! - `events`: the bus every transition is published on;
//! - `queue`: the prompt queue (send, and wait for the reply);
//! - `output`, `screen`: the output ring buffer and the vt100 screen;
//! - `snapshot`: a session's snapshot, every write revisioned, its JSON kept ready;
//! - `spec`, `config`, `info`: what a session runs, its defaults, its snapshot;
//! - `state`, `cause`, `policy`: states and the transition table, why things
//!   end, restart decisions;
//! - `budget`: token and cost budgets, prices and the fleet's ledger;
//! - `worktree`: a session's git worktree, as facts (the daemon runs git);
//! - `keys`, `bytesize`, `error`: key names, sizes, errors;
//! - `credits`, `spawn`, [`process`]: backpressure, posix_spawn on a PTY,
//!   process groups and trees on Linux.
#![warn(missing_docs, unreachable_pub)]

mod budget;
mod bytesize;
mod cause;
mod config;
mod credits;
mod error;
mod events;
mod gate;
mod handle;
mod info;
mod journal;
pub mod keys;
mod metrics;
mod output;
mod policy;
pub mod process;
mod profile;
mod pty;
mod queue;
mod registry;
mod screen;
mod session;
mod snapshot;
mod spawn;
mod spec;
mod state;
mod sweep;
mod tap;
mod usage;
mod waiting;
mod worktree;

pub use budget::{
    price_of, tokens_of, Budget, BudgetConfig, BudgetCrossing, BudgetStatus, Price, Prices, Scope,
    Spend, Unit,
};
pub use bytesize::ByteSize;
pub use cause::{EndCause, Request};
pub use config::{
    bounds, env_matches, validate_env_patterns, LimitOverrides, LimitsConfig, MetricsConfig,
    RestartConfig, RestartOverrides, RestartPolicy, SessionDefaults, BASE_ENV,
};
pub use credits::CreditToken;
pub use error::HerdError;
pub use events::{Event, EventBus, Notice, NoticeKind};
pub use gate::{FleetConfig, FleetStatus};
pub use handle::{OutputChunk, SessionHandle};
pub use info::{Metrics, SessionInfo};
pub use journal::{Journal, Record, StoreFailure, StoreFault};
pub use output::OutputSlice;
pub use policy::ExitStatus;
pub use profile::claude::hook::{ClaudeHook, HOOK_EVENTS as CLAUDE_HOOK_EVENTS};
pub use profile::claude::transcript::transcript_path as claude_transcript_path;
pub use queue::{Message, MessageState};
pub use registry::{Hooks, ListFilter, Registry, Restore};
pub use screen::{render_text, LAST_LINE_MAX};
pub use spec::{
    find_program, validate_size, ClaudeOptions, Effective, Profile, Secret, SessionPatch,
    SessionSpec, MAX_COLS, MAX_ROWS,
};
pub use state::{SessionState, TransitionError};
pub use tap::{Marker, Tap, TapEvent};
pub use usage::Usage;
pub use waiting::{Choice, Failure, Meaning, WaitReason, Waiting};
pub use worktree::{DiffStat, Worktree, WorktreeInfo, WorktreeStatus};
