//! Authentication and authorization (docs/api.md): bearer tokens with a role. `read` may GET,
//! `write` may also acquire, renew, release and cancel, `admin` may also force-release, clean up,
//! read the audit log and reload the configuration. With no tokens configured the API is open
//! (and the server says so at start unless it listens on loopback only).
//!
//! Tokens are configured as SHA-256 hashes or read from environment variables at start; only
//! hashes are kept in memory, and only token names ever reach a log or the audit trail.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::App;
use crate::config::schema::{Role, Token};

/// Who made a request: a token's name, or `anonymous` when the API is open.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

pub struct Auth {
    /// (name, role, SHA-256 of the token).
    tokens: Vec<(String, Role, [u8; 32])>,
}

impl Auth {
    /// Resolves the configured tokens; a `token-env` naming an unset variable is an error.
    pub fn new(tokens: &[Token]) -> Result<Auth, String> {
        let mut out = Vec::new();
        for t in tokens {
            let hash = match (&t.token_sha256, &t.token_env) {
                (Some(h), _) => {
                    let bytes = hex::decode(h)
                        .map_err(|e| format!("auth.tokens {:?}: token-sha256: {e}", t.name))?;
                    bytes.try_into().map_err(|_| {
                        format!("auth.tokens {:?}: token-sha256 must be 32 bytes", t.name)
                    })?
                }
                (None, Some(var)) => {
                    let token = std::env::var(var).map_err(|_| {
                        format!(
                            "auth.tokens {:?}: token-env {var} is not set in the environment",
                            t.name
                        )
                    })?;
                    Sha256::digest(token.as_bytes()).into()
                }
                (None, None) => {
                    return Err(format!(
                        "auth.tokens {:?}: give token-sha256 or token-env",
                        t.name
                    ))
                }
            };
            out.push((t.name.clone(), t.role, hash));
        }
        Ok(Auth { tokens: out })
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token's name and role, if it is a configured token.
    fn lookup(&self, token: &str) -> Option<(&str, Role)> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.tokens
            .iter()
            .find(|(_, _, h)| *h == hash)
            .map(|(n, r, _)| (n.as_str(), *r))
    }
}

/// The role a route needs; `None`: open to everyone (health probes, metrics).
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    match path {
        // The web page holds no data: it asks the API with the token entered in it.
        "/"
        | "/healthz"
        | "/readyz"
        | "/metrics"
        | "/openapi.json"
        | "/api/enhanced-locks/health" => None,
        "/api/v1/resource/force-release"
        | "/api/v1/cleanup"
        | "/api/v1/audit"
        | "/api/v1/export"
        | "/api/v1/import"
        | "/api/v1/admin/reload" => Some(Role::Admin),
        _ if *method == Method::GET || *method == Method::HEAD => Some(Role::Read),
        _ => Some(Role::Write),
    }
}

fn allows(have: Role, need: Role) -> bool {
    let level = |r: Role| match r {
        Role::Read => 0,
        Role::Write => 1,
        Role::Admin => 2,
    };
    level(have) >= level(need)
}

/// Authenticates and authorizes; leaves the [`Actor`] on the request and on the response.
pub async fn authorize(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let need = required_role(request.method(), &path);
    let (actor, refusal) = if app.auth.is_open() {
        (Actor("anonymous".into()), None)
    } else {
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match (token.and_then(|t| app.auth.lookup(t)), need) {
            (found, None) => (Actor(found.map_or("anonymous", |f| f.0).into()), None),
            (None, Some(_)) => {
                let why = if token.is_some() {
                    "the token is not valid"
                } else {
                    "an API token is required (Authorization: Bearer ...)"
                };
                let who = if token.is_some() {
                    "invalid token"
                } else {
                    "anonymous"
                };
                (Actor(who.into()), Some(ApiError::Unauthorized(why.into())))
            }
            (Some((name, role)), Some(need)) if !allows(role, need) => (
                Actor(name.to_string()),
                Some(ApiError::Forbidden(format!(
                    "token {name:?} has role {role:?}; {} {path} needs {need:?}",
                    request.method()
                ))),
            ),
            (Some((name, _)), Some(_)) => (Actor(name.to_string()), None),
        }
    };
    // The actor also rides on the response, for the audit log (which sees refusals too).
    let mut response = match refusal {
        Some(e) => e.into_response(),
        None => {
            request.extensions_mut().insert(actor.clone());
            next.run(request).await
        }
    };
    response.extensions_mut().insert(actor);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_and_routes_need_the_documented_role() {
        assert!(allows(Role::Admin, Role::Write) && allows(Role::Write, Role::Read));
        assert!(!allows(Role::Read, Role::Write) && !allows(Role::Write, Role::Admin));
        assert_eq!(
            required_role(&Method::GET, "/api/v1/locks"),
            Some(Role::Read)
        );
        assert_eq!(
            required_role(&Method::POST, "/api/v1/locks"),
            Some(Role::Write)
        );
        assert_eq!(
            required_role(&Method::DELETE, "/api/v1/tickets/{id}"),
            Some(Role::Write)
        );
        assert_eq!(
            required_role(&Method::POST, "/api/v1/cleanup"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role(&Method::GET, "/api/v1/audit"),
            Some(Role::Admin)
        );
        assert_eq!(required_role(&Method::GET, "/healthz"), None);
    }

    #[test]
    fn tokens_are_matched_by_hash() {
        let hash = hex::encode(Sha256::digest(b"s3cret"));
        let auth = Auth::new(&[Token {
            name: "ci".into(),
            role: Role::Write,
            token_sha256: Some(hash),
            token_env: None,
        }])
        .unwrap();
        assert_eq!(auth.lookup("s3cret"), Some(("ci", Role::Write)));
        assert_eq!(auth.lookup("guess"), None);
        let err = Auth::new(&[Token {
            name: "x".into(),
            role: Role::Read,
            token_sha256: None,
            token_env: Some("ELOCK_TEST_UNSET_VAR".into()),
        }])
        .err()
        .unwrap();
        assert!(err.contains("ELOCK_TEST_UNSET_VAR"), "{err}");
    }
}
