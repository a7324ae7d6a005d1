//! HTTPS with rustls (docs/deploy.md): the certificate and key from files, optional client
//! certificates checked against a CA, all read again on reload.
//!
//! A reload builds a whole new rustls configuration and swaps it in; connections already open
//! keep the one they were accepted with, new ones get the new certificate. A reload that cannot
//! read its files, or finds a certificate that has expired or does not match its key, is
//! refused and the running configuration stays: a botched renewal never takes HTTPS down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::schema;

/// The subject of a client's certificate, on every request of its connection (for `auth`).
#[derive(Clone, Debug)]
pub struct ClientSubject {
    /// RFC 4514 text: `CN=ci,O=Example`.
    pub subject: String,
    pub common_name: Option<String>,
}

/// What the server was configured with: the files, and the rustls configuration read from them.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    current: RwLock<Arc<ServerConfig>>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Tls {
    /// `None` when TLS is off; an error naming the setting and the file otherwise.
    pub fn from_config(c: &schema::Tls) -> Result<Option<Arc<Tls>>, String> {
        let (cert, key) = match (&c.cert_file, &c.key_file) {
            (None, None) => {
                if c.client_ca_file.is_some() {
                    return Err("tls.client-ca-file needs tls.cert-file and tls.key-file: client certificates are asked for only over HTTPS".into());
                }
                return Ok(None);
            }
            (Some(_), None) => return Err("tls.cert-file is set but tls.key-file is not".into()),
            (None, Some(_)) => return Err("tls.key-file is set but tls.cert-file is not".into()),
            (Some(c), Some(k)) => (c.clone(), k.clone()),
        };
        let config = build(&cert, &key, c.client_ca_file.as_deref())?;
        Ok(Some(Arc::new(Tls {
            cert,
            key,
            client_ca: c.client_ca_file.clone(),
            current: RwLock::new(Arc::new(config)),
        })))
    }

    /// Reads the files again; on an error the running certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        let config = build(&self.cert, &self.key, self.client_ca.as_deref())?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded; new connections use it");
        Ok(())
    }

    /// Whether clients must present certificates.
    pub fn asks_clients(&self) -> bool {
        self.client_ca.is_some()
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// Refuses a certificate outside its validity period, naming the file and the dates.
fn check_validity(path: &Path, cert: &CertificateDer<'_>) -> Result<(), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("tls.cert-file {}: {e}", path.display()))?;
    let validity = parsed.validity();
    if !validity.is_valid() {
        return Err(format!(
            "tls.cert-file {}: the certificate is valid from {} to {}, not now",
            path.display(),
            validity.not_before,
            validity.not_after
        ));
    }
    Ok(())
}

fn build(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerConfig, String> {
    let chain = read_certs(cert, "tls.cert-file")?;
    check_validity(cert, &chain[0])?;
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("tls.key-file {}: {e}", key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca, "tls.client-ca-file")? {
                roots
                    .add(c)
                    .map_err(|e| format!("tls.client-ca-file {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("tls.client-ca-file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, private).map_err(|e| {
        format!(
            "tls.cert-file {} and tls.key-file {}: {e}",
            cert.display(),
            key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The subject of the client's certificate (the first of its chain), if it sent one.
pub fn client_subject(conn: &rustls::ServerConnection) -> Option<ClientSubject> {
    let cert = conn.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let subject = parsed.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    Some(ClientSubject {
        subject: subject.to_string(),
        common_name,
    })
}
