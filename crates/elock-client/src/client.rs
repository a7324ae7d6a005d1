//! The connection to one server: address, token, timeouts, retries, and the one function every
//! call goes through.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use elock_core::api::ErrorBody;

use crate::error::{Error, Result};
use crate::tls::TlsOptions;

/// How long one call may take by default (a wait adds its own length on top).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of a call that failed without an answer, when retrying cannot do anything twice.
pub const DEFAULT_RETRIES: u32 = 2;

/// A client of one elock server. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    /// Without a trailing `/`.
    pub(crate) base: String,
    token: Option<String>,
    pub(crate) timeout: Duration,
    retries: u32,
}

/// Settings of a [`Client`] before it is built.
pub struct ClientBuilder {
    server: String,
    token: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    retries: u32,
    tls: TlsOptions,
}

impl ClientBuilder {
    /// Certificate authorities to trust and a client certificate, for `https://` servers.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// The bearer token sent with every call (`auth.tokens` on the server).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How long one call may take (a waiting acquire gets its wait on top). Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many times a call that got no answer is tried again, when trying again cannot do
    /// anything twice: reads after any connection error, and every call whose connection
    /// could not be opened (the request was never sent). Default 2; 0 turns retries off.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    pub fn build(self) -> Result<Client> {
        let base = normalize(&self.server)?;
        let mut http = reqwest::Client::builder().connect_timeout(self.connect_timeout);
        if base.starts_with("https://") {
            http = http.tls_backend_preconfigured(self.tls.client_config()?);
        } else if !self.tls.is_empty() {
            return Err(Error::Invalid(format!(
                "server {base}: --cacert, --cert and --key need an https:// server"
            )));
        }
        let http = http
            .build()
            .map_err(|e| Error::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                token: self.token,
                timeout: self.timeout,
                retries: self.retries,
            }),
        })
    }
}

/// `host:port` is taken as `http://host:port`; anything else must be an http(s) URL.
fn normalize(server: &str) -> Result<String> {
    let server = server.trim();
    let with_scheme = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| {
        Error::Invalid(format!(
            "server {server:?}: {e}; expected http://HOST:PORT or HOST:PORT"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::Invalid(format!(
            "server {server:?}: expected http://HOST:PORT or https://HOST:PORT"
        )));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

/// One call: method, path, query and body, and whether it may be sent twice.
pub(crate) struct Call<'a, Q: Serialize, B: Serialize> {
    pub method: Method,
    pub path: &'a str,
    pub query: Option<&'a Q>,
    pub body: Option<&'a B>,
    /// Extra time on top of the client's timeout (a wait).
    pub extra_time: Duration,
}

impl<'a, Q: Serialize> Call<'a, Q, ()> {
    /// A read with a query string.
    pub fn query(path: &'a str, query: &'a Q) -> Self {
        Call {
            method: Method::GET,
            path,
            query: Some(query),
            body: None,
            extra_time: Duration::ZERO,
        }
    }
}

impl<'a> Call<'a, (), ()> {
    pub fn get(path: &'a str) -> Self {
        Call {
            method: Method::GET,
            path,
            query: None,
            body: None,
            extra_time: Duration::ZERO,
        }
    }
}

impl Client {
    /// A client of `server` (`http://127.0.0.1:4142`, or `host:port`) with the defaults.
    pub fn new(server: &str) -> Result<Client> {
        Client::builder(server).build()
    }

    pub fn builder(server: &str) -> ClientBuilder {
        ClientBuilder {
            server: server.to_string(),
            token: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            tls: TlsOptions::default(),
        }
    }

    /// The server's base URL, without a trailing `/`.
    pub fn server(&self) -> &str {
        &self.inner.base
    }

    /// A request to `path` with the token, for calls outside the typed API (Atlantis's own
    /// endpoints, `/metrics`).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let b = self
            .inner
            .http
            .request(method, format!("{}{path}", self.inner.base));
        match &self.inner.token {
            Some(t) => b.bearer_auth(t),
            None => b,
        }
    }

    pub(crate) fn unreachable(&self, source: reqwest::Error) -> Error {
        Error::Unreachable {
            server: self.inner.base.clone(),
            source,
        }
    }

    /// Sends a call (retrying as [`ClientBuilder::retries`] allows) and reads its answer.
    pub(crate) async fn call<T, Q, B>(&self, call: Call<'_, Q, B>) -> Result<T>
    where
        T: DeserializeOwned,
        Q: Serialize,
        B: Serialize,
    {
        let (status, bytes) = self.send(&call).await?;
        self.decode(status, &bytes)
    }

    /// Sends a call and returns the status and the raw answer, error statuses included.
    pub(crate) async fn send<Q: Serialize, B: Serialize>(
        &self,
        call: &Call<'_, Q, B>,
    ) -> Result<(StatusCode, bytes::Bytes)> {
        let idempotent = call.method == Method::GET;
        let mut attempt = 0;
        loop {
            let mut b = self
                .request(call.method.clone(), call.path)
                .timeout(self.inner.timeout + call.extra_time);
            if let Some(q) = call.query {
                b = b.query(q);
            }
            if let Some(body) = call.body {
                b = b.json(body);
            }
            let result = match b.send().await {
                Ok(r) => {
                    let status = r.status();
                    r.bytes().await.map(|bytes| (status, bytes))
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(answer) => return Ok(answer),
                Err(e) if attempt < self.inner.retries && (e.is_connect() || idempotent) => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "retrying a call that got no answer");
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(4))).await;
                }
                Err(e) => return Err(self.unreachable(e)),
            }
        }
    }

    /// A success status's body as `T`; an error status's body as [`Error::Api`].
    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        status: StatusCode,
        bytes: &[u8],
    ) -> Result<T> {
        if status.is_success() {
            return serde_json::from_slice(bytes).map_err(|e| self.protocol(status, e.to_string()));
        }
        match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(body) => Err(Error::from_body(status.as_u16(), body)),
            Err(_) => Err(self.protocol(
                status,
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            )),
        }
    }

    fn protocol(&self, status: StatusCode, message: String) -> Error {
        Error::Protocol {
            server: self.inner.base.clone(),
            status: status.as_u16(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn server_addresses_without_a_scheme_are_http() {
        assert_eq!(
            normalize("localhost:4142").unwrap(),
            "http://localhost:4142"
        );
        assert_eq!(
            normalize("https://locks.example.com/").unwrap(),
            "https://locks.example.com"
        );
        assert!(normalize("ftp://x").is_err());
        assert!(normalize("http://").is_err());
    }
}
