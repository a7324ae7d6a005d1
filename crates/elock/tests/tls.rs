//! HTTPS, black-box: certificates made at test time (rcgen), the real server and CLI.
//!
//! - a round trip over HTTPS with the CLI and the Rust client trusting the test CA;
//! - a plaintext request to the HTTPS port gets no answer;
//! - an expired certificate is refused at start and on reload (the running one stays);
//! - a reload (SIGHUP or admin/reload) serves a new certificate to new connections while an
//!   open connection goes on;
//! - mutual TLS: a client certificate from the configured CA is mapped to its role and scope,
//!   one from another CA, or none, is refused in the handshake.

mod support;

use std::path::PathBuf;
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use serde_json::{json, Value};
use support::Server;

/// A certificate authority of the test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A leaf certificate and its key, PEM: for the server (`localhost`, `127.0.0.1`) or a
    /// client (its common name). `expired`: valid in 2020 only.
    fn leaf(&self, common_name: &str, server: bool, expired: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names = if server {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A server certificate of `ca` (expired or not) written as server.pem and server.key, the
    /// files `tls_config` names; its PEM.
    fn server_cert(&self, ca: &Ca, expired: bool) -> String {
        let (cert, key) = ca.leaf("elock", true, expired);
        self.write("server.pem", &cert);
        self.write("server.key", &key);
        cert
    }
}

/// The Rust client of `server`, trusting only the authorities in `ca_file`.
fn typed_client(server: &Server, ca_file: PathBuf) -> elock_client::Client {
    elock_client::Client::builder(&server.url)
        .tls(elock_client::TlsOptions {
            ca_file: Some(ca_file),
            ..Default::default()
        })
        .build()
        .unwrap()
}

fn start(files: &Files, config: &str) -> Server {
    let cfg = files.write("elock.yaml", config);
    Server::start_with(&files.path("data"), &["--config", cfg.to_str().unwrap()])
}

fn tls_config(files: &Files) -> String {
    format!(
        "tls:\n  cert-file: {}\n  key-file: {}\n",
        files.path("server.pem").display(),
        files.path("server.key").display()
    )
}

/// An HTTPS client trusting `ca` (and presenting `identity`, PEM cert + key, if given).
fn https_client(ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .tls_info(true);
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// The DER of the certificate the server presented on this answer's connection.
fn presented(r: &reqwest::Response) -> Vec<u8> {
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn an_https_round_trip_with_the_cli_and_the_client() {
    let ca = Ca::new("elock test CA");
    let files = Files::new();
    files.server_cert(&ca, false);
    let ca_file = files.write("ca.pem", &ca.pem);
    let server = start(&files, &tls_config(&files));
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["--server", &server.url, "--cacert"])
        .arg(&ca_file)
        .args(["--output", "json", "lock", "infra/prod", "--owner", "alice"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lease: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lease["owner"], "alice");

    let client = typed_client(&server, ca_file.clone());
    let held = client.list(&Default::default()).await.unwrap();
    assert_eq!(held.len(), 1);

    // Without the CA the server's certificate is not trusted: the CLI says so and fails.
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["--server", &server.url, "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    // Plain HTTP to the HTTPS port gets no answer.
    let plain = server.url.replacen("https://", "http://", 1);
    let refused = reqwest::Client::new()
        .get(format!("{plain}/api/v1/locks"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a plaintext request was answered: {refused:?}"
    );
}

#[test]
fn an_expired_certificate_is_refused_at_start() {
    let ca = Ca::new("elock test CA");
    let files = Files::new();
    files.server_cert(&ca, true);
    let cfg = files.write("elock.yaml", &tls_config(&files));
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(files.path("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls.cert-file") && err.contains("server.pem") && err.contains("not now"),
        "{err}"
    );
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_keeps_open_connections() {
    let ca = Ca::new("elock test CA");
    let files = Files::new();
    let first = files.server_cert(&ca, false);
    let server = start(&files, &tls_config(&files));
    let client = https_client(&ca.pem, None);
    let url = format!("{}/api/v1/locks", server.url);
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(presented(&r), der_of(&first));

    // An event stream open across the reloads, on one connection (no reconnecting client).
    let mut stream = client
        .get(format!("{}/api/v1/events", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);

    // A renewed certificate: picked up by SIGHUP, for new connections.
    let second = files.server_cert(&ca, false);
    support::signal(server.pid(), nix::sys::signal::Signal::SIGHUP);
    let mut seen = Vec::new();
    for _ in 0..100 {
        let fresh = https_client(&ca.pem, None);
        seen = presented(&fresh.get(&url).send().await.unwrap());
        if seen == der_of(&second) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        der_of(&second),
        "SIGHUP did not load the new certificate"
    );

    // An expired one is refused by admin/reload; the running certificate stays.
    files.server_cert(&ca, true);
    let https = https_client(&ca.pem, None);
    let r = https
        .post(format!("{}/api/v1/admin/reload", server.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("not now"), "{body}");
    let fresh = https_client(&ca.pem, None);
    assert_eq!(
        presented(&fresh.get(&url).send().await.unwrap()),
        der_of(&second)
    );

    // A valid one through admin/reload: answered once it serves.
    let third = files.server_cert(&ca, false);
    let r = https
        .post(format!("{}/api/v1/admin/reload", server.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let fresh = https_client(&ca.pem, None);
    assert_eq!(
        presented(&fresh.get(&url).send().await.unwrap()),
        der_of(&third)
    );

    // The stream opened before the reloads still delivers.
    let typed = typed_client(&server, files.write("ca.pem", &ca.pem));
    typed
        .lock("bob", ["after/reload"])
        .unwrap()
        .try_acquire()
        .await
        .unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut text = String::new();
        while !text.contains("after/reload") {
            match stream.chunk().await {
                Ok(Some(bytes)) => text.push_str(&String::from_utf8_lossy(&bytes)),
                other => panic!("the stream ended: {other:?}"),
            }
        }
    })
    .await;
    assert!(
        got.is_ok(),
        "no event on the connection opened before the reload"
    );
}

#[tokio::test]
async fn mutual_tls_maps_the_subject_and_refuses_other_cas() {
    let ca = Ca::new("elock test CA");
    let other = Ca::new("somebody else's CA");
    let files = Files::new();
    files.server_cert(&ca, false);
    files.write("clients.pem", &ca.pem);
    let config = format!(
        "{}  client-ca-file: {}\nauth:\n  clients:\n    - subject: ci-runner\n      role: write\n      owners: [\"ci/*\"]\n",
        tls_config(&files),
        files.path("clients.pem").display()
    );
    let server = start(&files, &config);
    let url = format!("{}/api/v1/locks", server.url);

    let (c, k) = ca.leaf("ci-runner", false, false);
    let runner = https_client(&ca.pem, Some((&c, &k)));
    let r = runner
        .post(&url)
        .json(&json!({"owner": "ci/42", "resource": "r"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = runner
        .post(&url)
        .json(&json!({"owner": "alice", "resource": "s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("client certificate") && msg.contains("ci-runner") && msg.contains("ci/*"),
        "{msg}"
    );

    // The CLI with the same identity.
    let cert_file = files.write("runner.pem", &c);
    let key_file = files.write("runner.key", &k);
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["--server", &server.url, "--cacert"])
        .arg(files.path("clients.pem"))
        .arg("--cert")
        .arg(&cert_file)
        .arg("--key")
        .arg(&key_file)
        .args(["lock", "t", "--owner", "ci/43"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A known subject from another CA, and no certificate at all: refused in the handshake.
    let (c, k) = other.leaf("ci-runner", false, false);
    let stranger = https_client(&ca.pem, Some((&c, &k)));
    assert!(stranger.get(&url).send().await.is_err());
    assert!(https_client(&ca.pem, None).get(&url).send().await.is_err());
    // An expired certificate from the right CA, too.
    let (c, k) = ca.leaf("ci-runner", false, true);
    assert!(https_client(&ca.pem, Some((&c, &k)))
        .get(&url)
        .send()
        .await
        .is_err());
    // A subject the configuration does not name: a valid handshake, then 401.
    let (c, k) = ca.leaf("unknown-runner", false, false);
    let r = https_client(&ca.pem, Some((&c, &k)))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
