//! `[cluster]`: joining a herd cluster coordinated by etcd (docs/CLUSTER.md).
//!
//! Parsed and checked in every build; only a build with the `cluster`
//! feature can act on it (`herd serve` refuses it otherwise).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The shortest lease TTL accepted: etcd refuses shorter leases than its
/// election timeout allows, and a shorter TTL fails nodes on a slow disk.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// The longest lease TTL accepted: a dead node stays listed this long.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(300);

/// `[cluster]`, as written in the file (or built from `herd serve --etcd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd client URLs, e.g. `["http://127.0.0.1:2379"]`.
    pub etcd: Vec<String>,
    /// This node's name, unique in the cluster; default: the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The URL other nodes and clients reach this daemon at; default: derived
    /// from `server.listen` unless it listens on every interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Free-form labels placement can match (`--label k=v`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The TTL of this node's lease: a node that stops renewing it leaves
    /// the cluster this long after.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// The cluster's name: the prefix of its keys (`/herd/<name>/...`), so
    /// several clusters can share one etcd.
    #[serde(default = "default_name")]
    pub name: String,
    /// The token nodes present to each other when one proxies a request to
    /// another (`HERD_CLUSTER_TOKEN` overrides it); unset: the first node to
    /// join generates one and shares it through etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<herd_actors::Secret>,
}

/// The shortest cluster token accepted (as for `server.token`).
pub const MIN_TOKEN_LEN: usize = 16;

fn default_lease_ttl() -> Duration {
    Duration::from_secs(5)
}

fn default_name() -> String {
    "herd".into()
}

impl ClusterConfig {
    /// A section with these etcd URLs and every other key at its default.
    pub fn with_etcd(etcd: Vec<String>) -> Self {
        Self {
            etcd,
            node: None,
            advertise: None,
            labels: BTreeMap::new(),
            lease_ttl: default_lease_ttl(),
            name: default_name(),
            token: None,
        }
    }

    /// Checks every key; the message names the key and the value.
    pub fn check(&self) -> Result<(), String> {
        if self.etcd.is_empty() {
            return Err(
                "cluster.etcd = []: give at least one etcd URL, such as \"http://127.0.0.1:2379\""
                    .into(),
            );
        }
        for u in &self.etcd {
            check_url("cluster.etcd", u)?;
        }
        if let Some(n) = &self.node {
            check_name("cluster.node", n)?;
        }
        if let Some(a) = &self.advertise {
            check_url("cluster.advertise", a)?;
        }
        check_name("cluster.name", &self.name)?;
        for (k, v) in &self.labels {
            check_name("cluster.labels", k)?;
            if v.len() > 253 || v.chars().any(char::is_control) {
                return Err(format!(
                    "cluster.labels.{k} = {v:?}: at most 253 characters, no control characters"
                ));
            }
        }
        if let Some(t) = &self.token {
            check_token("cluster.token", t.expose())?;
        }
        if self.lease_ttl < MIN_LEASE_TTL || self.lease_ttl > MAX_LEASE_TTL {
            return Err(format!(
                "cluster.lease_ttl = {:?}: must be between {} and {}",
                humantime::format_duration(self.lease_ttl).to_string(),
                humantime::format_duration(MIN_LEASE_TTL),
                humantime::format_duration(MAX_LEASE_TTL)
            ));
        }
        Ok(())
    }
}

/// A token long enough to guess at no better than chance, and sendable in a
/// header. The message names the key, never the value (a secret).
pub fn check_token(key: &str, t: &str) -> Result<(), String> {
    if t.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "{key} is too short ({} characters): use at least {MIN_TOKEN_LEN}",
            t.len()
        ));
    }
    if !t.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{key} has a character that cannot stand in an HTTP header: use printable ASCII without spaces"
        ));
    }
    Ok(())
}

/// An `http://` or `https://` address with a host and nothing after the port.
pub fn check_url(key: &str, u: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(u).map_err(|e| format!("{key} = {u:?}: {e}"))?;
    let bare = matches!(parsed.path(), "" | "/")
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && parsed.username().is_empty();
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() || !bare {
        return Err(format!(
            "{key} = {u:?}: expected http://host:port or https://host:port, without path, query or user"
        ));
    }
    Ok(())
}

/// A name that can stand in an etcd key: 1 to 63 of `[A-Za-z0-9._-]`,
/// starting with a letter or digit.
pub fn check_name(key: &str, n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key} = {n:?}: expected 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_full_section() {
        let cfg = Config::parse("[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n", "t").unwrap();
        let c = cfg.cluster.unwrap();
        assert_eq!(c.lease_ttl, Duration::from_secs(5));
        assert_eq!(c.name, "herd");
        assert_eq!(c.node, None);
        let cfg = Config::parse(
            "[cluster]\netcd = [\"http://a:2379\", \"https://b:2379\"]\nnode = \"n-1\"\nadvertise = \"http://10.0.0.1:7777\"\nlabels = { zone = \"eu\", gpu = \"yes\" }\nlease_ttl = \"10s\"\nname = \"prod\"\n",
            "t",
        )
        .unwrap();
        let c = cfg.cluster.unwrap();
        assert_eq!(c.labels["zone"], "eu");
        assert_eq!(c.lease_ttl, Duration::from_secs(10));
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let e = err("[cluster]\netcd = [\"127.0.0.1:2379\"]\n");
        assert!(
            e.contains("cluster.etcd") && e.contains("127.0.0.1:2379"),
            "{e}"
        );
        let e = err("[cluster]\netcd = [\"http://h:2379/v3\"]\n");
        assert!(e.contains("cluster.etcd") && e.contains("/v3"), "{e}");
        let e = err("[cluster]\netcd = []\n");
        assert!(e.contains("cluster.etcd"), "{e}");
        let e = err("[cluster]\netcd = [\"http://h:2379\"]\nnode = \"\"\n");
        assert!(e.contains("cluster.node = \"\""), "{e}");
        let e = err("[cluster]\netcd = [\"http://h:2379\"]\nnode = \"a/b\"\n");
        assert!(e.contains("cluster.node") && e.contains("a/b"), "{e}");
        let e = err("[cluster]\netcd = [\"http://h:2379\"]\nadvertise = \"ftp://h\"\n");
        assert!(
            e.contains("cluster.advertise") && e.contains("ftp://h"),
            "{e}"
        );
        let e = err("[cluster]\netcd = [\"http://h:2379\"]\nlease_ttl = \"500ms\"\n");
        assert!(
            e.contains("cluster.lease_ttl") && e.contains("500ms"),
            "{e}"
        );
        let e = err("[cluster]\netcd = [\"http://h:2379\"]\nlease_ttl = \"soon\"\n");
        assert!(e.contains("lease_ttl") && e.contains("soon"), "{e}");
        let e = err("[cluster]\netcd = [\"http://h:2379\"]\nlabels = { \"a b\" = \"x\" }\n");
        assert!(e.contains("cluster.labels") && e.contains("a b"), "{e}");
        let e = err("[cluster]\netcd = [\"http://h:2379\"]\nnodes = \"x\"\n");
        assert!(e.contains("nodes"), "{e}");
        let e = err("[cluster]\netcd = [\"http://h:2379\"]\ntoken = \"short-secret\"\n");
        assert!(e.contains("cluster.token is too short"), "{e}");
        assert!(!e.contains("short-secret"), "the secret is not echoed: {e}");
        let e = err("[cluster]\nnode = \"x\"\n");
        assert!(e.contains("etcd"), "{e}");
    }
}
