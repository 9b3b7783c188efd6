//! A Claude session's transcript, copied to etcd at each end of turn so the
//! node that takes the session over can `--resume` the conversation.
//!
//! Layout under `transcripts/<id>/`: `meta` names the current copy
//! (`{"copy": "<uuid>", "chunks": n, "bytes": b}`), whose zstd-compressed
//! bytes are in `<copy>/<00000..>`, each at most [`CHUNK`] (etcd takes
//! requests of 1.5 MiB by default). A new copy is written beside the old
//! one, then `meta` switches to it, then the old one goes: a reader never
//! sees half a copy. Every write is guarded by ownership.

use super::etcd::EtcdError;
use super::node::Shared;
use super::owner::OwnError;
use etcd_client::{DeleteOptions, TxnOp};
use serde::{Deserialize, Serialize};
use std::path::Path;
use uuid::Uuid;

/// The largest chunk written in one request.
const CHUNK: usize = 512 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    copy: Uuid,
    chunks: usize,
    bytes: u64,
}

impl Shared {
    /// Copies the transcript at `path` for session `id`, if this node owns
    /// it. Returns the bytes copied (0: no transcript yet, or not the owner).
    pub(super) async fn save_transcript(&self, id: Uuid, path: &Path) -> Result<u64, OwnError> {
        let data = match tokio::fs::read(path).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                tracing::warn!(session = %id, "cannot read the transcript {}: {e}", path.display());
                return Ok(0);
            }
        };
        let packed = tokio::task::spawn_blocking(move || {
            zstd::encode_all(&data[..], 3).map(|p| (p, data.len()))
        })
        .await
        .map_err(|e| {
            OwnError::Etcd(EtcdError::Rpc {
                op: "transcript",
                message: e.to_string(),
            })
        })?;
        let (packed, bytes) = match packed {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(session = %id, "cannot compress the transcript: {e}");
                return Ok(0);
            }
        };
        let prefix = self.keys.transcript(&id);
        let old = self.transcript_meta(id).await?;
        let copy = Uuid::new_v4();
        let chunks: Vec<&[u8]> = packed.chunks(CHUNK).collect();
        for (i, c) in chunks.iter().enumerate() {
            let key = format!("{prefix}{copy}/{i:05}");
            if !self
                .guarded(id, vec![TxnOp::put(key, c.to_vec(), None)])
                .await?
            {
                self.drop_copy(id, copy).await;
                return Ok(0);
            }
        }
        let meta = Meta {
            copy,
            chunks: chunks.len(),
            bytes: bytes as u64,
        };
        let meta = serde_json::to_vec(&meta).unwrap_or_default();
        let mut ops = vec![TxnOp::put(format!("{prefix}meta"), meta, None)];
        if let Some(old) = old {
            ops.push(TxnOp::delete(
                format!("{prefix}{}/", old.copy),
                Some(DeleteOptions::new().with_prefix()),
            ));
        }
        if !self.guarded(id, ops).await? {
            self.drop_copy(id, copy).await;
            return Ok(0);
        }
        Ok(bytes as u64)
    }

    /// The last copied transcript of `id`, if any.
    pub(super) async fn load_transcript(&self, id: Uuid) -> Result<Option<Vec<u8>>, EtcdError> {
        let Some(meta) = self.transcript_meta(id).await? else {
            return Ok(None);
        };
        let prefix = format!("{}{}/", self.keys.transcript(&id), meta.copy);
        let parts = self.etcd.list(&prefix).await?;
        if parts.len() != meta.chunks {
            tracing::error!(session = %id, "the transcript copy in etcd is incomplete ({} of {} chunks): starting without it", parts.len(), meta.chunks);
            return Ok(None);
        }
        // etcd answers in key order, which is chunk order.
        let packed: Vec<u8> = parts.into_iter().flat_map(|(_, v)| v).collect();
        match zstd::decode_all(&packed[..]) {
            Ok(d) if d.len() as u64 == meta.bytes => Ok(Some(d)),
            Ok(d) => {
                tracing::error!(session = %id, "the transcript copy has {} bytes, {} expected: starting without it", d.len(), meta.bytes);
                Ok(None)
            }
            Err(e) => {
                tracing::error!(session = %id, "cannot decompress the transcript copy: {e}");
                Ok(None)
            }
        }
    }

    async fn transcript_meta(&self, id: Uuid) -> Result<Option<Meta>, EtcdError> {
        let key = format!("{}meta", self.keys.transcript(&id));
        Ok(self
            .etcd
            .get(&key)
            .await?
            .and_then(|(v, _)| serde_json::from_slice(&v).ok()))
    }

    /// Removes a copy that did not become current (best effort).
    async fn drop_copy(&self, id: Uuid, copy: Uuid) {
        let prefix = format!("{}{copy}/", self.keys.transcript(&id));
        if let Err(e) = self.etcd.delete_prefix(&prefix).await {
            tracing::debug!(session = %id, "cannot remove a partial transcript copy: {e}");
        }
    }
}
