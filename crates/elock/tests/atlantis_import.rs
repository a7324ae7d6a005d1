//! `elock atlantis import-boltdb` against a real server: Atlantis's bbolt fixtures (written by the
//! real bbolt library) become leases exactly as docs/atlantis.md says, the file is never changed, and a
//! second import changes nothing.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::Server;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../elock-atlantis/tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Imports the small fixture keeping the CloneURL credentials.
fn import_with_secrets(server: &Server) {
    let (code, out) = server.cli(&[
        "atlantis",
        "import-boltdb",
        "--include-secrets",
        &fixture("atlantis-small.db"),
    ]);
    assert_eq!(code, 0, "{out}");
}

fn import(server: &Server, file: &str) -> Value {
    let (code, out) = server.cli(&["--output", "json", "atlantis", "import-boltdb", file]);
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn the_small_fixture_becomes_leases_once() {
    let server = Server::start();
    let file = fixture("atlantis-small.db");
    let before = std::fs::read(&file).unwrap();
    let first = import(&server, &file);
    assert_eq!(first["imported"], 9, "{first}");
    assert_eq!(first["legacy_keys"], 1);
    assert_eq!(first["pulls_skipped"], 1);
    assert_eq!(first["skipped"].as_array().unwrap().len(), 0, "{first}");
    let again = import(&server, &file);
    assert_eq!(again["imported"], 0, "{again}");
    assert_eq!(again["already_present"], 9, "{again}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the file is never modified"
    );

    let api = server.client();
    let (_, list) = api.get("/api/v1/locks").await;
    let leases = list["locks"].as_array().unwrap().clone();
    assert_eq!(leases.len(), 9);
    // A project lock: resource = its key, owner {repo}#{pull}, no expiry, the Go JSON kept.
    let (_, info) = api
        .get("/api/v1/resource?name=acme/infra/envs/prod/default/prod-app")
        .await;
    let holder = &info["holder"];
    assert_eq!(holder["owner"], "acme/infra#43", "{info}");
    assert!(holder["expires_at"].is_null());
    let atlantis = &holder["metadata"]["atlantis"];
    assert_eq!(atlantis["Project"]["ProjectName"], "prod-app");
    assert_eq!(
        atlantis["User"]["Teams"],
        serde_json::json!(["platform", "sre"])
    );
    assert_eq!(holder["acquired_at"], "2025-03-04T10:16:30.123Z");
    // The legacy three-part key is held under its current key.
    let (_, info) = api
        .get("/api/v1/resource?name=acme/legacy/./default/")
        .await;
    assert_eq!(info["holder"]["owner"], "acme/legacy#3", "{info}");
    // The fake VCS token of the fixtures' CloneURLs is nowhere: not in answers, not in exports.
    let (_, export) = api.get("/api/v1/export").await;
    for text in [list.to_string(), export.to_string()] {
        assert!(!text.contains("ghp_SECRETTOKEN123"), "the token leaked");
        assert!(text.contains("atlantis-bot:<redacted>@github.com"));
    }
    // The apply lock.
    let (_, info) = api.get("/api/v1/resource?name=global/apply/lock").await;
    assert_eq!(
        info["holder"]["metadata"]["atlantis"]["CommandName"], 0,
        "{info}"
    );
}

/// `--include-secrets` keeps the clone URLs' credentials in the store, and only the exports that
/// ask for them show them: every answer, page, event, audit record and log line (at debug level)
/// is searched for the token.
#[tokio::test]
async fn credentials_kept_by_include_secrets_are_shown_only_by_exports_that_ask() {
    const TOKEN: &str = "ghp_SECRETTOKEN123";
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Server::start_logging(dir.path(), &log, "debug");
    let api = server.client();
    let events = {
        let url = format!("{}/api/v1/events", server.url);
        tokio::spawn(async move {
            let mut r = reqwest::get(url).await.unwrap();
            let mut seen = Vec::new();
            while let Ok(Ok(Some(chunk))) =
                tokio::time::timeout(std::time::Duration::from_secs(3), r.chunk()).await
            {
                seen.extend_from_slice(&chunk);
            }
            String::from_utf8_lossy(&seen).into_owned()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    import_with_secrets(&server);

    // Kept: the store has them, and an export that asks shows them.
    let (_, export) = api.get("/api/v1/export?include-secrets=true").await;
    assert!(export.to_string().contains(TOKEN));
    let (code, out) = server.cli(&["export", "--include-secrets"]);
    assert_eq!(code, 0);
    assert!(out.contains(TOKEN));
    let (code, out) = server.cli(&["atlantis", "export-redis", "--include-secrets"]);
    assert_eq!(code, 0);
    assert!(out.contains(TOKEN));

    // Shown nowhere else.
    let key = "acme%2Finfra%2Fenvs%2Fprod%2Fdefault%2F";
    let mut shown = Vec::new();
    for path in [
        "/api/v1/export".to_string(),
        "/api/v1/locks".into(),
        format!("/api/v1/resource?name={key}"),
        "/api/atlantis/v1/locks".into(),
        format!("/api/atlantis/v1/lock?key={key}"),
        "/api/locks".into(),
        "/api/v1/audit".into(),
    ] {
        let (status, v) = api.get(&path).await;
        assert_eq!(status, 200, "{path}: {v}");
        shown.push((path, v.to_string()));
    }
    let page = reqwest::get(format!(
        "{}/lock?id={}",
        server.url,
        key.replace('%', "%25")
    ))
    .await
    .unwrap();
    shown.push(("lock page".into(), page.text().await.unwrap()));
    let (_, listed) = server.cli(&["list"]);
    shown.push(("elock list".into(), listed));
    let (_, exported) = server.cli(&["export"]);
    shown.push(("elock export".into(), exported));
    let (_, resp) = server.cli(&["atlantis", "export-redis"]);
    shown.push(("export-redis".into(), resp));
    let (_, unlocked) = api
        .post(
            "/api/atlantis/v1/unlock",
            serde_json::json!({"Key": "acme/infra/envs/prod/default/"}),
        )
        .await;
    shown.push(("unlock".into(), unlocked.to_string()));
    shown.push(("events".into(), events.await.unwrap()));
    drop(server);
    shown.push(("log".into(), std::fs::read_to_string(&log).unwrap()));
    for (what, text) in &shown {
        assert!(!text.contains(TOKEN), "{what} shows the token: {text}");
    }
    let events = &shown[shown.len() - 2].1;
    assert!(
        events.contains("lock.acquired"),
        "the events were seen: {events}"
    );
    assert!(
        shown[shown.len() - 1].1.contains("DEBUG"),
        "the log is at debug level"
    );
}

#[tokio::test]
async fn the_large_fixture_imports_every_lock() {
    let server = Server::start();
    let report = import(&server, &fixture("atlantis-large.db"));
    assert_eq!(report["imported"], 1509, "{report}");
    assert_eq!(
        report["bodies_omitted"], 1,
        "the 30 KB description is left out, the lock kept"
    );
    assert_eq!(report["skipped"].as_array().unwrap().len(), 0, "{report}");
}

#[tokio::test]
async fn a_file_that_is_not_bbolt_is_refused_naming_it() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("atlantis.db");
    std::fs::write(&bad, b"not a database").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["atlantis", "import-boltdb", bad.to_str().unwrap()])
        .env("ELOCK_SERVER", &server.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bbolt"), "{err}");
}

/// The Redis commands of a `redis-cli --pipe` file: (key, value) of each SET.
fn sets(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    let line = |i: &mut usize| {
        let end = bytes[*i..].windows(2).position(|w| w == b"\r\n").unwrap() + *i;
        let n: usize = std::str::from_utf8(&bytes[*i + 1..end])
            .unwrap()
            .parse()
            .unwrap();
        *i = end + 2;
        n
    };
    while i < bytes.len() {
        let n = line(&mut i);
        let mut args = Vec::new();
        for _ in 0..n {
            let len = line(&mut i);
            args.push(bytes[i..i + len].to_vec());
            i += len + 2;
        }
        assert_eq!(args[0], b"SET");
        out.push((args[1].clone(), args[2].clone()));
    }
    out
}

#[tokio::test]
async fn export_redis_writes_atlantis_redis_layout_byte_for_byte() {
    let server = Server::start();
    import_with_secrets(&server);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locks.resp");
    let (code, out) = server.cli(&[
        "atlantis",
        "export-redis",
        "--include-secrets",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let ours = sets(&std::fs::read(&file).unwrap());
    let theirs = sets(&std::fs::read(fixture("atlantis-redis.resp")).unwrap());
    // Every current-format lock and the apply lock exactly as Atlantis wrote them to Redis; the
    // legacy lock under its current key (as Atlantis's start-up migration rewrites it); pull
    // statuses are not locks.
    for (key, value) in &theirs {
        let k = String::from_utf8_lossy(key);
        if k.starts_with("pr/acme/legacy/") || !(k.starts_with("pr/") || k == "global/apply/lock") {
            continue;
        }
        let mine = ours
            .iter()
            .find(|(ok, _)| ok == key)
            .unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(
            String::from_utf8_lossy(&mine.1),
            String::from_utf8_lossy(value),
            "{k}"
        );
    }
    assert!(ours.iter().any(|(k, _)| k == b"pr/acme/legacy/./default/"));
    assert_eq!(ours.len(), 9);
    // Without --include-secrets the token is not in the export.
    let (code, out) = server.cli(&["atlantis", "export-redis"]);
    assert_eq!(code, 0);
    assert!(!out.contains("ghp_SECRETTOKEN123"));
    assert!(
        out.contains("atlantis-bot:\\u003credacted\\u003e@github.com")
            || out.contains("atlantis-bot:\\u003credacted"),
        "{out}"
    );
}

/// A key elock holds otherwise (a CLI lock by the same pull's owner, without Atlantis's lock;
/// another owner) is a conflict: reported with both holders, not imported and not counted as
/// present; the rest is imported and the command exits 1. Once the conflict is gone, a second
/// import writes Atlantis's lock.
#[tokio::test]
async fn a_key_elock_holds_otherwise_is_a_conflict_not_a_lock_already_present() {
    let server = Server::start();
    let file = fixture("atlantis-small.db");
    // Pull 43 holds acme/infra/envs/prod/default/prod-app in Atlantis; in elock the same
    // owner holds it through the CLI, and another owner holds acme/legacy's key.
    let take = |key: &str, owner: &str| {
        let (code, out) = server.cli(&["--output", "json", "lock", key, "--owner", owner]);
        assert_eq!(code, 0, "{out}");
        serde_json::from_str::<Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let cli = take("acme/infra/envs/prod/default/prod-app", "acme/infra#43");
    take("acme/legacy/./default/", "someone-else");
    let (code, out) = server.cli(&["--output", "json", "atlantis", "import-boltdb", &file]);
    assert_eq!(code, 1, "conflicts fail the import: {out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["imported"], 7, "{report}");
    assert_eq!(report["already_present"], 0, "{report}");
    let conflicts = report["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 2, "{report}");
    let prod = conflicts
        .iter()
        .find(|c| c["key"] == "acme/infra/envs/prod/default/prod-app")
        .unwrap();
    assert!(
        prod["atlantis"].as_str().unwrap().contains("pull 43"),
        "{prod}"
    );
    assert!(
        prod["elock"]
            .as_str()
            .unwrap()
            .contains("taken outside Atlantis"),
        "{prod}"
    );
    // The conflict resolved (elock's lease released), the next import writes Atlantis's lock.
    let (code, _) = server.cli(&["unlock", &cli]);
    assert_eq!(code, 0);
    let (code, out) = server.cli(&["--output", "json", "atlantis", "import-boltdb", &file]);
    assert_eq!(code, 1, "the other conflict remains: {out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            report["imported"].as_u64(),
            report["already_present"].as_u64()
        ),
        (Some(1), Some(7))
    );
    let holder = server
        .client()
        .holder("acme/infra/envs/prod/default/prod-app")
        .await;
    assert_eq!(
        holder["metadata"]["atlantis"]["Pull"]["Num"], 43,
        "{holder}"
    );
}

/// Atlantis's locks never expire, and so do their imports, unless elock's policy gives their
/// keys a ttl: then it counts from the import.
#[tokio::test]
async fn imported_locks_take_their_policys_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        "enhanced-locking:\n  policies:\n    - {match: \"acme/infra/**\", ttl: 90m}\n",
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    import(&server, &fixture("atlantis-small.db"));
    let api = server.client();
    let (_, info) = api
        .get("/api/v1/resource?name=acme/infra/envs/prod/default/prod-app")
        .await;
    assert_eq!(info["holder"]["ttl"], "1h30m", "{info}");
    assert!(info["holder"]["expires_at"].is_string(), "{info}");
    let (_, info) = api
        .get("/api/v1/resource?name=acme/legacy/./default/")
        .await;
    assert!(
        info["holder"]["expires_at"].is_null(),
        "no rule, no expiry: {info}"
    );
}
