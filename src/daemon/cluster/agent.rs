//! The node's cluster agent: the one task that acts on ownership changes.
//!
//! - **Failover**: it watches the session keys; when an owner key goes (its
//!   node's lease expired, or the node handed the session over) it claims
//!   the orphan (one transaction; exactly one node wins) and adopts it:
//!   same id, task mapping and queued messages; a Claude session's
//!   transcript restored before `--resume`. Every node computes the same
//!   ranking of the nodes that fit (placement), and the orphans are dealt
//!   round the ranking; a node claims its own share at once and anyone's
//!   after [`GRACE`], so a dead preferred node delays nothing for long.
//! - **Fencing**: when the lease is lost it stops every local session at
//!   once ([`EndCause::Fenced`]); when the node registers again it takes
//!   back what nobody claimed meanwhile and forgets what moved.
//! - **Drain**: it hands every local session over (transcript copied, the
//!   session stopped, the owner key released) and waits until they run
//!   elsewhere.

use super::node::{Phase, Shared};
use super::owner::Placed;
use super::placement;
use crate::daemon::claude::ClaudeProfile;
use herd_actors::{EndCause, ListFilter, Profile, Registry, SessionState};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use uuid::Uuid;

/// How long an orphan waits for the node it was dealt to before any node
/// may claim it.
const GRACE: Duration = Duration::from_millis(1500);

/// What the agent needs of the daemon.
#[derive(Clone)]
pub struct Host {
    /// The actor system.
    pub registry: Registry,
    /// Builds Claude sessions (a Claude session is prepared anew on the
    /// node that adopts it).
    pub claude: Arc<ClaudeProfile>,
}

/// The agent's state.
pub(super) struct Agent {
    shared: Arc<Shared>,
    host: Host,
    /// When each orphan was first seen.
    seen: HashMap<Uuid, Instant>,
    /// Sessions this node stopped when it lost its lease.
    fenced: HashSet<Uuid>,
    /// Adoptions that failed, not retried before the instant.
    backoff: HashMap<Uuid, Instant>,
    /// The size of each Claude transcript when it was last copied to etcd.
    copied: HashMap<Uuid, u64>,
}

impl Agent {
    pub(super) fn new(shared: Arc<Shared>, host: Host) -> Self {
        Self {
            shared,
            host,
            seen: HashMap::new(),
            fenced: HashSet::new(),
            backoff: HashMap::new(),
            copied: HashMap::new(),
        }
    }

    /// Runs until the node leaves: `stop` ends it.
    pub(super) async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut phase = self.shared.phase.subscribe();
        let mut tick = tokio::time::interval(self.shared.settings.lease_ttl / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (woke, mut wake) = mpsc::channel::<()>(1);
        tokio::spawn(watch_owners(self.shared.clone(), woke, stop.clone()));
        let mut transcripts = self.host.registry.events().subscribe();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                r = phase.changed() => {
                    if r.is_err() { return; }
                    let now = *phase.borrow_and_update();
                    match now {
                        Phase::Lost => self.fence().await,
                        Phase::Registered(_) => self.reconcile().await,
                    }
                }
                _ = wake.recv() => self.scan().await,
                _ = tick.tick() => {
                    self.scan().await;
                    self.copy_grown_transcripts().await;
                }
                e = transcripts.recv() => match e {
                    Ok(e) => self.on_transition(&e).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
            }
        }
    }

    /// Keeps etcd told of what a transition means for the cluster: the
    /// transcript after each turn, and whether the session ended for good.
    async fn on_transition(&mut self, e: &herd_actors::Event) {
        let id = e.session_id;
        let for_good = e.to.is_final()
            && !matches!(
                e.cause,
                Some(EndCause::Fenced | EndCause::HandedOver | EndCause::DaemonShutdown)
            );
        let r = if e.to == SessionState::Ready {
            self.copy_transcript(id).await;
            return;
        } else if for_good {
            self.shared.mark_ended(id, true).await
        } else if e.to == SessionState::Starting {
            self.shared.mark_ended(id, false).await
        } else {
            return;
        };
        match r {
            Ok(_) | Err(super::owner::OwnError::NotRegistered) => {}
            Err(err) => {
                tracing::warn!(session = %id, "cannot tell etcd the session is {:?}: {err}", e.to)
            }
        }
    }

    /// Copies a Claude session's transcript after a turn (or its start).
    async fn copy_transcript(&mut self, id: Uuid) {
        let Some(h) = self.host.registry.get(id) else {
            return;
        };
        let spec = h.spec();
        if spec.profile != Profile::Claude {
            return;
        }
        let Some(path) = spec.claude.as_ref().and_then(|c| c.transcript.clone()) else {
            return;
        };
        match self.shared.save_transcript(id, &path).await {
            Ok(n) if n > 0 => {
                self.copied.insert(id, n);
                tracing::debug!(session = %id, bytes = n, "transcript copied to etcd")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(session = %id, "cannot copy the transcript to etcd: {e}"),
        }
    }

    /// Copies again the transcripts of ready Claude sessions that grew since
    /// their last copy: the real CLI writes the end of a turn to its
    /// transcript after the Stop hook that made the session ready, so the
    /// copy taken at that instant can miss the turn's reply.
    async fn copy_grown_transcripts(&mut self) {
        if self.shared.current_lease().is_none() {
            return;
        }
        let sessions = self.host.registry.list(&ListFilter::default());
        self.copied
            .retain(|id, _| sessions.iter().any(|s| s.id == *id));
        for s in sessions {
            if s.profile != Profile::Claude || s.state != SessionState::Ready {
                continue;
            }
            let Some(h) = self.host.registry.get(s.id) else {
                continue;
            };
            let Some(path) = h.spec().claude.as_ref().and_then(|c| c.transcript.clone()) else {
                continue;
            };
            let size = tokio::fs::metadata(&path).await.map(|m| m.len()).ok();
            if size.is_some_and(|n| self.copied.get(&s.id) != Some(&n)) {
                self.copy_transcript(s.id).await;
            }
        }
    }

    /// Claims the orphans dealt to this node (any after the grace).
    async fn scan(&mut self) {
        if self.shared.current_lease().is_none()
            || self
                .shared
                .draining
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let orphans = match self.shared.orphans().await {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!("cannot list the sessions in etcd: {e}");
                return;
            }
        };
        self.seen.retain(|id, _| orphans.contains(id));
        if orphans.is_empty() {
            return;
        }
        let mut nodes = match super::node::list_nodes(&self.shared).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("cannot list the nodes: {e}");
                return;
            }
        };
        // Every node must deal the orphans alike: among equals, "this node
        // first" would have each node deal the same orphan to itself.
        nodes.iter_mut().for_each(|n| n.this = false);
        let me = self.shared.record.node.clone();
        let mut placed_here: HashMap<String, usize> = HashMap::new();
        for (i, id) in orphans.iter().enumerate() {
            let now = Instant::now();
            if self.backoff.get(id).is_some_and(|t| *t > now) {
                continue;
            }
            let first = *self.seen.entry(*id).or_insert(now);
            let placed = match self.shared.placed(*id).await {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(session = %id, "cannot read the spec: {e}");
                    continue;
                }
            };
            let wants = placement::Wants {
                node: None,
                labels: placed.wants.labels.clone(),
            };
            let none = HashMap::new();
            let mut ranked = placement::rank(&nodes, &wants, &none);
            let mut wait = GRACE;
            if ranked.is_empty() && !wants.labels.is_empty() {
                // Labels steer; they never strand a session: with no live
                // node that carries them, any node takes it, a little later.
                ranked = placement::rank(&nodes, &placement::Wants::default(), &none);
                wait = GRACE * 2;
                if first.elapsed() >= wait {
                    tracing::warn!(session = %id, labels = ?wants.labels, "no live node carries the session's labels: taking it anyway");
                }
            }
            if !ranked.iter().any(|n| n.record.node == me) {
                continue;
            }
            let dealt = &ranked[i % ranked.len()].record.node;
            if (*dealt != me || wait > GRACE) && first.elapsed() < wait {
                continue;
            }
            match self.shared.claim(*id).await {
                Ok(true) => {
                    *placed_here.entry(me.clone()).or_default() += 1;
                    self.seen.remove(id);
                    self.adopt(*id, placed).await;
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(session = %id, "cannot claim: {e}"),
            }
        }
    }

    /// Starts a session this node just claimed.
    async fn adopt(&mut self, id: Uuid, placed: Placed) {
        let started = Instant::now();
        let reg = &self.host.registry;
        // A copy left here (fenced, or from before a restart) gives way.
        if let Some(h) = reg.get(id) {
            if !h.info().state.is_final() {
                return;
            }
            self.shared.remove_local(reg, id).await;
        }
        let messages = match self.shared.queued(id).await {
            Ok(m) => m,
            Err(e) => {
                return self
                    .give_up(id, format!("cannot read its queue: {e}"))
                    .await
            }
        };
        let mut spec = placed.spec;
        let transcript = if spec.profile == Profile::Claude {
            match self.shared.load_transcript(id).await {
                Ok(t) => t,
                Err(e) => {
                    return self
                        .give_up(id, format!("cannot read its transcript: {e}"))
                        .await
                }
            }
        } else {
            None
        };
        if let Err(e) = self.host.claude.prepare(&mut spec, id) {
            self.host.claude.discard(id);
            return self.give_up(id, e.to_string()).await;
        }
        let mut resumed = false;
        if let (Some(t), Some(path)) = (
            &transcript,
            spec.claude.as_ref().and_then(|c| c.transcript.clone()),
        ) {
            let write = async {
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                tokio::fs::write(&path, t).await
            };
            match write.await {
                Ok(()) => {
                    if let Some(r) = spec.resume_command.clone() {
                        spec.command = r;
                        resumed = true;
                    }
                }
                Err(e) => {
                    tracing::error!(session = %id, "cannot restore the transcript at {}: {e}; the conversation starts anew", path.display())
                }
            }
        }
        let n = messages.len();
        match reg.adopt(spec, id, messages).await {
            Ok(_) => tracing::info!(
                session = %id,
                from = %placed.created_on,
                queued = n,
                resumed,
                took_ms = started.elapsed().as_millis() as u64,
                "took the session over"
            ),
            Err(e) => {
                self.host.claude.discard(id);
                self.give_up(id, e.to_string()).await
            }
        }
    }

    /// Lets go of a session this node claimed but cannot start.
    async fn give_up(&mut self, id: Uuid, why: String) {
        tracing::error!(session = %id, "cannot take the session over: {why}; releasing it for another node");
        self.backoff
            .insert(id, Instant::now() + self.shared.settings.lease_ttl * 2);
        if let Err(e) = self.shared.release(id).await {
            tracing::warn!(session = %id, "cannot release the session: {e}");
        }
    }

    /// The lease is lost: another node may run these sessions soon, so the
    /// local copies stop now.
    async fn fence(&mut self) {
        let reg = self.host.registry.clone();
        let live: Vec<Uuid> = reg
            .list(&ListFilter::default())
            .into_iter()
            .filter(|s| !s.state.is_final())
            .map(|s| s.id)
            .collect();
        if live.is_empty() {
            return;
        }
        tracing::error!(
            sessions = live.len(),
            "fencing: the cluster lease is lost, stopping every local session"
        );
        let stops = live
            .iter()
            .map(|id| reg.stop_for(*id, true, EndCause::Fenced));
        for (id, r) in live.iter().zip(futures_util::future::join_all(stops).await) {
            match r {
                Ok(_) => {
                    self.fenced.insert(*id);
                }
                Err(e) => {
                    tracing::error!(session = %id, "cannot stop the session while fencing: {e}")
                }
            }
        }
    }

    /// Registered again: takes back the sessions nobody claimed meanwhile,
    /// forgets the ones that run elsewhere now.
    async fn reconcile(&mut self) {
        let reg = self.host.registry.clone();
        let mut ids: Vec<Uuid> = self.fenced.drain().collect();
        for s in reg.list(&ListFilter::default()) {
            if !s.state.is_final() && !ids.contains(&s.id) {
                ids.push(s.id);
            }
        }
        for id in ids {
            let Some(h) = reg.get(id) else { continue };
            match self.shared.own_or_claim(id).await {
                Ok(true) if h.info().state.is_final() => match reg.revive(id).await {
                    Ok(_) => {
                        tracing::info!(session = %id, "took the session back after the lease came back")
                    }
                    Err(e) => tracing::error!(session = %id, "cannot start the session again: {e}"),
                },
                Ok(true) => {}
                Ok(false) => {
                    let owner = self.shared.owner_of(id).await.ok().flatten();
                    tracing::info!(session = %id, owner = ?owner, "the session runs elsewhere now: dropping the local copy");
                    if !h.info().state.is_final() {
                        let _ = reg.stop_for(id, true, EndCause::Fenced).await;
                    }
                    self.shared.remove_local(&reg, id).await;
                }
                Err(e) => {
                    tracing::warn!(session = %id, "cannot check the session's owner: {e}");
                    self.fenced.insert(id);
                }
            }
        }
    }
}

pub(super) use super::wait_final;

/// Removes a local copy once it reached a final state.
pub(super) async fn forget_local(reg: &Registry, id: Uuid) {
    wait_final(reg, id, Duration::from_secs(10)).await;
    if let Err(e) = reg.remove(id).await {
        tracing::warn!(session = %id, "cannot remove the local copy: {e}");
    }
}

/// Wakes the agent when an owner key is deleted (a node's lease expired, or
/// a session was handed over); reconnects after errors.
async fn watch_owners(
    shared: Arc<Shared>,
    woke: mpsc::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let prefix = shared.keys.sessions();
    loop {
        if *stop.borrow() {
            return;
        }
        match shared.etcd.watch(&prefix).await {
            Ok(mut stream) => loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    m = stream.message() => match m {
                        Ok(Some(r)) => {
                            let deleted = r.events().iter().any(|e| {
                                e.event_type() == etcd_client::EventType::Delete
                                    && e.kv().is_some_and(|kv| kv.key().ends_with(b"/owner"))
                            });
                            if deleted {
                                let _ = woke.try_send(());
                            }
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            },
            Err(e) => tracing::debug!("cannot watch the session keys: {e}"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(shared.settings.lease_ttl / 4) => {}
        }
    }
}
