//! Connections to Redis: one node through a connection manager that reconnects by itself, or a
//! Cluster through the cluster client (which follows slot moves). Both multiplex every request
//! over a few connections, so a handle is cheap to clone.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisResult, ScriptInvocation};

use crate::config::RedisConfig;

#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub async fn open(config: &RedisConfig) -> RedisResult<Conn> {
        if config.cluster_mode {
            let client = config
                .cluster_builder()
                .response_timeout(config.response_timeout)
                .retries(3)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        } else {
            let client = redis::Client::open(config.node_urls()[0].as_str())?;
            let cm = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.response_timeout))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500));
            Ok(Conn::Single(
                ConnectionManager::new_with_config(client, cm).await?,
            ))
        }
    }

    pub async fn invoke<T: FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> RedisResult<T> {
        retry_once_if_dropped(|| async {
            match self {
                Conn::Single(c) => inv.invoke_async(&mut c.clone()).await,
                Conn::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
            }
        })
        .await
    }

    /// Calls a function of the library (`cmd` is the whole FCALL); a Redis that no longer has
    /// the library (restarted without persistence, flushed, a new Cluster master) gets it again
    /// and the call is tried once more.
    pub async fn fcall<T: FromRedisValue>(&self, cmd: &Cmd, library: &str) -> RedisResult<T> {
        match self.query(cmd).await {
            Err(e) if function_missing(&e) => {
                self.load_library(library).await?;
                self.query(cmd).await
            }
            other => other,
        }
    }

    /// Loads (or replaces) the Function library on the node, or on every Cluster master.
    pub async fn load_library(&self, library: &str) -> RedisResult<()> {
        let mut cmd = redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(library);
        self.query::<redis::Value>(&cmd).await.map(drop)
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        retry_once_if_dropped(|| async {
            match self {
                Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
                Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
            }
        })
        .await
    }
}

async fn retry_once_if_dropped<T, F, Fut>(call: F) -> RedisResult<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = RedisResult<T>>,
{
    match call().await {
        Err(e) if dropped(&e) => {
            tokio::time::sleep(RECONNECT_PAUSE).await;
            call().await
        }
        other => other,
    }
}

/// Redis does not have the library (FCALL answers "ERR Function not found").
fn function_missing(e: &redis::RedisError) -> bool {
    e.to_string().contains("Function not found")
}

/// How long a call that found its connection dropped waits for the reconnection before its one
/// retry.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// A connection that was closed under us (Redis restarted, a proxy or `CLIENT KILL` cut it): the
/// connection manager reconnects, and the call is tried once more. Every script is safe to run
/// again: an acquire with the same ids answers what it answered the first time, a renewal renews
/// again, views read; a release whose first run had reached Redis answers `lease_not_found` the
/// second time (the lease is released either way). Timeouts are not retried (a slow Redis gets
/// no more load).
fn dropped(e: &redis::RedisError) -> bool {
    e.is_connection_dropped() && !e.is_timeout()
}
