//! This node's membership: registration under a lease, the keep-alive, the
//! status refresh, re-registration after a lost lease, and leaving.

use super::etcd::{Created, Etcd, EtcdError, LeaseId, Renewer};
use super::info::{NodeInfo, NodeLoad, NodeRecord};
use super::keys::{name_under, Keys};
use super::Settings;
use herd_actors::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why this node could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// etcd failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// Another live process holds this node name.
    #[error("cluster.node = {node:?} is already registered by a live daemon at {holder} (etcd key {key}): give this daemon another name (--node NAME), or stop that one")]
    Duplicate {
        /// The name.
        node: String,
        /// The holder's advertised URL, as far as its record says.
        holder: String,
        /// The key.
        key: String,
    },
}

/// This node's membership of the cluster; cheap to clone.
#[derive(Clone)]
pub struct Membership {
    pub(super) shared: Arc<Shared>,
}

/// Where the node stands with its lease, for whoever must act on a change
/// (the agent fences on `Lost` and reconciles on a new `Registered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Registered under this lease.
    Registered(LeaseId),
    /// The lease may be gone: nothing may run or be written as its owner.
    Lost,
}

pub(super) struct Shared {
    pub(super) etcd: Etcd,
    pub(super) settings: Settings,
    pub(super) keys: Keys,
    pub(super) record: NodeRecord,
    /// The lease the node's keys are bound to while registered.
    lease: Mutex<Option<LeaseId>>,
    registered: AtomicBool,
    lease_losses: AtomicU64,
    /// Set once the actor system runs; until then the load is idle.
    pub(super) registry: OnceLock<Registry>,
    stop: watch::Sender<bool>,
    /// The lease's phase, as it changes.
    pub(super) phase: watch::Sender<Phase>,
    /// Set while the node hands its sessions over: placement and claims skip it.
    pub(super) draining: AtomicBool,
    /// Told the remaining time of every renewal (the fence process).
    pub(super) fence: OnceLock<super::fence::Fence>,
    /// When etcd last confirmed the lease (asked at that instant): the
    /// lease runs at most a TTL beyond it.
    pub(super) renewed: Mutex<Instant>,
    /// Sessions placed on other nodes lately (until their load shows them).
    pub(super) placements: Mutex<Vec<(String, std::time::SystemTime)>>,
    /// Local copies being removed by the cluster itself (moved, taken
    /// over): their removal is not the session's end in etcd.
    pub(super) local_removals: Mutex<std::collections::HashSet<uuid::Uuid>>,
}

impl Membership {
    /// Registers this node: a lease of the TTL, then its record and load in
    /// one "create if absent" transaction; keeps it alive in the background.
    pub async fn join(settings: Settings, record: NodeRecord) -> Result<Self, JoinError> {
        let etcd = Etcd::connect(&settings.etcd, call_timeout(settings.lease_ttl)).await?;
        let keys = Keys::new(&settings.name);
        let (stop, _) = watch::channel(false);
        let (phase, _) = watch::channel(Phase::Lost);
        let shared = Arc::new(Shared {
            etcd,
            keys,
            record,
            settings,
            lease: Mutex::new(None),
            registered: AtomicBool::new(false),
            lease_losses: AtomicU64::new(0),
            registry: OnceLock::new(),
            stop,
            phase,
            draining: AtomicBool::new(false),
            fence: OnceLock::new(),
            placements: Mutex::default(),
            local_removals: Mutex::default(),
            renewed: Mutex::new(Instant::now()),
        });
        let lease = shared.register().await?;
        tracing::info!(
            node = %shared.record.node,
            cluster = %shared.settings.name,
            lease = %lease,
            ttl = %humantime::format_duration(shared.settings.lease_ttl),
            "joined the cluster"
        );
        tokio::spawn(keep(shared.clone(), lease));
        Ok(Self { shared })
    }

    /// From now on the load comes from this registry's sessions.
    pub fn attach(&self, registry: Registry) {
        let _ = self.shared.registry.set(registry);
    }

    /// Whether the node's keys are in etcd now, as far as it knows.
    pub fn registered(&self) -> bool {
        self.shared.registered.load(Ordering::Relaxed)
    }

    /// How many times the lease was lost since the daemon started.
    pub fn lease_losses(&self) -> u64 {
        self.shared.lease_losses.load(Ordering::Relaxed)
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.shared.record.node
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.shared.settings.name
    }

    /// The etcd client and the key layout, for lookups beside membership.
    pub fn etcd(&self) -> (&Etcd, &Keys) {
        (&self.shared.etcd, &self.shared.keys)
    }

    /// Every registered node, by name, with its health.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, EtcdError> {
        list_nodes(&self.shared).await
    }

    /// Leaves the cluster: stops the keep-alive and revokes the lease, so
    /// the node's keys go at once (not a TTL later).
    pub async fn leave(&self) {
        let s = &self.shared;
        let _ = s.stop.send(true);
        let lease = s.lease.lock().unwrap_or_else(|e| e.into_inner()).take();
        s.registered.store(false, Ordering::Relaxed);
        if let Some(lease) = lease {
            match s.etcd.revoke(lease).await {
                Ok(()) => tracing::info!(node = %s.record.node, "left the cluster"),
                Err(e) => tracing::warn!(
                    node = %s.record.node,
                    "cannot revoke the lease ({e}): the node leaves the list when it expires"
                ),
            }
        }
    }
}

impl Shared {
    /// One registration: a new lease, then the keys bound to it.
    async fn register(&self) -> Result<LeaseId, JoinError> {
        let asked = Instant::now();
        let lease = self.etcd.grant(self.settings.lease_ttl).await?;
        let key = self.keys.node(&self.record.node);
        let record = json(&self.record);
        let status = (self.keys.status(&self.record.node), json(&self.load()));
        match self.etcd.create(&key, record, vec![status], lease).await {
            Ok(Created::Yes) => {
                *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = asked;
                *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = Some(lease);
                self.registered.store(true, Ordering::Relaxed);
                self.phase.send_replace(Phase::Registered(lease));
                Ok(lease)
            }
            Ok(Created::Taken { value, .. }) => {
                let _ = self.etcd.revoke(lease).await;
                let holder = serde_json::from_slice::<NodeRecord>(&value)
                    .map(|r| r.advertise)
                    .unwrap_or_else(|_| "an unknown address".into());
                Err(JoinError::Duplicate {
                    node: self.record.node.clone(),
                    holder,
                    key,
                })
            }
            Err(e) => {
                let _ = self.etcd.revoke(lease).await;
                Err(e.into())
            }
        }
    }

    fn load(&self) -> NodeLoad {
        let mut load = self
            .registry
            .get()
            .map(NodeLoad::sample)
            .unwrap_or_else(NodeLoad::idle);
        load.draining = self.draining.load(Ordering::Relaxed);
        load
    }

    /// The lease this node's keys are bound to now, if registered.
    pub(super) fn current_lease(&self) -> Option<LeaseId> {
        if !self.registered.load(Ordering::Relaxed) {
            return None;
        }
        *self.lease.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the load now (a drain's flag must not wait for the tick).
    pub(super) async fn publish_load(&self) {
        if let Some(lease) = self.current_lease() {
            let key = self.keys.status(&self.record.node);
            if let Err(e) = self.etcd.put(&key, json(&self.load()), lease).await {
                tracing::debug!(node = %self.record.node, "cannot write the load: {e}");
            }
        }
    }

    /// Changes to `true` when the node leaves.
    pub(super) fn stop_rx(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Removes a local copy the cluster moved or replaced, once it ended;
    /// etcd keeps the session.
    pub(super) async fn remove_local(&self, reg: &Registry, id: uuid::Uuid) {
        self.local_removals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        super::agent::forget_local(reg, id).await;
    }

    /// Whether a removal of `id` is the cluster's own (and forgets it).
    pub(super) fn was_local_removal(&self, id: uuid::Uuid) -> bool {
        self.local_removals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// The one place a lost lease is handled: from here on nothing is
    /// written under the old lease (every owner's write compares the
    /// current one), and the agent stops the local copies of the sessions
    /// (`Phase::Lost`); the fence process has its own deadline.
    fn on_lease_lost(&self, lease: LeaseId, why: &EtcdError) {
        self.registered.store(false, Ordering::Relaxed);
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.phase.send_replace(Phase::Lost);
        self.lease_losses.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            node = %self.record.node,
            lease = %lease,
            "lost the cluster lease ({why}): this node is out of the cluster until etcd is back and it registers again"
        );
    }
}

/// How a lease's life ended.
enum End {
    Stopped,
    Lost(EtcdError),
}

/// Keeps the node registered until [`Membership::leave`]: renews the lease,
/// refreshes the load, and registers again after a loss.
async fn keep(shared: Arc<Shared>, mut lease: LeaseId) {
    loop {
        match renew(&shared, lease).await {
            End::Stopped => return,
            End::Lost(why) => shared.on_lease_lost(lease, &why),
        }
        // etcd may still hold the old lease (it was only unreachable): revoke
        // it so the stale keys go, then register anew.
        let mut backoff = Duration::from_millis(200);
        let mut stop = shared.stop.subscribe();
        loop {
            if shared.stopped() {
                return;
            }
            if shared.etcd.revoke(lease).await.is_ok() {
                match shared.register().await {
                    Ok(l) => {
                        lease = l;
                        tracing::info!(node = %shared.record.node, lease = %l, "registered again");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(node = %shared.record.node, "cannot register again yet: {e}")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(shared.settings.lease_ttl);
        }
    }
}

/// Renews `lease` every TTL/3 and writes the load every TTL/2, until the
/// node leaves or the lease is lost: etcd says it is gone, or no renewal
/// succeeded for a whole TTL (others then see the node dead).
async fn renew(shared: &Shared, lease: LeaseId) -> End {
    let ttl = shared.settings.lease_ttl;
    let mut stop = shared.stop.subscribe();
    let mut renew_tick = tokio::time::interval(ttl / 3);
    let mut status_tick = tokio::time::interval(ttl / 2);
    renew_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewer: Option<Renewer> = None;
    let mut last_ok = Instant::now();
    let status_key = shared.keys.status(&shared.record.node);
    loop {
        if shared.stopped() {
            return End::Stopped;
        }
        tokio::select! {
            _ = stop.changed() => return End::Stopped,
            _ = renew_tick.tick() => {
                // A node that was frozen (SIGSTOP, a VM paused) may find
                // its lease long expired: it must not act as owner first.
                if last_ok.elapsed() >= fence_after(ttl) {
                    return End::Lost(EtcdError::Timeout { op: "lease keep-alive", timeout: last_ok.elapsed() });
                }
                let asked = Instant::now();
                let result = match renewer.as_mut() {
                    Some(r) => r.renew().await,
                    None => match shared.etcd.keep_alive(lease).await {
                        Ok(mut r) => {
                            let result = r.renew().await;
                            renewer = Some(r);
                            result
                        }
                        Err(e) => Err(e),
                    },
                };
                match result {
                    Ok(granted) => {
                        // The lease runs `granted` from when the renewal was
                        // asked for, at the latest.
                        last_ok = asked;
                        *shared.renewed.lock().unwrap_or_else(|e| e.into_inner()) = asked;
                        if let Some(f) = shared.fence.get() {
                            f.arm(granted.saturating_sub(asked.elapsed()));
                        }
                    }
                    Err(e @ EtcdError::LeaseNotFound(_)) => return End::Lost(e),
                    Err(e) => {
                        // A broken stream is reopened at the next tick.
                        renewer = None;
                        tracing::warn!(node = %shared.record.node, "cannot renew the cluster lease: {e}");
                        if last_ok.elapsed() >= fence_after(ttl) {
                            return End::Lost(e);
                        }
                    }
                }
            }
            _ = status_tick.tick() => {
                match shared.etcd.put(&status_key, json(&shared.load()), lease).await {
                    Ok(()) => {}
                    Err(e @ EtcdError::LeaseNotFound(_)) => return End::Lost(e),
                    Err(e) => tracing::debug!(node = %shared.record.node, "cannot write the load: {e}"),
                }
            }
        }
    }
}

/// How long after its last renewal a node counts its lease as lost and
/// stops its sessions: before etcd can expire it (others claim only then),
/// with a margin for the stop itself.
pub(super) fn fence_after(ttl: Duration) -> Duration {
    ttl.saturating_sub((ttl / 5).max(Duration::from_millis(400)))
}

/// Every registered node, by name, with its health.
pub(super) async fn list_nodes(s: &Shared) -> Result<Vec<NodeInfo>, EtcdError> {
    let (nodes, statuses) = (s.keys.nodes(), s.keys.statuses());
    let records = s.etcd.list(&nodes).await?;
    let mut loads: BTreeMap<String, NodeLoad> = BTreeMap::new();
    for (k, v) in s.etcd.list(&statuses).await? {
        if let (Some(n), Ok(l)) = (name_under(&statuses, &k), serde_json::from_slice(&v)) {
            loads.insert(n.to_string(), l);
        }
    }
    let mut out = vec![];
    for (k, v) in records {
        let Some(name) = name_under(&nodes, &k) else {
            continue;
        };
        match serde_json::from_slice::<NodeRecord>(&v) {
            Ok(r) => out.push(NodeInfo::judge(
                r,
                loads.remove(name),
                s.settings.lease_ttl,
                &s.record.node,
            )),
            // Another version's record, or garbage: listed by nobody.
            Err(e) => tracing::warn!(key = %k, "unreadable node record in etcd: {e}"),
        }
    }
    Ok(out)
}

/// The deadline of one etcd call: a third of the TTL, so that a hung call
/// still leaves time to renew before the lease expires.
fn call_timeout(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(500))
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Plain structs of strings, numbers and maps: serialising cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}
