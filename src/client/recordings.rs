//! A session's recordings, fetched from the daemon for the recording tools
//! (`herd replay`, `export`, `analyze` with a session id): the HTTP client is
//! the formats wing's [`Fetch`].

use crate::client::http::{enc, Client};
use crate::formats::source::{Fetch, Listed};
use anyhow::{Context, Result};
use futures_util::StreamExt;
use reqwest::Method;
use std::io::Write;

impl Fetch for Client {
    /// `GET /v1/sessions/{id}/recordings`, oldest first.
    async fn generations(&self, id: &str) -> Result<Vec<Listed>> {
        let path = format!("/v1/sessions/{}/recordings", enc(id));
        let mut list: Vec<Listed> = self.json(Method::GET, &path, None).await?;
        list.sort_by_key(|l| l.generation);
        Ok(list)
    }

    /// `GET /v1/sessions/{id}/recording[?generation=N]`, streamed to a
    /// temporary file.
    async fn download(&self, id: &str, generation: Option<u64>) -> Result<tempfile::NamedTempFile> {
        let mut path = format!("/v1/sessions/{}/recording", enc(id));
        if let Some(g) = generation {
            path.push_str(&format!("?generation={g}"));
        }
        let resp = self.send(Method::GET, &path, None).await?;
        let mut file = tempfile::Builder::new()
            .prefix("herd-recording-")
            .suffix(".cast")
            .tempfile()
            .context("creating a temporary file for the recording")?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("reading the recording from the daemon")?;
            file.write_all(&chunk)
                .context("writing the recording to a temporary file")?;
        }
        file.flush()
            .context("writing the recording to a temporary file")?;
        Ok(file)
    }
}
