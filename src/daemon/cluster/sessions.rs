//! What the daemon asks of its membership about sessions: where a new one
//! goes, recording it, taking stored ones back at start, the agent, the
//! journal's copy of the queue, and handing everything over.

use super::agent::{wait_final, Agent, Host};
use super::etcd::EtcdError;
use super::fence::Fence;
use super::info::NodeRecord;
use super::node::{list_nodes, Membership};
use super::owner::{OwnError, Placed};
use super::placement::{self, NoRoom, Wants};
use herd_actors::{EndCause, ListFilter, MessageState, Profile, Record, SessionSpec};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use uuid::Uuid;

/// Where a new session goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// This node.
    Here,
    /// Another node.
    There(NodeRecord),
}

/// Why a session cannot be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// etcd cannot tell which nodes there are.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// No node fits.
    #[error(transparent)]
    NoRoom(#[from] NoRoom),
}

/// What a drain did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DrainReport {
    /// The drained node.
    pub node: String,
    /// Each session handed over, and the node that runs it now (`null`:
    /// no node took it yet; it waits in etcd for one).
    pub moved: std::collections::BTreeMap<Uuid, Option<String>>,
    /// Sessions that could not be handed over, and why.
    pub failed: std::collections::BTreeMap<Uuid, String>,
}

impl Membership {
    /// Picks the node for a new session; counts it there until the next
    /// load report, so a burst of creates spreads.
    pub async fn place(&self, wants: &Wants) -> Result<Target, PlaceError> {
        let s = &self.shared;
        let mut nodes = list_nodes(s).await?;
        // This node's own count is known now, not as of its last report.
        if let (Some(reg), Some(me)) = (s.registry.get(), nodes.iter_mut().find(|n| n.this)) {
            if let Some(l) = me.load.as_mut() {
                l.sessions = reg.live_count();
            }
        }
        let extra = self.recent_placements(&nodes);
        let n = placement::pick(&nodes, wants, &extra)?;
        if n.record.node == s.record.node {
            return Ok(Target::Here);
        }
        self.placed_on(&n.record.node);
        Ok(Target::There(n.record.clone()))
    }

    /// Sessions this node placed on others that their last load report
    /// does not count yet (placed after it was taken).
    fn recent_placements(&self, nodes: &[super::info::NodeInfo]) -> HashMap<String, usize> {
        let window = self.shared.settings.lease_ttl * 2;
        let mut recent = self
            .shared
            .placements
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recent.retain(|(_, at)| at.elapsed().is_ok_and(|e| e < window));
        let mut out = HashMap::new();
        for (n, at) in recent.iter() {
            let reported = nodes
                .iter()
                .find(|i| &i.record.node == n)
                .and_then(|i| i.load.as_ref())
                .map(|l| l.updated_at);
            if reported.is_none_or(|r| *at > r) {
                *out.entry(n.clone()).or_default() += 1;
            }
        }
        out
    }

    fn placed_on(&self, node: &str) {
        self.shared
            .placements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((node.to_string(), SystemTime::now()));
    }

    /// Records a session created on this node (spec as requested, before
    /// this node prepared it).
    pub async fn record_created(
        &self,
        id: Uuid,
        spec: SessionSpec,
        wants: Wants,
    ) -> Result<(), OwnError> {
        let placed = Placed {
            spec,
            wants,
            created_on: self.shared.record.node.clone(),
            created_at: SystemTime::now(),
        };
        self.shared.record_created(id, &placed).await
    }

    /// At start: may this node run stored session `id` again? Yes if it
    /// owns it or nobody does (it claims it then), or if the cluster never
    /// heard of it (made before the node joined: it stays local). No if
    /// another node runs it now.
    pub async fn reclaim(&self, id: Uuid) -> Result<bool, OwnError> {
        if self.shared.placed(id).await?.is_none() {
            return Ok(true);
        }
        self.shared.own_or_claim(id).await
    }

    /// Starts the agent (failover, fencing, transcripts) and the fence
    /// process; after recovery, so it never adopts what recovery restores.
    pub fn start_agent(&self, host: Host) {
        let s = self.shared.clone();
        match Fence::spawn((s.settings.lease_ttl / 10).max(Duration::from_millis(200))) {
            Ok(f) => {
                // Armed at once: a node frozen before its next renewal
                // must not leave its children running unfenced.
                let renewed = *s.renewed.lock().unwrap_or_else(|e| e.into_inner());
                f.arm(s.settings.lease_ttl.saturating_sub(renewed.elapsed()));
                let _ = s.fence.set(f);
            }
            Err(e) => tracing::error!("cannot start the fence process ({e}): if this daemon freezes, its sessions may run on beside their new owner until it wakes"),
        }
        tokio::spawn(track(s.clone(), host.registry.clone()));
        let agent = Agent::new(s.clone(), host);
        tokio::spawn(agent.run(s.stop_rx()));
    }

    /// Copies what the journal stores about messages and removals to etcd,
    /// in order: returns the stream the store reads instead.
    pub fn mirror(&self, mut records: UnboundedReceiver<Record>) -> UnboundedReceiver<Record> {
        let (to_store, out) = mpsc::unbounded_channel();
        let (to_etcd, mut work) = mpsc::unbounded_channel::<Copy>();
        let s = self.shared.clone();
        tokio::spawn(async move {
            while let Some(r) = records.recv().await {
                // The fence hears of each child as soon as it is journaled.
                if let Record::Spawned {
                    pid,
                    start_time: Some(start),
                    ..
                } = &r
                {
                    if let Some(f) = s.fence.get() {
                        f.add(*pid, *start);
                    }
                }
                if let Some(c) = Copy::of(&r) {
                    let _ = to_etcd.send(c);
                }
                if to_store.send(r).is_err() {
                    return;
                }
            }
        });
        let s = self.shared.clone();
        tokio::spawn(async move {
            while let Some(c) = work.recv().await {
                let r = match &c {
                    Copy::Message(m)
                        if matches!(m.state, MessageState::Queued | MessageState::Delivering) =>
                    {
                        s.put_message(m).await
                    }
                    Copy::Message(m) => s.delete_message(m).await,
                    Copy::Removed(id) if s.was_local_removal(*id) => Ok(false),
                    Copy::Removed(id) => {
                        let task = s
                            .placed(*id)
                            .await
                            .ok()
                            .flatten()
                            .and_then(|p| p.spec.task_id);
                        s.forget(*id, task.as_deref()).await
                    }
                };
                match r {
                    Ok(_) | Err(OwnError::NotRegistered) => {}
                    Err(e) => tracing::warn!("cannot copy a change to etcd: {e}"),
                }
            }
        });
        out
    }

    /// Hands every local session over to other nodes and marks this node
    /// draining (no session is placed on it). Waits up to `timeout` for
    /// each to run elsewhere.
    pub async fn drain(&self, host: &Host, timeout: Duration) -> DrainReport {
        let s = &self.shared;
        s.draining.store(true, Ordering::Relaxed);
        s.publish_load().await;
        let reg = &host.registry;
        let mut report = DrainReport {
            node: s.record.node.clone(),
            ..Default::default()
        };
        let live: Vec<_> = reg
            .list(&ListFilter::default())
            .into_iter()
            .filter(|i| !i.state.is_final())
            .collect();
        for info in live {
            let id = info.id;
            // Only what the cluster knows can move; the rest stays here.
            match s.placed(id).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    report.failed.insert(
                        id,
                        "made before this node joined the cluster: it runs here only".into(),
                    );
                    continue;
                }
                Err(e) => {
                    report.failed.insert(id, e.to_string());
                    continue;
                }
            }
            if info.profile == Profile::Claude {
                if let Some(path) = reg
                    .get(id)
                    .and_then(|h| h.spec().claude.and_then(|c| c.transcript))
                {
                    if let Err(e) = s.save_transcript(id, &path).await {
                        report
                            .failed
                            .insert(id, format!("cannot copy its transcript: {e}"));
                        continue;
                    }
                }
            }
            if let Err(e) = reg.stop_for(id, false, EndCause::HandedOver).await {
                report.failed.insert(id, format!("cannot stop it: {e}"));
                continue;
            }
            // Stopped here before anyone may claim it.
            wait_final(reg, id, Duration::from_secs(15)).await;
            let released = s.release(id).await;
            s.remove_local(reg, id).await;
            match released {
                Ok(true) => {
                    report.moved.insert(id, None);
                }
                Ok(false) => {
                    report
                        .failed
                        .insert(id, "this node no longer owns it".into());
                }
                Err(e) => {
                    report.failed.insert(id, format!("cannot release it: {e}"));
                }
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = false;
            for (id, owner) in report.moved.iter_mut() {
                if owner.is_none() {
                    *owner = s.owner_of(*id).await.ok().flatten();
                    waiting |= owner.is_none();
                }
            }
            if !waiting || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        report
    }

    /// The session etcd maps `task` to, if any.
    pub async fn task_session(&self, task: &str) -> Option<Uuid> {
        let key = self.shared.keys.task(task);
        let (v, _) = self.shared.etcd.get(&key).await.ok()??;
        Uuid::parse_str(std::str::from_utf8(&v).ok()?).ok()
    }

    /// The record of the node that owns `id` now, if any.
    pub async fn owner_record(&self, id: Uuid) -> Option<NodeRecord> {
        let owner = self.shared.owner_of(id).await.ok()??;
        list_nodes(&self.shared)
            .await
            .ok()?
            .into_iter()
            .find(|n| n.record.node == owner)
            .map(|n| n.record)
    }

    /// Whether another live node could take sessions now.
    pub async fn others_live(&self) -> bool {
        list_nodes(&self.shared).await.is_ok_and(|n| {
            n.iter().any(|n| {
                !n.this
                    && n.health == super::info::NodeHealth::Live
                    && !n.load.as_ref().is_some_and(|l| l.draining)
            })
        })
    }

    /// This node leaves cleanly: the fence exits without killing.
    pub fn disarm(&self) {
        if let Some(f) = self.shared.fence.get() {
            f.disarm();
        }
    }
}

/// What the mirror copies to etcd.
enum Copy {
    Message(Box<herd_actors::Message>),
    Removed(Uuid),
}

impl Copy {
    fn of(r: &Record) -> Option<Self> {
        match r {
            Record::Message(m) => Some(Self::Message(m.clone())),
            Record::Removed(id) => Some(Self::Removed(*id)),
            Record::Acked { record, .. } => Self::of(record),
            _ => None,
        }
    }
}

/// Tells the fence which children to kill, every quarter TTL (a child that
/// just started is told at once by the journal's copy, `add`). Start times
/// are read once per child.
async fn track(s: std::sync::Arc<super::node::Shared>, reg: herd_actors::Registry) {
    let mut stop = s.stop_rx();
    let mut tick = tokio::time::interval(s.settings.lease_ttl / 4);
    let mut starts: HashMap<i32, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let Some(f) = s.fence.get() else { return };
        let live: std::collections::HashSet<i32> = reg
            .list(&ListFilter::default())
            .into_iter()
            .filter(|i| !i.state.is_final())
            .filter_map(|i| i.pid)
            .collect();
        // A pid gone from the list is forgotten; reused within one tick, its
        // stale start time only makes the fence skip it (the spawn's `add`
        // carries the right one).
        starts.retain(|pid, _| live.contains(pid));
        let pids: Vec<(i32, u64)> = live
            .into_iter()
            .filter_map(|pid| {
                let start = match starts.get(&pid) {
                    Some(s) => *s,
                    None => {
                        let s = herd_actors::process::start_time(pid)?;
                        starts.insert(pid, s);
                        s
                    }
                };
                Some((pid, start))
            })
            .collect();
        f.track(&pids);
    }
}
