//! `herd serve`: the daemon.

use crate::config::cluster::ClusterConfig;
use crate::config::Config;
use crate::daemon::api::{self, AppState};
use crate::daemon::cluster::{self, Cluster};
use crate::daemon::recorder::{Recorder, Recordings};
use crate::daemon::recovery;
use crate::daemon::store::{Store, StoreHealth, STORE_FILE};
use crate::formats;
use crate::paths;
use anyhow::{bail, Context, Result};
use herd_actors::{Hooks, Journal, Registry};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `herd serve` that override the config file.
#[derive(Debug, Default)]
pub struct ServeOptions {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--token` / `HERD_TOKEN`: the token clients must present (over
    /// `server.token` and the token file).
    pub token: Option<String>,
    /// `--etcd` (repeatable): join a cluster through these etcd URLs.
    pub etcd: Vec<String>,
    /// `--node`: this node's name in the cluster.
    pub node: Option<String>,
    /// `--advertise`: the URL other nodes reach this one at.
    pub advertise: Option<String>,
    /// `--label k=v` (repeatable): this node's labels.
    pub labels: Vec<(String, String)>,
}

impl ServeOptions {
    /// Lays the cluster flags over `[cluster]`: `--etcd` replaces the file's
    /// list (and creates the section), the others need a section.
    fn apply_cluster(&self, cfg: &mut Config) -> Result<()> {
        if !self.etcd.is_empty() {
            cfg.cluster
                .get_or_insert_with(|| ClusterConfig::with_etcd(vec![]))
                .etcd = self.etcd.clone();
        }
        let any = self.node.is_some() || self.advertise.is_some() || !self.labels.is_empty();
        let Some(section) = cfg.cluster.as_mut() else {
            if any {
                bail!("--node, --advertise and --label need --etcd URL or a [cluster] section in the config");
            }
            return Ok(());
        };
        if let Some(n) = &self.node {
            section.node = Some(n.clone());
        }
        if let Some(a) = &self.advertise {
            section.advertise = Some(a.clone());
        }
        section.labels.extend(self.labels.iter().cloned());
        section
            .check()
            .map_err(|e| anyhow::anyhow!("invalid cluster options: {e}"))
    }
}

/// Stored transitions read back at start, for `herd events` (what the event
/// bus keeps in memory).
const RECENT_EVENTS: usize = 10_000;

/// Runs the daemon until SIGTERM or Ctrl-C.
pub async fn run(opts: ServeOptions) -> Result<()> {
    let (mut cfg, found) = Config::discover(opts.config.as_deref())?;
    if let Some(l) = opts.listen {
        cfg.server.listen = l;
    }
    if let Some(t) = opts.token.as_ref().filter(|t| !t.trim().is_empty()) {
        cfg.server.token = Some(t.trim().to_string());
    }
    opts.apply_cluster(&mut cfg)?;
    Cluster::check_supported(cfg.cluster.is_some())?;
    let data_dir = paths::data_dir(opts.data_dir.as_deref().or(cfg.server.data_dir.as_deref()))?;
    paths::ensure_private_dir(&data_dir)?;
    let explicit_token = cfg.server.token.is_some();
    if !cfg.server.listen.ip().is_loopback() && !explicit_token {
        bail!(
            "refusing to listen on non-loopback address {} without server.token set explicitly in the config",
            cfg.server.listen
        );
    }
    // One daemon per data dir: held until the process exits.
    let _lock = paths::lock_data_dir(&data_dir)?;
    contain();
    match crate::daemon::server::raise_nofile_limit() {
        Ok(n) => tracing::debug!(nofile = n, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let token = match cfg.server.token.clone() {
        Some(t) => t,
        None => load_or_create_token(&data_dir)?,
    };
    // Bind before anything else changes: a daemon that cannot listen must
    // leave the store and every session as they were.
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // Before the store: a node refused by the cluster (its name held by a
    // live daemon, etcd unreachable) changes nothing.
    let capacity = cfg.limits.max_sessions;
    let cluster = match &cfg.cluster {
        Some(c) => {
            let settings = cluster::Settings::resolve(c, addr).map_err(anyhow::Error::msg)?;
            Cluster::join(settings, capacity).await?
        }
        None => Cluster::single(format!("http://{addr}"), capacity),
    };
    let store_path = data_dir.join(STORE_FILE);
    let mut store = Store::open(&store_path)?;
    let pruned = store.prune(cfg.store.retention)?;
    let stored = store.load()?;
    let history = store.recent_events(RECENT_EVENTS)?;
    let (mut settled, report) = recovery::settle(&mut store, stored, &cfg.session_defaults())?;
    // In a cluster, a session another node took over meanwhile is not
    // started here again: its local copy goes once restored as history.
    let mut moved = vec![];
    for (s, live) in settled.iter_mut().filter(|(_, live)| *live) {
        match cluster.reclaim(s.info.id).await {
            Ok(true) => {}
            Ok(false) => {
                *live = false;
                moved.push(s.info.id);
            }
            Err(e) => {
                tracing::error!(session = %s.info.id, "cannot tell whether another node runs the session ({e}): not started here now; it is claimed when it is free");
                *live = false;
            }
        }
    }
    let (journal, records) = Journal::channel();
    let records = cluster.mirror(records);
    let health = StoreHealth::default();
    store
        .spawn_writer(records, health.clone())
        .context("starting the store writer")?;
    let recorder = if cfg.recording.enabled {
        let dir = formats::files::recordings_dir(&data_dir);
        let shards = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(4);
        Some(Arc::new(
            Recorder::start(
                dir,
                cfg.recording.compress,
                cfg.recording.max_bytes.0,
                shards,
            )
            .context("starting the recorder")?,
        ))
    } else {
        None
    };
    let hooks = Hooks {
        journal,
        tap: recorder.clone().map(|r| r as Arc<dyn herd_actors::Tap>),
    };
    let registry = Registry::start_with(cfg.session_defaults(), hooks)
        .await
        .context("starting the actor system")?;
    cluster.attach(&registry);
    // Before recovery: its transitions are notified too.
    let notifier =
        crate::daemon::notify::Notifier::start(&store_path, cfg.notify.clone(), registry.events())?;
    let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(cert), Some(key)) => Some(crate::daemon::web::tls::server_config(cert, key)?),
        _ => None,
    };
    let claude = Arc::new(crate::daemon::claude::ClaudeProfile::new(
        cfg.claude.clone(),
        data_dir.clone(),
    ));
    // Before sessions come back: their Claude hooks must know the port.
    claude.set_hook_base(hook_base(addr));
    // The stored history goes first: recovery's own transitions come after it.
    registry.events().seed(history.clone());
    let output_limit = cfg.limits.output_buffer.0 as usize;
    recovery::restore(&registry, settled, &history, &claude, |id| {
        formats::source::last_output(&data_dir, id, output_limit).unwrap_or_else(|e| {
            tracing::warn!(session = id, "cannot read the last output back: {e:#}");
            vec![]
        })
    })
    .await?;
    for id in moved {
        tracing::info!(session = %id, "another node runs the session now: dropping the local copy");
        cluster.drop_moved(&registry, id).await;
    }
    cluster.start_agent(&registry, &claude);
    tracing::info!(
        store = %store_path.display(),
        restarted = report.restarted,
        history = report.history,
        killed_stale = report.killed,
        interrupted_messages = report.interrupted,
        pruned,
        "store loaded"
    );
    let retention = crate::daemon::retention::Policy {
        max_age: cfg.store.retention,
        keep: cfg.store.keep_ended,
    };
    let recordings = Recordings::new(formats::files::recordings_dir(&data_dir), recorder.clone());
    tokio::spawn(prune_history(
        registry.clone(),
        retention,
        recordings.clone(),
        data_dir.clone(),
        cfg.recording.retention,
    ));
    let web = Arc::new(crate::daemon::web::WebAuth::new(
        &token,
        addr.port(),
        tls.is_some(),
    ));
    if cfg.recording.enabled {
        tokio::spawn(release_ended(registry.clone()));
    }
    let state_claude = claude.clone();
    let state = AppState {
        registry: registry.clone(),
        token: Arc::new(token),
        started: Instant::now(),
        claude,
        data_dir: data_dir.clone(),
        store_health: health,
        notifier,
        web,
        public_url: cfg.server.public_url.as_deref().map(Arc::from),
        retention,
        recordings,
        idempotency: Default::default(),
        loopback_only: cfg.server.listen.ip().is_loopback(),
        templates: Arc::new(cfg.templates.clone()),
        worktrees: Default::default(),
        cluster: cluster.clone(),
    };
    let app = api::router(
        state,
        cfg.server.body_limit.0 as usize,
        cfg.server.body_timeout,
    );
    let url = format!("http://{addr}");
    // Clients (and tests on port 0) find the daemon through this file.
    paths::write_private(&data_dir.join(paths::URL_FILE), url.as_bytes())?;
    tracing::info!(%url, data_dir = %data_dir.display(), config = %found.describe(), "herd listening");
    eprintln!(
        "herd {} listening on {url} (data dir {}, config: {})",
        crate::version::LONG,
        data_dir.display(),
        found.describe()
    );
    match tls {
        // TLS: rustls on the same port (loopback clients keep plain HTTP);
        // the connection cap and header timeouts of the plain server loop
        // do not apply to it yet.
        Some(config) => {
            tracing::info!("TLS on for every non-loopback client");
            let listener = crate::daemon::web::tls::TlsListener::new(listener, config)
                .context("starting the TLS listener")?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .context("serving the API")?;
        }
        None => {
            let limits = crate::daemon::server::Limits {
                max_connections: cfg.server.max_connections,
                header_timeout: cfg.server.header_timeout,
            };
            crate::daemon::server::serve(listener, app, limits, shutdown_signal()).await;
        }
    }
    // First: the sessions go to other nodes, then the node leaves the list
    // at once, not a TTL later.
    cluster.hand_over(&registry, &state_claude).await;
    cluster.leave().await;
    tracing::info!("shutting down: stopping sessions");
    registry.shutdown(Duration::from_secs(15)).await;
    // shutdown() flushed the journal: everything is stored. Now the recordings.
    if let Some(r) = &recorder {
        r.flush(true);
    }
    let _ = std::fs::remove_file(data_dir.join(paths::URL_FILE));
    tracing::info!("stopped");
    Ok(())
}

/// Where Claude sessions' hooks reach the daemon: its own address, on
/// loopback when it listens on every interface.
fn hook_base(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Containment: detached descendants of sessions are adopted by the daemon
/// (not init), so they stay within reach of the sweep by marker, and are
/// reaped when they die.
fn contain() {
    if let Err(e) = herd_actors::process::become_subreaper() {
        tracing::warn!("cannot become child subreaper ({e}); detached session processes are still swept by their marker");
        return;
    }
    tokio::spawn(async {
        let mut sigchld =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        loop {
            // SIGCHLD says a child changed; the slow tick covers coalesced signals
            // (cheap: reap_orphans asks the kernel before it scans /proc).
            let tick = tokio::time::sleep(Duration::from_secs(5));
            match &mut sigchld {
                Some(s) => {
                    tokio::select! { _ = s.recv() => {}, _ = tick => {} }
                }
                None => tick.await,
            }
            let _ = tokio::task::spawn_blocking(herd_actors::process::reap_orphans).await;
        }
    });
}

fn load_or_create_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(paths::TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => {
            // A token others can read, or guess, protects nothing.
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .with_context(|| format!("reading token file {}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                bail!(
                    "token file {} is readable by other users (mode {:o}): run `chmod 600 {}`, or delete it to have a new token generated",
                    path.display(),
                    mode & 0o777,
                    path.display()
                );
            }
            let t = t.trim();
            if t.len() < 16 {
                bail!(
                    "token in {} is too short ({} characters, at least 16): delete the file to have a new token generated",
                    path.display(),
                    t.len()
                );
            }
            return Ok(t.to_string());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading token file {}", path.display())),
    }
    let token: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    paths::write_private(&path, token.as_bytes())?;
    tracing::info!(path = %path.display(), "generated API token");
    Ok(token)
}

/// Forgets stopped and failed sessions beyond the retention (count and
/// age) with their recordings, every few minutes, and deletes old
/// recordings of ended sessions.
async fn prune_history(
    registry: Registry,
    retention: crate::daemon::retention::Policy,
    collected: Recordings,
    data_dir: PathBuf,
    keep_recordings: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    let recordings = formats::files::recordings_dir(&data_dir);
    loop {
        tick.tick().await;
        if let Err((_, e)) = crate::daemon::retention::gc(&registry, &collected, retention).await {
            tracing::warn!("cannot forget ended sessions now: {e}");
        }
        prune_recordings(&registry, &recordings, keep_recordings);
    }
}

/// Lets go of the output and screen of ended sessions (their recordings
/// hold them): a stopped session keeps only its summary in memory. A few
/// seconds after the end, so the recorder has written the last bytes.
async fn release_ended(registry: Registry) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let n = registry.release_ended(Duration::from_secs(5));
        if n > 0 {
            tracing::debug!(released = n, "let go of the buffers of ended sessions");
        }
    }
}

/// Deletes the recordings of sessions that ended (or are gone) and whose
/// newest file is older than `keep`.
fn prune_recordings(registry: &Registry, dir: &Path, keep: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let live = e
            .file_name()
            .to_str()
            .and_then(|n| uuid::Uuid::parse_str(n).ok())
            .and_then(|id| registry.get(id))
            .is_some_and(|h| !h.info().state.is_final());
        // The newest file counts: writing a file does not touch its folder's mtime.
        let newest = std::fs::read_dir(e.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|f| f.metadata().and_then(|m| m.modified()).ok())
            .max();
        let age = newest.and_then(|t| t.elapsed().ok()).unwrap_or_default();
        if !live && age > keep {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(path = %e.path().display(), "cannot prune recordings: {err}");
            }
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}
