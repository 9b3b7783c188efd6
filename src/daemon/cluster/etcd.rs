//! A thin wrapper over `etcd-client`: the few calls the cluster makes, each
//! with a deadline, and typed errors (an unreachable etcd, a lost lease and a
//! refused call are different things to the caller).

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions, WatchStream,
};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An etcd lease id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseId(pub i64);

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered (down, stopped, partitioned).
    #[error("cannot reach etcd at {endpoints}: {message}")]
    Unreachable {
        /// The configured endpoints.
        endpoints: String,
        /// The transport's words.
        message: String,
    },
    /// The call got no answer in time.
    #[error("etcd did not answer {op} within {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The call.
        op: &'static str,
        /// How long it waited.
        timeout: Duration,
    },
    /// etcd no longer knows the lease: it expired or was revoked.
    #[error("etcd lease {0} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),
    /// etcd refused the call.
    #[error("etcd {op} failed: {message}")]
    Rpc {
        /// The call.
        op: &'static str,
        /// etcd's words.
        message: String,
    },
}

/// The outcome of [`Etcd::create`].
#[derive(Debug)]
pub enum Created {
    /// The key did not exist and now holds the value.
    Yes,
    /// Someone holds the key.
    Taken {
        /// The value found.
        value: Vec<u8>,
    },
}

/// A connected etcd client with the cluster's deadlines.
///
/// One client per endpoint, not etcd-client's balanced channel over all of
/// them: that channel keeps sending a share of the calls to a member that
/// is down (etcdv3/etcd-client#39), so with one of three members gone a
/// third of the calls failed. Calls go to one endpoint until it fails, then
/// to the next (as etcd's own Go client does).
#[derive(Clone)]
pub struct Etcd {
    clients: Arc<Vec<Client>>,
    /// The index of the endpoint calls go to now.
    current: Arc<AtomicUsize>,
    endpoints: String,
    timeout: Duration,
}

impl Etcd {
    /// Connects to `endpoints` (lazily: the first call finds out whether
    /// etcd is there); every call then gives up after `timeout`.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Self, EtcdError> {
        let joined = endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(timeout, timeout);
        let mut clients = vec![];
        for e in endpoints {
            let client = deadline(
                "connect",
                timeout,
                Client::connect([e], Some(options.clone())),
            )
            .await?
            .map_err(|e| classify("connect", &joined, e))?;
            clients.push(client);
        }
        if clients.is_empty() {
            return Err(EtcdError::Unreachable {
                endpoints: joined,
                message: "no endpoint is configured".into(),
            });
        }
        Ok(Self {
            clients: Arc::new(clients),
            current: Arc::new(AtomicUsize::new(0)),
            endpoints: joined,
            timeout,
        })
    }

    /// Runs one call under the deadline and classifies its error. A call
    /// that could not connect (so was not sent) is tried on the next
    /// endpoint within the same deadline; after any other transport
    /// failure or a timeout the next call starts at the next endpoint (this
    /// one is not repeated: it may have been applied).
    async fn call<T, F, Fut>(&self, op: &'static str, mut f: F) -> Result<T, EtcdError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.clients.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let end = Instant::now() + self.timeout;
        let mut last = None;
        for k in 0..n {
            let i = (first + k) % n;
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let r = deadline(op, left, f(self.clients[i].clone())).await;
            let e = match r {
                Ok(Ok(v)) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) => {
                    let unsent = not_sent(&e);
                    let e = classify(op, &self.endpoints, e);
                    if unsent {
                        last = Some(e);
                        continue;
                    }
                    e
                }
                Err(_) => EtcdError::Timeout {
                    op,
                    timeout: self.timeout,
                },
            };
            if matches!(e, EtcdError::Unreachable { .. } | EtcdError::Timeout { .. }) {
                self.current.store((i + 1) % n, Ordering::Relaxed);
            }
            return Err(e);
        }
        self.current.store((first + 1) % n, Ordering::Relaxed);
        Err(last.unwrap_or(EtcdError::Timeout {
            op,
            timeout: self.timeout,
        }))
    }

    /// Grants a lease of `ttl` (whole seconds, rounded up).
    pub async fn grant(&self, ttl: Duration) -> Result<LeaseId, EtcdError> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let r = self
            .call("lease grant", |mut c| async move {
                c.lease_grant(secs as i64, None).await
            })
            .await?;
        Ok(LeaseId(r.id()))
    }

    /// Revokes a lease: every key bound to it goes at once. A lease etcd
    /// no longer knows is already gone: that is success.
    pub async fn revoke(&self, lease: LeaseId) -> Result<(), EtcdError> {
        let revoke = |mut c: Client| async move { c.lease_revoke(lease.0).await };
        match self.call("lease revoke", revoke).await {
            Ok(_) | Err(EtcdError::LeaseNotFound(_)) => Ok(()),
            Err(EtcdError::Rpc { message, .. }) if is_lease_not_found(&message) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Puts `key` = `value` bound to `lease`, and `others` with it, only if
    /// `key` does not exist (its create revision is 0): one transaction.
    pub async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        others: Vec<(String, Vec<u8>)>,
        lease: LeaseId,
    ) -> Result<Created, EtcdError> {
        let bound = || Some(PutOptions::new().with_lease(lease.0));
        let mut puts = vec![TxnOp::put(key, value, bound())];
        puts.extend(others.into_iter().map(|(k, v)| TxnOp::put(k, v, bound())));
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then(puts)
            .or_else([TxnOp::get(key, None)]);
        let r = self
            .txn_call("create", &txn)
            .await
            .map_err(|e| lease_error(e, lease))?;
        if r.succeeded() {
            return Ok(Created::Yes);
        }
        let found = r.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        // Inside one transaction the key cannot be gone between the compare
        // and the get; an empty answer still means taken.
        Ok(Created::Taken {
            value: found.unwrap_or_default(),
        })
    }

    /// Puts `key` = `value` bound to `lease`.
    pub async fn put(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<(), EtcdError> {
        let opts = PutOptions::new().with_lease(lease.0);
        self.call("put", |mut c| {
            let (value, opts) = (value.clone(), opts.clone());
            async move { c.put(key, value, Some(opts)).await }
        })
        .await
        .map_err(|e| lease_error(e, lease))?;
        Ok(())
    }

    /// Every key under `prefix`, with its value.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, EtcdError> {
        let r = self
            .call("get", |mut c| async move {
                c.get(prefix, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| Some((kv.key_str().ok()?.to_string(), kv.value().to_vec())))
            .collect())
    }

    /// The value of `key` and its modification revision, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, EtcdError> {
        let r = self
            .call("get", |mut c| async move { c.get(key, None).await })
            .await?;
        Ok(r.kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())))
    }

    /// The keys under `prefix` (no values), in key order.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, EtcdError> {
        let opts = GetOptions::new().with_prefix().with_keys_only();
        let r = self
            .call("get", |mut c| {
                let opts = opts.clone();
                async move { c.get(prefix, Some(opts)).await }
            })
            .await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| Some(kv.key_str().ok()?.to_string()))
            .collect())
    }

    /// Deletes every key under `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), EtcdError> {
        let opts = DeleteOptions::new().with_prefix();
        self.call("delete", |mut c| {
            let opts = opts.clone();
            async move { c.delete(prefix, Some(opts)).await }
        })
        .await?;
        Ok(())
    }

    /// Runs a transaction; a lost `lease` named by etcd comes back as
    /// [`EtcdError::LeaseNotFound`].
    pub async fn txn(&self, txn: Txn, lease: Option<LeaseId>) -> Result<TxnResponse, EtcdError> {
        let r = self.txn_call("txn", &txn).await;
        match lease {
            Some(l) => r.map_err(|e| lease_error(e, l)),
            None => r,
        }
    }

    /// Runs `txn` (a clone of it on each endpoint tried).
    async fn txn_call(&self, op: &'static str, txn: &Txn) -> Result<TxnResponse, EtcdError> {
        self.call(op, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Watches every key under `prefix` (deletes included).
    pub async fn watch(&self, prefix: &str) -> Result<WatchStream, EtcdError> {
        let opts = WatchOptions::new().with_prefix();
        self.call("watch", |mut c| {
            let opts = opts.clone();
            async move { c.watch(prefix, Some(opts)).await }
        })
        .await
    }

    /// Opens the keep-alive stream of `lease`.
    pub async fn keep_alive(&self, lease: LeaseId) -> Result<Renewer, EtcdError> {
        let (keeper, stream) = self
            .call("lease keep-alive", |mut c| async move {
                c.lease_keep_alive(lease.0).await
            })
            .await
            .map_err(|e| lease_error(e, lease))?;
        Ok(Renewer {
            keeper,
            stream,
            lease,
            timeout: self.timeout,
            // The endpoint the stream was opened on (the call's success
            // stored it).
            endpoint: self.current.load(Ordering::Relaxed),
            current: self.current.clone(),
            endpoints: self.clients.len(),
        })
    }
}

/// The calls of ownership lookups and the shared token.
impl Etcd {
    /// Puts `key` = `value` (bound to no lease) unless it exists; returns
    /// the value it holds afterwards: one transaction, so every caller
    /// racing on an absent key gets the same winner's value.
    pub async fn get_or_create(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, EtcdError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let r = self.txn_call("create", &txn).await?;
        if r.succeeded() {
            return Ok(value);
        }
        Ok(r.op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            })
            .unwrap_or_default())
    }
}

/// One lease's keep-alive stream.
pub struct Renewer {
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    lease: LeaseId,
    timeout: Duration,
    /// The endpoint the stream is on, and the client's current one.
    endpoint: usize,
    current: Arc<AtomicUsize>,
    endpoints: usize,
}

impl Renewer {
    /// Renews the lease once; returns the TTL etcd granted. A stream that
    /// fails (its member down, frozen or cut off) sends the client's next
    /// calls, and the next stream, to the next endpoint.
    pub async fn renew(&mut self) -> Result<Duration, EtcdError> {
        let r = self.renew_once().await;
        if matches!(&r, Err(e) if !matches!(e, EtcdError::LeaseNotFound(_))) {
            let next = (self.endpoint + 1) % self.endpoints.max(1);
            let _ = self.current.compare_exchange(
                self.endpoint,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        r
    }

    async fn renew_once(&mut self) -> Result<Duration, EtcdError> {
        let op = "lease keep-alive";
        let t = self.timeout;
        deadline(op, t, self.keeper.keep_alive())
            .await?
            .map_err(|e| classify(op, "", e))?;
        let answer = deadline(op, t, self.stream.message())
            .await?
            .map_err(|e| classify(op, "", e))?;
        match answer {
            // etcd answers TTL 0 for a lease it does not know.
            Some(r) if r.ttl() > 0 => Ok(Duration::from_secs(r.ttl() as u64)),
            Some(_) => Err(EtcdError::LeaseNotFound(self.lease)),
            None => Err(EtcdError::Rpc {
                op,
                message: "the keep-alive stream ended".into(),
            }),
        }
    }
}

async fn deadline<T>(
    op: &'static str,
    timeout: Duration,
    f: impl Future<Output = T>,
) -> Result<T, EtcdError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| EtcdError::Timeout { op, timeout })
}

fn is_lease_not_found(message: &str) -> bool {
    message.contains("requested lease not found")
}

/// A refused call that names a missing lease is that lease's loss.
fn lease_error(e: EtcdError, lease: LeaseId) -> EtcdError {
    match e {
        EtcdError::Rpc { message, .. } if is_lease_not_found(&message) => {
            EtcdError::LeaseNotFound(lease)
        }
        e => e,
    }
}

/// Whether a call failed before it was sent: the connection to its
/// endpoint could not be made (tonic says so with a `ConnectError` in the
/// error's sources), so another endpoint may run it safely.
fn not_sent(e: &etcd_client::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = match e {
        etcd_client::Error::GRpcStatus(s) => Some(s),
        etcd_client::Error::TransportError(t) => Some(t),
        _ => None,
    };
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

fn classify(op: &'static str, endpoints: &str, e: etcd_client::Error) -> EtcdError {
    use etcd_client::Error as E;
    match e {
        E::TransportError(t) => EtcdError::Unreachable {
            endpoints: endpoints.into(),
            message: t.to_string(),
        },
        E::IoError(io) => EtcdError::Unreachable {
            endpoints: endpoints.into(),
            message: io.to_string(),
        },
        E::GRpcStatus(s) if s.code() == tonic::Code::Unavailable => EtcdError::Unreachable {
            endpoints: endpoints.into(),
            message: s.message().to_string(),
        },
        E::GRpcStatus(s) => EtcdError::Rpc {
            op,
            message: s.message().to_string(),
        },
        other => EtcdError::Rpc {
            op,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback port nothing listens on.
    fn closed_port() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_call_never_sent() {
        let mut c = Client::connect([closed_port()], None).await.unwrap();
        let e = c.get("k", None).await.unwrap_err();
        assert!(not_sent(&e), "{e:?}");
        assert!(matches!(
            classify("get", "x", e),
            EtcdError::Unreachable { .. }
        ));
    }

    #[tokio::test]
    async fn every_endpoint_is_tried_then_the_error_names_them_all() {
        let (a, b) = (closed_port(), closed_port());
        let etcd = Etcd::connect(&[a.clone(), b.clone()], Duration::from_secs(5))
            .await
            .unwrap();
        let t = Instant::now();
        let e = etcd.get("k").await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{e}");
        match e {
            EtcdError::Unreachable { endpoints, .. } => {
                assert_eq!(endpoints, format!("{a},{b}"))
            }
            e => panic!("{e}"),
        }
        // The next call starts at the other endpoint.
        assert_eq!(etcd.current.load(Ordering::Relaxed), 1);
    }
}
