//! TLS on the daemon's port (`[server] tls_cert`, `tls_key`): browsers get
//! TLS and `Secure` cookies; the local CLI and hooks keep plain HTTP on
//! loopback; bad files stop the daemon with an error naming the key.

mod common;

use common::Daemon;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// A self-signed certificate for `localhost`, made with the openssl CLI.
fn self_signed(dir: &Path) -> Option<(String, String)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match out {
        Ok(o) if o.status.success() => {
            Some((cert.display().to_string(), key.display().to_string()))
        }
        Ok(o) => {
            eprintln!(
                "SKIPPED: openssl could not make a certificate: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!(
                "SKIPPED: no openssl to make a test certificate ({e}); apt-get install openssl"
            );
            None
        }
    }
}

/// One HTTP/1.1 request over TLS, trusting only `cert`; the raw answer.
async fn https(addr: &str, cert: &str, request: &str) -> String {
    let pem = std::fs::read(cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_for_browsers_plain_http_for_loopback_clients() {
    let certs = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(certs.path()) else {
        return;
    };
    let d = Daemon::start(&format!(
        "[server]\ntls_cert = {cert:?}\ntls_key = {key:?}\n"
    ))
    .await;
    let addr = d.url.trim_start_matches("http://").to_string();
    // The local CLI and the API over loopback: plain HTTP, as before.
    let (st, v) = d.get("/v1/sessions").await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    let out = d.cli(&["open", "--print"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A browser over TLS: the page, a login, a Secure cookie, HSTS.
    let page = https(
        &addr,
        &cert,
        "GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("strict-transport-security: max-age="),
        "{page}"
    );
    let (_, link) = d.post("/v1/login", json!({})).await;
    let path = link["url"]
        .as_str()
        .unwrap()
        .split_once(&addr)
        .unwrap()
        .1
        .to_string();
    let answer = https(
        &addr,
        &cert,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    let cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {answer}"));
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // A daemon on loopback answers no other host name (DNS rebinding): a
    // link for another device needs a non-loopback listener (or public_url).
    let r = reqwest::Client::new()
        .post(format!("{}/v1/login", d.url))
        .bearer_auth(&d.token)
        .header("host", "herd.example:7777")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::MISDIRECTED_REQUEST);
}

#[test]
fn a_bad_certificate_stops_the_daemon_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not a key").unwrap();
    let cfg = dir.path().join("herd.toml");
    std::fs::write(
        &cfg,
        format!("[server]\ntls_cert = {:?}\ntls_key = {:?}\n", cert, key),
    )
    .unwrap();
    let out = Command::new(common::herd_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.tls_cert") && err.contains("cert.pem"),
        "{err}"
    );
}
