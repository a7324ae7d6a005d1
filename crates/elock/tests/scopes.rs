//! Tokens scoped by owner and resource, black-box: every role and scope on every mutating
//! endpoint, the Atlantis adapter included, against a lease of an owner the scope covers and
//! one it does not. A lease id alone gives no power; admins act on every lease.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::Server;

fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Role {
    Read,
    Write,
    Admin,
}

/// A configured token: its name (also its secret here), role, and whether it is scoped to
/// owners `team-a/*` and `acme/infra#*` on resources under `a/` and `acme/infra/`.
struct Tok {
    name: &'static str,
    role: Role,
    scoped: bool,
}

const TOKENS: &[Tok] = &[
    Tok {
        name: "viewer",
        role: Role::Read,
        scoped: false,
    },
    Tok {
        name: "viewer-a",
        role: Role::Read,
        scoped: true,
    },
    Tok {
        name: "ci",
        role: Role::Write,
        scoped: false,
    },
    Tok {
        name: "team-a",
        role: Role::Write,
        scoped: true,
    },
    Tok {
        name: "ops",
        role: Role::Admin,
        scoped: false,
    },
    Tok {
        name: "ops-a",
        role: Role::Admin,
        scoped: true,
    },
];

fn config() -> String {
    let mut y = String::from("auth:\n  tokens:\n");
    for t in TOKENS {
        let role = format!("{:?}", t.role).to_lowercase();
        y.push_str(&format!(
            "    - name: {}\n      role: {role}\n      token-sha256: {}\n",
            t.name,
            sha(t.name)
        ));
        if t.scoped {
            y.push_str("      owners: [\"team-a/*\", \"acme/infra#*\"]\n      resources: [a/, acme/infra/]\n");
        }
    }
    y
}

async fn call(
    server: &Server,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    server
        .client()
        .with_token(token)
        .send(method, path, body)
        .await
}

/// Every mutating endpoint.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Acquire,
    Release,
    Renew,
    CancelTicket,
    ForceRelease,
    Cleanup,
    AtlantisTryLock,
    AtlantisUnlock,
    AtlantisUnlockIfOwned,
    AtlantisUnlockByPull,
    AtlantisDeleteLock,
    CommandLock,
    CommandUnlock,
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint::Acquire,
    Endpoint::Release,
    Endpoint::Renew,
    Endpoint::CancelTicket,
    Endpoint::ForceRelease,
    Endpoint::Cleanup,
    Endpoint::AtlantisTryLock,
    Endpoint::AtlantisUnlock,
    Endpoint::AtlantisUnlockIfOwned,
    Endpoint::AtlantisUnlockByPull,
    Endpoint::AtlantisDeleteLock,
    Endpoint::CommandLock,
    Endpoint::CommandUnlock,
];

impl Endpoint {
    fn needs(self) -> Role {
        match self {
            Endpoint::ForceRelease | Endpoint::Cleanup => Role::Admin,
            _ => Role::Write,
        }
    }
}

/// What a case targets: something of an owner the scoped tokens cover, or of one they do not.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Covered,
    Foreign,
}

/// The names a case uses: fresh per case, so cases do not see each other.
struct Names {
    owner: String,
    resource: String,
    repo: &'static str,
    path: String,
    pull: i64,
}

impl Names {
    fn of(case: usize, target: Target) -> Names {
        match target {
            Target::Covered => Names {
                owner: format!("team-a/u{case}"),
                resource: format!("a/{case}/x"),
                repo: "acme/infra",
                path: format!("p{case}"),
                pull: case as i64,
            },
            Target::Foreign => Names {
                owner: format!("team-b/u{case}"),
                resource: format!("b/{case}/x"),
                repo: "other/repo",
                path: format!("p{case}"),
                pull: case as i64,
            },
        }
    }

    fn key(&self) -> String {
        // Atlantis's key: repo, path, workspace and the (empty) project name.
        format!("{}/{}/default/", self.repo, self.path)
    }

    fn project_lock(&self) -> Value {
        let pull = self.pull;
        json!({"Project": {"RepoFullName": self.repo, "Path": self.path}, "Workspace": "default",
               "User": {"Username": "someone"}, "Pull": {"Num": pull}, "Time": "2026-12-08T00:00:00Z"})
    }
}

/// Sets the case up as the admin, then makes the call as `token`; returns the status, the
/// answer, and the owner whose lease or ticket the call was about.
async fn run(server: &Server, token: &str, e: Endpoint, n: &Names) -> (u16, Value, String) {
    let admin = |method: Method, path: &str, body: Option<Value>| {
        let path = path.to_string();
        async move { call(server, "ops", method, &path, body).await }
    };
    let lease = |body: Value| async move {
        let (s, v) = admin(Method::POST, "/api/v1/locks", Some(body)).await;
        assert!(s == 201 || s == 202, "setup: {s} {v}");
        v
    };
    let atlantis_lock = || async {
        let (s, v) = admin(
            Method::POST,
            "/api/atlantis/v1/try-lock",
            Some(n.project_lock()),
        )
        .await;
        assert_eq!((s, &v["LockAcquired"]), (200, &json!(true)), "setup: {v}");
    };
    let mine = json!({"owner": n.owner, "resource": n.resource});
    let pull_owner = format!("{}#{}", n.repo, n.pull);
    // The setup, then the call: method, path, body, and whose lease or ticket it is about.
    let (method, path, body, owner) = match e {
        Endpoint::Acquire => (
            Method::POST,
            "/api/v1/locks".into(),
            Some(mine),
            n.owner.clone(),
        ),
        Endpoint::Release | Endpoint::Renew => {
            let id = lease(mine).await["id"].as_str().unwrap().to_string();
            match e {
                Endpoint::Release => (
                    Method::DELETE,
                    format!("/api/v1/locks/{id}"),
                    None,
                    n.owner.clone(),
                ),
                _ => (
                    Method::POST,
                    format!("/api/v1/locks/{id}/renew"),
                    Some(json!({})),
                    n.owner.clone(),
                ),
            }
        }
        Endpoint::CancelTicket => {
            lease(json!({"owner": "holder/h", "resource": n.resource})).await;
            let t = lease(
                json!({"owner": n.owner, "resource": n.resource, "wait": "1m", "detach": true}),
            )
            .await;
            let id = t["id"].as_str().unwrap();
            (
                Method::DELETE,
                format!("/api/v1/tickets/{id}"),
                None,
                n.owner.clone(),
            )
        }
        Endpoint::ForceRelease => {
            lease(mine).await;
            let body = json!({"name": n.resource, "reason": "stuck"});
            (
                Method::POST,
                "/api/v1/resource/force-release".into(),
                Some(body),
                n.owner.clone(),
            )
        }
        Endpoint::Cleanup => {
            lease(mine).await;
            let body = json!({"resource": n.resource, "force": true});
            (
                Method::POST,
                "/api/v1/cleanup".into(),
                Some(body),
                n.owner.clone(),
            )
        }
        Endpoint::AtlantisTryLock => (
            Method::POST,
            "/api/atlantis/v1/try-lock".into(),
            Some(n.project_lock()),
            pull_owner,
        ),
        Endpoint::AtlantisUnlock => {
            atlantis_lock().await;
            let body = json!({"Key": n.key()});
            (
                Method::POST,
                "/api/atlantis/v1/unlock".into(),
                Some(body),
                pull_owner,
            )
        }
        Endpoint::AtlantisUnlockIfOwned => {
            atlantis_lock().await;
            let body = json!({"Key": n.key(), "PullNum": n.pull});
            (
                Method::POST,
                "/api/atlantis/v1/unlock-if-owned-by-pull".into(),
                Some(body),
                pull_owner,
            )
        }
        Endpoint::AtlantisUnlockByPull => {
            atlantis_lock().await;
            let body = json!({"RepoFullName": n.repo, "PullNum": n.pull});
            (
                Method::POST,
                "/api/atlantis/v1/unlock-by-pull".into(),
                Some(body),
                pull_owner,
            )
        }
        Endpoint::AtlantisDeleteLock => {
            atlantis_lock().await;
            let path = format!("/locks?id={}", n.key().replace('/', "%252F"));
            (Method::DELETE, path, None, pull_owner)
        }
        // The one global apply lock: free before a lock, held before an unlock.
        Endpoint::CommandLock => {
            admin(Method::POST, "/api/atlantis/v1/command-lock/unlock", None).await;
            let body = json!({"CommandName": 0});
            (
                Method::POST,
                "/api/atlantis/v1/command-lock/lock".into(),
                Some(body),
                "atlantis".into(),
            )
        }
        Endpoint::CommandUnlock => {
            admin(Method::POST, "/api/atlantis/v1/command-lock/unlock", None).await;
            admin(
                Method::POST,
                "/api/atlantis/v1/command-lock/lock",
                Some(json!({"CommandName": 0})),
            )
            .await;
            (
                Method::POST,
                "/api/atlantis/v1/command-lock/unlock".into(),
                None,
                "atlantis".into(),
            )
        }
    };
    let (status, answer) = call(server, token, method, &path, body).await;
    (status, answer, owner)
}

#[tokio::test]
async fn every_role_and_scope_on_every_mutating_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("elock.yaml");
    std::fs::write(&config_file, config()).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config", config_file.to_str().unwrap()],
    );
    let mut case = 0;
    let mut failures = Vec::new();
    for t in TOKENS {
        for &e in ENDPOINTS {
            for target in [Target::Covered, Target::Foreign] {
                case += 1;
                // The apply lock's owner (`atlantis`) is outside the scoped tokens' patterns.
                let target = match e {
                    Endpoint::CommandLock | Endpoint::CommandUnlock => Target::Foreign,
                    _ => target,
                };
                let names = Names::of(case, target);
                let (status, answer, owner) = run(&server, t.name, e, &names).await;
                let role_refused = t.role < e.needs();
                let scope_refused =
                    !role_refused && t.role != Role::Admin && t.scoped && target == Target::Foreign;
                let message = answer["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let ok = if role_refused {
                    status == 403 && message.contains("needs")
                } else if scope_refused {
                    // The refusal names the owner and the caller's scope.
                    status == 403
                        && message.contains(&format!("{owner:?}"))
                        && message.contains("owners [team-a/*, acme/infra#*]")
                        && message.contains(&format!("token {:?}", t.name))
                } else {
                    // An unlock that found nothing would be a 200 too: it must have released.
                    let released = match e {
                        Endpoint::AtlantisUnlock | Endpoint::AtlantisUnlockIfOwned => {
                            !answer.is_null()
                        }
                        Endpoint::AtlantisUnlockByPull => {
                            answer.as_array().is_some_and(|a| a.len() == 1)
                        }
                        Endpoint::AtlantisTryLock => answer["LockAcquired"] == json!(true),
                        _ => true,
                    };
                    (200..300).contains(&status) && released
                };
                if !ok {
                    failures.push(format!(
                        "{} on {e:?} ({target:?}): {status} {answer} (expected {})",
                        t.name,
                        if role_refused {
                            "403 for the role"
                        } else if scope_refused {
                            "403 for the scope"
                        } else {
                            "success"
                        }
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {case} cases wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A scoped token may not take a lease for a covered owner on a resource outside its prefixes
/// (nor the other way round), and several resources are refused if any one is outside.
#[tokio::test]
async fn owner_and_resource_must_both_be_covered() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("elock.yaml");
    std::fs::write(&config_file, config()).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config", config_file.to_str().unwrap()],
    );
    let try_take = |owner: &'static str, resources: Value| {
        let server = &server;
        async move {
            call(
                server,
                "team-a",
                Method::POST,
                "/api/v1/locks",
                Some(json!({"owner": owner, "resources": resources})),
            )
            .await
        }
    };
    assert_eq!(try_take("team-a/x", json!(["a/1"])).await.0, 201);
    let (s, v) = try_take("team-a/x", json!(["b/1"])).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("b/1"),
        "{v}"
    );
    let (s, v) = try_take("team-b/x", json!(["a/2"])).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = try_take("team-a/y", json!(["a/3", "b/3"])).await;
    assert_eq!(s, 403, "{v}");
    // Nothing was taken by the refused calls.
    let (_, held) = call(&server, "ops", Method::GET, "/api/v1/locks", None).await;
    let owners: Vec<&str> = held["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["team-a/x"]);
}

/// Force-releases are audited with the token, the former holder and the reason; scope
/// refusals with the lease's owner. `elock audit` reads them back, filtered.
#[tokio::test]
async fn the_audit_trail_names_token_former_holder_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("elock.yaml");
    std::fs::write(&config_file, config()).unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config", config_file.to_str().unwrap()],
    );
    let (s, l) = call(
        &server,
        "ci",
        Method::POST,
        "/api/v1/locks",
        Some(json!({"owner": "team-b/bob", "resource": "b/db"})),
    )
    .await;
    assert_eq!(s, 201);
    let id = l["id"].as_str().unwrap().to_string();
    assert_eq!(
        call(
            &server,
            "team-a",
            Method::DELETE,
            &format!("/api/v1/locks/{id}"),
            None
        )
        .await
        .0,
        403
    );
    let (s, _) = call(
        &server,
        "ops",
        Method::POST,
        "/api/v1/resource/force-release",
        Some(json!({"name": "b/db", "reason": "the pipeline died"})),
    )
    .await;
    assert_eq!(s, 200);
    call(
        &server,
        "ci",
        Method::POST,
        "/api/v1/locks",
        Some(json!({"owner": "team-c/carol", "resource": "c/db"})),
    )
    .await;

    let (code, out) = server.cli(&[
        "--token",
        "ops",
        "--output",
        "json",
        "audit",
        "--owner",
        "team-b/bob",
        "--since",
        "1h",
    ]);
    assert_eq!(code, 0, "{out}");
    let records: Value = serde_json::from_str(&out).unwrap();
    let records = records["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{records:?}");
    let forced = &records[2];
    assert_eq!(forced["actor"], "ops");
    assert_eq!(forced["former_holder"], "team-b/bob");
    assert!(
        forced["reason"]
            .as_str()
            .unwrap()
            .contains("the pipeline died"),
        "{forced}"
    );
    assert_eq!(forced["lease_id"], id.as_str());
    let refused = &records[1];
    assert_eq!(
        (refused["actor"].as_str(), refused["status"].as_u64()),
        (Some("team-a"), Some(403))
    );
    assert_eq!(refused["owner"], "team-b/bob");

    let (code, out) = server.cli(&["--token", "ops", "audit", "--resource", "c/"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one record: {out}");
    assert!(
        lines[1].contains("team-c/carol") && lines[1].contains("c/db"),
        "{out}"
    );
    let (code, _) = server.cli(&["--token", "ops", "audit", "--since", "yesterday-ish"]);
    assert_eq!(code, 1, "a bad --since is an error");

    // No secret reaches the file.
    let text = std::fs::read_to_string(dir.path().join("data").join("audit.jsonl")).unwrap();
    for t in TOKENS {
        assert!(
            !text.contains(&sha(t.name)),
            "a token's hash in the audit file"
        );
    }
}
