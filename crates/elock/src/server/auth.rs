//! Authentication and authorization (docs/api.md): bearer tokens and client certificates, each
//! with a role and a scope. `read` may GET, `write` may also acquire, renew, release and cancel,
//! `admin` may also force-release, clean up, read the audit log, reload the configuration, and
//! act on every lease whatever its scope. A scope (owner patterns, resource prefixes:
//! [`Scope`]) limits what a `read` or `write` caller may take, renew, release and cancel. With no
//! tokens and no client certificates configured the API is open (and the server says so at
//! start unless it listens on loopback only).
//!
//! Tokens are configured as SHA-256 hashes or read from environment variables at start; only
//! hashes are kept in memory, and only token names ever reach a log or the audit trail.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use elock_core::model::{Lease, TicketView};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::scope::Scope;
use super::tls::ClientSubject;
use super::App;
use crate::config::schema::{Client, Role, Token};

/// Who made a request: a token, a client certificate, or `anonymous`; with its role and scope.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The token's name, `cert:` and the certificate's subject, or `anonymous`.
    pub name: String,
    pub role: Role,
    pub scope: Arc<Scope>,
}

impl Actor {
    /// Anybody, when the API is open: it may do everything.
    fn open() -> Actor {
        Actor::nobody("anonymous")
    }

    /// A caller refused before it was known (for the audit record only).
    fn nobody(name: &str) -> Actor {
        Actor {
            name: name.into(),
            role: Role::Admin,
            scope: Arc::new(Scope::everything()),
        }
    }

    /// How refusals name the caller: `token "ci"`, `client certificate "CN=ci"`, `anonymous`.
    pub fn describe(&self) -> String {
        match self.name.strip_prefix("cert:") {
            Some(subject) => format!("client certificate {subject:?}"),
            None if self.name == "anonymous" => "an anonymous caller".into(),
            None => format!("token {:?}", self.name),
        }
    }

    /// The caller's scope when it limits anything: `None` for an admin or an unscoped caller,
    /// which may act on every lease (nothing to look up, nothing to word; the lock path of an
    /// unscoped token pays one comparison).
    fn limits(&self) -> Option<&Scope> {
        (self.role != Role::Admin && !self.scope.is_everything()).then_some(&*self.scope)
    }

    /// No scope to check: the lookup a check would need can be skipped.
    pub fn unrestricted(&self) -> bool {
        self.limits().is_none()
    }

    /// May this caller take a lease (or queue a ticket) for `owner` on `resources`?
    pub fn may_take<'r>(
        &self,
        owner: &str,
        resources: impl IntoIterator<Item = &'r str>,
    ) -> Result<(), ApiError> {
        let Some(scope) = self.limits() else {
            return Ok(());
        };
        let what = if !scope.covers_owner(owner) {
            format!("act for owner {owner:?}")
        } else {
            let outside: Vec<&str> = resources
                .into_iter()
                .filter(|r| !scope.covers_resource(r))
                .collect();
            if outside.is_empty() {
                return Ok(());
            }
            format!("act on {}", outside.join(", "))
        };
        Err(ApiError::Forbidden(format!(
            "{} may not {what}: its scope is {}",
            self.describe(),
            scope.describe()
        )))
    }

    /// May this caller `action` (renew, release, cancel) `what` (`lease ID`, `ticket ID`, `the
    /// lock at KEY`), which belongs to `owner` on `resources`? The refusal names the owner.
    pub fn may_act_on<'r>(
        &self,
        action: &str,
        what: &str,
        owner: &str,
        resources: impl Iterator<Item = &'r str> + Clone,
    ) -> Result<(), ApiError> {
        let Some(scope) = self.limits() else {
            return Ok(());
        };
        if scope.covers(owner, resources.clone()) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "{what} is held by owner {owner:?} on {}; {} may {action} only those of {}",
            resources.collect::<Vec<_>>().join(", "),
            self.describe(),
            scope.describe()
        )))
    }

    /// May this caller renew or release `lease`?
    pub fn may_touch(&self, action: &str, lease: &Lease) -> Result<(), ApiError> {
        self.may_act_on(
            action,
            &format!("lease {}", lease.id),
            lease.owner.as_str(),
            lease.resources.iter().map(|h| h.resource.as_str()),
        )
    }

    pub fn may_cancel(&self, ticket: &TicketView) -> Result<(), ApiError> {
        self.may_act_on(
            "cancel",
            &format!("ticket {}", ticket.id),
            ticket.owner.as_str(),
            ticket.resources.iter().map(|r| r.as_str()),
        )
    }
}

struct Credential {
    name: String,
    role: Role,
    scope: Arc<Scope>,
    hash: [u8; 32],
}

struct Certified {
    subject: String,
    role: Role,
    scope: Arc<Scope>,
}

pub struct Auth {
    tokens: Vec<Credential>,
    clients: Vec<Certified>,
}

impl Auth {
    /// Resolves the configured tokens and client certificates; a `token-env` naming an unset
    /// variable, or a pattern that is not a glob, is an error naming the entry.
    pub fn new(tokens: &[Token], clients: &[Client]) -> Result<Auth, String> {
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
            out.push(Credential {
                name: t.name.clone(),
                role: t.role,
                scope: Arc::new(
                    Scope::new(&t.owners, &t.resources)
                        .map_err(|e| format!("auth.tokens {:?}: {e}", t.name))?,
                ),
                hash,
            });
        }
        let mut certified = Vec::new();
        for c in clients {
            certified.push(Certified {
                subject: c.subject.clone(),
                role: c.role,
                scope: Arc::new(
                    Scope::new(&c.owners, &c.resources)
                        .map_err(|e| format!("auth.clients {:?}: {e}", c.subject))?,
                ),
            });
        }
        let clients = certified;
        Ok(Auth {
            tokens: out,
            clients,
        })
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.clients.is_empty()
    }

    /// The token's identity, if it is a configured token.
    fn lookup(&self, token: &str) -> Option<Actor> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.tokens.iter().find(|c| c.hash == hash).map(|c| Actor {
            name: c.name.clone(),
            role: c.role,
            scope: c.scope.clone(),
        })
    }

    /// The identity of a client certificate: an entry naming its common name or its subject.
    fn certified(&self, subject: &ClientSubject) -> Option<Actor> {
        self.clients
            .iter()
            .find(|c| {
                c.subject == subject.subject || subject.common_name.as_deref() == Some(&c.subject)
            })
            .map(|c| Actor {
                name: format!("cert:{}", subject.subject),
                role: c.role,
                scope: c.scope.clone(),
            })
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

/// Authenticates and authorizes; leaves the [`Actor`] on the request and on the response. A
/// bearer token wins over a client certificate.
pub async fn authorize(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let need = required_role(request.method(), &path);
    let (actor, refusal) = if app.auth.is_open() {
        (Actor::open(), None)
    } else {
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let subject = request.extensions().get::<ClientSubject>();
        let found = match token {
            Some(t) => app.auth.lookup(t),
            None => subject.and_then(|s| app.auth.certified(s)),
        };
        match (found, need) {
            (found, None) => (found.unwrap_or_else(|| Actor::nobody("anonymous")), None),
            (None, Some(_)) => {
                let (who, why) = match (token, subject) {
                    (Some(_), _) => ("invalid token".to_string(), "the token is not valid".to_string()),
                    (None, Some(s)) => (
                        format!("cert:{}", s.subject),
                        format!(
                            "client certificate {:?} is not in auth.clients, and no API token was given",
                            s.subject
                        ),
                    ),
                    (None, None) => (
                        "anonymous".to_string(),
                        "an API token is required (Authorization: Bearer ...)".to_string(),
                    ),
                };
                (Actor::nobody(&who), Some(ApiError::Unauthorized(why)))
            }
            (Some(actor), Some(need)) if !allows(actor.role, need) => {
                let refusal = ApiError::Forbidden(format!(
                    "{} has role {:?}; {} {path} needs {need:?}",
                    actor.describe(),
                    actor.role,
                    request.method()
                ));
                (actor, Some(refusal))
            }
            (Some(actor), Some(_)) => (actor, None),
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
        let auth = Auth::new(
            &[Token {
                name: "ci".into(),
                role: Role::Write,
                token_sha256: Some(hash),
                token_env: None,
                owners: Vec::new(),
                resources: Vec::new(),
            }],
            &[],
        )
        .unwrap();
        let found = auth.lookup("s3cret").unwrap();
        assert_eq!((found.name.as_str(), found.role), ("ci", Role::Write));
        assert!(auth.lookup("guess").is_none());
        let err = Auth::new(
            &[Token {
                name: "x".into(),
                role: Role::Read,
                token_sha256: None,
                token_env: Some("ELOCK_TEST_UNSET_VAR".into()),
                owners: Vec::new(),
                resources: Vec::new(),
            }],
            &[],
        )
        .err()
        .unwrap();
        assert!(err.contains("ELOCK_TEST_UNSET_VAR"), "{err}");
    }

    #[test]
    fn refusals_name_the_owner_the_resources_outside_and_the_scope() {
        let actor = Actor {
            name: "a".into(),
            role: Role::Write,
            scope: Arc::new(
                Scope::new(&["team-a/*".into(), "ci-?".into()], &["infra/a/".into()]).unwrap(),
            ),
        };
        let Err(ApiError::Forbidden(m)) = actor.may_take("team-b/bob", ["infra/a/x"]) else {
            panic!()
        };
        assert!(
            m.contains("team-b/bob") && m.contains("owners [team-a/*, ci-?]"),
            "{m}"
        );
        let Err(ApiError::Forbidden(m)) = actor.may_take("ci-1", ["infra/a/x", "infra/b/y"]) else {
            panic!()
        };
        assert!(m.contains("infra/b/y") && !m.contains("infra/a/x,"), "{m}");
        assert!(actor.may_take("ci-1", ["infra/a/x"]).is_ok());
        // An admin, or a token without a scope, is not limited: nothing to check.
        let admin = Actor {
            role: Role::Admin,
            ..actor.clone()
        };
        assert!(admin.unrestricted() && admin.may_take("team-b/bob", ["x"]).is_ok());
        let unscoped = Actor {
            scope: Arc::new(Scope::everything()),
            ..actor
        };
        assert!(unscoped.unrestricted());
    }
}
