//! The CLI's HTTP client: one request, its JSON answer, and the exit code its error maps to.

use reqwest::Method;
use serde_json::Value;

/// Documented exit codes (docs/cli.md).
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    /// Not granted: locked, or the wait ran out.
    pub const NOT_GRANTED: i32 = 2;
    /// Chosen as a deadlock victim (or refused because the request would close a cycle).
    pub const DEADLOCK: i32 = 3;
    pub const UNREACHABLE: i32 = 4;
}

#[derive(Debug)]
pub struct CliError {
    pub exit: i32,
    pub message: String,
    /// The server's error body, for `--output json`.
    pub body: Option<Value>,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            exit: exit::ERROR,
            message: message.into(),
            body: None,
        }
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: server.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// A client for the same server sharing `other`'s connection pool and token.
    pub fn with_http(mut self, other: &Client) -> Self {
        self.http = other.http.clone();
        self.token = other.token.clone();
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn builder(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let b = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => b.bearer_auth(t),
            None => b,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let mut b = self.builder(method, path).query(query);
        if let Some(body) = body {
            b = b.json(&body);
        }
        let response = b.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(e))?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(json);
        }
        let code = json["error"]["code"].as_str().unwrap_or("").to_string();
        let message = json["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}"));
        let exit = match code.as_str() {
            "locked" | "wait_timeout" => exit::NOT_GRANTED,
            "deadlock" => exit::DEADLOCK,
            _ => exit::ERROR,
        };
        Err(CliError {
            exit,
            message: format!("{code}: {message}"),
            body: Some(json),
        })
    }

    pub fn unreachable(&self, e: reqwest::Error) -> CliError {
        CliError {
            exit: exit::UNREACHABLE,
            message: format!("cannot reach the elock server at {}: {e} (start it with `elock serve`, or set --server / ELOCK_SERVER)", self.base),
            body: None,
        }
    }
}
