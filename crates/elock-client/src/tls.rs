//! HTTPS to an elock server: which certificate authorities to trust, and a client certificate
//! for servers that ask for one (`tls.client-ca-file` on the server).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::error::{Error, Result};

/// TLS settings of a [`ClientBuilder`](crate::ClientBuilder). With none of them, an `https://`
/// server is checked against the system's certificate authorities.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// Trust only the authorities in this PEM file (`--cacert`).
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and its key, PEM (`--cert`, `--key`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl TlsOptions {
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// The rustls configuration; a file that cannot be read is an error naming it.
    pub(crate) fn client_config(&self) -> Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(ca) => {
                for cert in certs(ca, "--cacert")? {
                    roots
                        .add(cert)
                        .map_err(|e| Error::Invalid(format!("--cacert {}: {e}", ca.display())))?;
                }
            }
            None => {
                // The system's authorities; one that cannot be parsed is skipped, as browsers do.
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Invalid(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = certs(cert, "--cert")?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| Error::Invalid(format!("--key {}: {e}", key.display())))?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    Error::Invalid(format!(
                        "--cert {} and --key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
            (Some(_), None) => return Err(Error::Invalid("--cert needs --key".into())),
            (None, Some(_)) => return Err(Error::Invalid("--key needs --cert".into())),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::Invalid(format!("{flag} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Invalid(format!(
            "{flag} {}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}
