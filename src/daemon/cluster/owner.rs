//! Who runs each session: its spec, owner, task and queue in etcd.
//!
//! The owner key `sessions/<id>/owner` holds the owner node's name and is
//! bound to that node's lease: when the lease goes (the node died, froze or
//! lost etcd), so does the key, and the session is an orphan the others may
//! claim. Every write that assumes ownership is one transaction that
//! compares the owner key's lease with the writer's current lease, so a node
//! that lost its lease (or the session) cannot write, whatever it believes.

use super::etcd::{EtcdError, LeaseId};
use super::keys::SessionKey;
use super::node::Shared;
use super::placement::Wants;
use etcd_client::{Compare, CompareOp, DeleteOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use herd_actors::{Message, SessionSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::SystemTime;
use uuid::Uuid;

/// What etcd keeps of a session: enough for any node to start it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Placed {
    /// The spec as requested (template applied), before a node prepares it
    /// (a Claude session's home and hooks are made by the node that runs it).
    pub spec: SessionSpec,
    /// Where it may run: labels a node must carry (a node name only
    /// chooses the first node).
    #[serde(default)]
    pub wants: Wants,
    /// The node that created it.
    pub created_on: String,
    /// When.
    #[serde(with = "humantime_serde")]
    pub created_at: SystemTime,
}

/// Why an ownership change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OwnError {
    /// etcd failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// This node holds no lease now: it may own nothing.
    #[error("this node is not registered in the cluster now (its lease was lost; it registers again when etcd answers): retry, or use another node")]
    NotRegistered,
    /// Another node owns the session.
    #[error("session {id} is owned by node {owner:?}")]
    Taken {
        /// The session.
        id: Uuid,
        /// Its owner.
        owner: String,
    },
}

fn put(key: String, value: Vec<u8>, lease: Option<LeaseId>) -> TxnOp {
    TxnOp::put(key, value, lease.map(|l| PutOptions::new().with_lease(l.0)))
}

fn delete_prefix(prefix: String) -> TxnOp {
    TxnOp::delete(prefix, Some(DeleteOptions::new().with_prefix()))
}

impl Shared {
    fn lease_or_refuse(&self) -> Result<LeaseId, OwnError> {
        self.current_lease().ok_or(OwnError::NotRegistered)
    }

    /// Records a session created on this node: its spec, its owner (this
    /// node, bound to its lease) and its task, in one transaction that
    /// holds only if nobody owns the id yet.
    pub(super) async fn record_created(&self, id: Uuid, placed: &Placed) -> Result<(), OwnError> {
        let lease = self.lease_or_refuse()?;
        let owner = self.keys.owner(&id);
        let mut ops = vec![
            put(
                owner.clone(),
                self.record.node.clone().into_bytes(),
                Some(lease),
            ),
            put(self.keys.spec(&id), json(placed), None),
        ];
        if let Some(task) = &placed.spec.task_id {
            ops.push(put(self.keys.task(task), id.to_string().into_bytes(), None));
        }
        let txn = Txn::new()
            .when([Compare::create_revision(owner.clone(), CompareOp::Equal, 0)])
            .and_then(ops)
            .or_else([TxnOp::get(owner, None)]);
        let r = self.etcd.txn(txn, Some(lease)).await?;
        if r.succeeded() {
            return Ok(());
        }
        Err(OwnError::Taken {
            id,
            owner: first_value(r.op_responses()).unwrap_or_default(),
        })
    }

    /// Claims a session nobody owns: its owner key created for this node.
    /// Exactly one of several claimers wins.
    pub(super) async fn claim(&self, id: Uuid) -> Result<bool, OwnError> {
        let lease = self.lease_or_refuse()?;
        let owner = self.keys.owner(&id);
        let txn = Txn::new()
            .when([
                Compare::create_revision(owner.clone(), CompareOp::Equal, 0),
                // A spec removed meanwhile is a session gone, not an orphan.
                Compare::create_revision(self.keys.spec(&id), CompareOp::Greater, 0),
            ])
            .and_then([put(
                owner,
                self.record.node.clone().into_bytes(),
                Some(lease),
            )]);
        Ok(self.etcd.txn(txn, Some(lease)).await?.succeeded())
    }

    /// Whether this node owns `id` under its current lease, or claims it
    /// now if nobody does (a node coming back to its own sessions).
    pub(super) async fn own_or_claim(&self, id: Uuid) -> Result<bool, OwnError> {
        let lease = self.lease_or_refuse()?;
        let owner = self.keys.owner(&id);
        let r = self.etcd.get(&owner).await?;
        match r {
            Some((v, _)) if v == self.record.node.as_bytes() => {
                // Ours by name: under this lease, or a stale key of an old
                // lease that etcd kept (it restarts leases after its own
                // restart): take it over with one compare on the revision.
                let txn = Txn::new()
                    .when([Compare::value(
                        owner.clone(),
                        CompareOp::Equal,
                        self.record.node.clone(),
                    )])
                    .and_then([put(
                        owner,
                        self.record.node.clone().into_bytes(),
                        Some(lease),
                    )]);
                Ok(self.etcd.txn(txn, Some(lease)).await?.succeeded())
            }
            Some(_) => Ok(false),
            None => self.claim(id).await,
        }
    }

    /// Runs `ops` only while this node owns `id` under its current lease.
    /// Returns false (nothing written) if it does not.
    pub(super) async fn guarded(&self, id: Uuid, ops: Vec<TxnOp>) -> Result<bool, OwnError> {
        let lease = self.lease_or_refuse()?;
        let txn = Txn::new()
            .when([Compare::lease(
                self.keys.owner(&id),
                CompareOp::Equal,
                lease.0,
            )])
            .and_then(ops);
        Ok(self.etcd.txn(txn, Some(lease)).await?.succeeded())
    }

    /// Forgets a session removed on this node (its owner): spec, owner,
    /// queue, transcript and task mapping go together.
    pub(super) async fn forget(&self, id: Uuid, task: Option<&str>) -> Result<bool, OwnError> {
        let mut ops = vec![
            TxnOp::delete(self.keys.spec(&id), None),
            TxnOp::delete(self.keys.ended(&id), None),
            delete_prefix(self.keys.queue(&id)),
            delete_prefix(self.keys.transcript(&id)),
        ];
        if let Some(task) = task {
            // Only if the task still names this session.
            let key = self.keys.task(task);
            ops.push(TxnOp::txn(
                Txn::new()
                    .when([Compare::value(
                        key.clone(),
                        CompareOp::Equal,
                        id.to_string(),
                    )])
                    .and_then([TxnOp::delete(key, None)]),
            ));
        }
        // The owner key last: the compare reads it before any op runs.
        ops.push(TxnOp::delete(self.keys.owner(&id), None));
        self.guarded(id, ops).await
    }

    /// Lets go of `id` (handing it over): its owner key goes if it is this
    /// node's; the spec stays, so another node claims it.
    pub(super) async fn release(&self, id: Uuid) -> Result<bool, OwnError> {
        self.guarded(id, vec![TxnOp::delete(self.keys.owner(&id), None)])
            .await
    }

    /// Puts a message not answered yet (queued, or being answered).
    pub(super) async fn put_message(&self, m: &Message) -> Result<bool, OwnError> {
        let key = self.keys.queued(&m.session_id, &m.id);
        self.guarded(m.session_id, vec![put(key, json(m), None)])
            .await
    }

    /// Deletes an answered (or cancelled) message.
    pub(super) async fn delete_message(&self, m: &Message) -> Result<bool, OwnError> {
        let key = self.keys.queued(&m.session_id, &m.id);
        self.guarded(m.session_id, vec![TxnOp::delete(key, None)])
            .await
    }

    /// The sessions with a spec and no owner.
    pub(super) async fn orphans(&self) -> Result<Vec<Uuid>, EtcdError> {
        let prefix = self.keys.sessions();
        let (mut specs, mut owned) = (BTreeSet::new(), BTreeSet::new());
        let mut ended = BTreeSet::new();
        for k in self.etcd.keys(&prefix).await? {
            match SessionKey::parse(&prefix, &k) {
                Some(SessionKey::Spec(id)) => {
                    specs.insert(id);
                }
                Some(SessionKey::Owner(id)) => {
                    owned.insert(id);
                }
                Some(SessionKey::Ended(id)) => {
                    ended.insert(id);
                }
                None => {}
            }
        }
        Ok(specs
            .difference(&owned)
            .filter(|id| !ended.contains(id))
            .copied()
            .collect())
    }

    /// Marks `id` ended for good (or live again): an ended session is not
    /// adopted when its owner goes.
    pub(super) async fn mark_ended(&self, id: Uuid, ended: bool) -> Result<bool, OwnError> {
        let key = self.keys.ended(&id);
        let op = if ended {
            put(key, b"1".to_vec(), None)
        } else {
            TxnOp::delete(key, None)
        };
        self.guarded(id, vec![op]).await
    }

    /// The node that owns `id`, if any.
    pub(super) async fn owner_of(&self, id: Uuid) -> Result<Option<String>, EtcdError> {
        Ok(self
            .etcd
            .get(&self.keys.owner(&id))
            .await?
            .map(|(v, _)| String::from_utf8_lossy(&v).into_owned()))
    }

    /// What etcd keeps of `id`, if anything (an unreadable record is logged
    /// and counts as none).
    pub(super) async fn placed(&self, id: Uuid) -> Result<Option<Placed>, EtcdError> {
        let Some((v, _)) = self.etcd.get(&self.keys.spec(&id)).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&v) {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                tracing::error!(session = %id, "unreadable session spec in etcd: {e}");
                Ok(None)
            }
        }
    }

    /// The messages of `id` not answered yet, oldest first.
    pub(super) async fn queued(&self, id: Uuid) -> Result<Vec<Message>, EtcdError> {
        let mut out: Vec<Message> = vec![];
        for (k, v) in self.etcd.list(&self.keys.queue(&id)).await? {
            match serde_json::from_slice(&v) {
                Ok(m) => out.push(m),
                Err(e) => tracing::error!(key = %k, "unreadable queued message in etcd: {e}"),
            }
        }
        out.sort_by_key(|m| m.created_at);
        Ok(out)
    }
}

fn first_value(ops: Vec<TxnOpResponse>) -> Option<String> {
    ops.into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
        _ => None,
    })
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // Specs and messages are plain data: serialising cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}
