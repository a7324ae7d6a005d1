//! How the Lua reaches Redis: as a Function library where Redis has Functions (loaded again when
//! Redis has lost it), else as scripts by SHA.

use std::time::Duration;

use elock_core::model::{LeaseId, Owner, Priority, ResourceName, TicketId};
use elock_core::store::Store;
use elock_core::table::{AcquireRequest, Acquired, TableConfig, WaitMode};
use elock_redis::testing::{raw_command, unique_prefix, RedisServer};
use elock_redis::{RedisConfig, RedisStore, Script, TimeSource};

async fn open(redis: &RedisServer) -> RedisStore {
    let config = RedisConfig {
        addresses: vec![redis.address()],
        key_prefix: unique_prefix(),
        ..RedisConfig::default()
    };
    RedisStore::open(config, TableConfig::default(), TimeSource::Redis)
        .await
        .expect("open the Redis store")
}

/// Acquires `resource` and releases it again, checking both worked.
async fn cycle(store: &RedisStore, n: u128, resource: &str) {
    let req = AcquireRequest {
        lease_id: LeaseId::from_u128(n),
        ticket_id: TicketId::from_u128(n),
        owner: Owner::new("functions-test").unwrap(),
        resources: vec![ResourceName::new(resource).unwrap()],
        priority: Priority::Normal,
        ttl: Some(Duration::from_secs(30)),
        metadata: None,
        wait: WaitMode::Try,
        reentry: Default::default(),
        queue_limits: Default::default(),
    };
    let lease = match store.acquire(req).await.expect("acquire") {
        Acquired::Granted { lease, .. } => lease,
        other => panic!("expected a grant, got {other:?}"),
    };
    store.release(lease.id).await.expect("release");
}

/// Calls of `command` so far, from INFO commandstats (0 if never called).
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let info = raw_command(redis.port(), &["INFO", "commandstats"]).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn has_library(redis: &RedisServer) -> bool {
    raw_command(redis.port(), &["FUNCTION", "LIST"])
        .unwrap()
        .contains("elock_")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lua_runs_as_functions_and_is_loaded_again_when_redis_lost_it() {
    let redis = tokio::task::spawn_blocking(|| RedisServer::start(&[]))
        .await
        .unwrap();
    let store = open(&redis).await;
    assert!(
        has_library(&redis),
        "the library is loaded when the store opens"
    );
    cycle(&store, 1, "fn/a").await;
    assert!(
        calls(&redis, "fcall") >= 2,
        "acquire and release are FCALLs"
    );
    assert_eq!(calls(&redis, "evalsha"), 0, "no script runs by SHA");

    // A Redis that lost the library (FUNCTION FLUSH here; a restart without persistence alike).
    assert!(raw_command(redis.port(), &["FUNCTION", "FLUSH"])
        .unwrap()
        .starts_with("+OK"));
    assert!(!has_library(&redis));
    cycle(&store, 2, "fn/b").await;
    assert!(
        has_library(&redis),
        "the first call after the loss loaded it again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_functions_the_lua_runs_as_scripts() {
    let redis =
        tokio::task::spawn_blocking(|| RedisServer::start(&["--rename-command", "FUNCTION", ""]))
            .await
            .unwrap();
    let store = open(&redis).await;
    cycle(&store, 1, "script/a").await;
    assert!(
        calls(&redis, "evalsha") >= 2,
        "acquire and release run by SHA"
    );
    assert_eq!(calls(&redis, "fcall"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_script_is_in_the_library_redis_loaded() {
    let redis = tokio::task::spawn_blocking(|| RedisServer::start(&[]))
        .await
        .unwrap();
    let _store = open(&redis).await;
    let list = raw_command(redis.port(), &["FUNCTION", "LIST"]).unwrap();
    let functions: Vec<&str> = list
        .split(|c: char| c.is_whitespace() || c == '"')
        .filter(|w| w.starts_with("elock_") && w.matches('_').count() >= 2)
        .collect();
    // The library's name: `elock_` and 12 hex digits of the code's hash.
    let library = &functions.first().expect("the library is loaded")[..18];
    for script in Script::ALL {
        let function = format!("{library}_{}", script.name());
        assert!(
            functions.contains(&function.as_str()),
            "{script:?}: {function} in {functions:?}"
        );
    }
    assert_eq!(functions.len(), Script::ALL.len(), "{functions:?}");
}
