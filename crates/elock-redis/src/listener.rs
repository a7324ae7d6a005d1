//! Hears what the other elock servers sharing this Redis committed: every transition script that
//! caused events publishes them on the shard's `events` channel (sharded pub/sub on a Cluster,
//! plain pub/sub on a single node), and this task feeds the ones from other servers into the
//! store's event sink, where they wake local waiters and reach SSE and webhooks.
//!
//! Pub/sub is at-most-once: a message sent while the connection is down is lost. That only
//! delays a waiter, because every wait is also backed by a bounded re-check of its ticket
//! (`Store::recheck_interval`). The connection reconnects and resubscribes by itself (RESP3).

use std::sync::Arc;
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};
use serde::Deserialize;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use elock_core::model::Timestamp;
use elock_core::store::SinkSlot;

use crate::config::RedisConfig;
use crate::wire::{lua_vec, WireEvent};

#[derive(Deserialize)]
struct Note {
    o: String,
    now: u64,
    #[serde(default, deserialize_with = "lua_vec")]
    ev: Vec<WireEvent>,
}

/// Subscribes to every shard's channel and publishes other servers' events to `sink` (and wakes
/// `changed`) until aborted.
pub fn spawn(
    config: RedisConfig,
    channels: Vec<String>,
    origin: String,
    sink: Arc<SinkSlot>,
    changed: Arc<Notify>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (tx, mut rx) = mpsc::unbounded_channel::<PushInfo>();
            match subscribe(&config, &channels, tx).await {
                Ok(_conn) => {
                    tracing::debug!(?channels, "listening for other servers' events");
                    while let Some(push) = rx.recv().await {
                        if push.kind == PushKind::Disconnection {
                            tracing::warn!("the Redis event subscription was disconnected; it resubscribes by itself");
                            continue;
                        }
                        if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
                            continue;
                        }
                        if let Some(Value::BulkString(bytes)) = push.data.get(1) {
                            if deliver(bytes, &origin, &sink) {
                                changed.notify_waiters();
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to other servers' events; retrying");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// The connection must be kept alive while messages are read: it is returned to the caller.
async fn subscribe(
    config: &RedisConfig,
    channels: &[String],
    tx: mpsc::UnboundedSender<PushInfo>,
) -> redis::RedisResult<Box<dyn Send>> {
    if config.cluster_mode {
        let mut conn = config
            .cluster_builder()
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()?
            .get_async_connection()
            .await?;
        for channel in channels {
            conn.ssubscribe(channel).await?;
        }
        Ok(Box::new(conn))
    } else {
        let mut conn = push_connection(config, tx).await?;
        conn.subscribe(channels).await?;
        Ok(Box::new(conn))
    }
}

/// A connection to the single node that sends what it hears to `tx` (RESP3 pushes) and
/// resubscribes by itself after a reconnect.
pub(crate) async fn push_connection(
    config: &RedisConfig,
    tx: mpsc::UnboundedSender<PushInfo>,
) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let url = format!("{}?protocol=resp3", config.node_urls()[0]);
    let client = redis::Client::open(url.as_str())?;
    let cm = redis::aio::ConnectionManagerConfig::new()
        .set_push_sender(tx)
        .set_automatic_resubscription()
        .set_connection_timeout(Some(config.connect_timeout));
    redis::aio::ConnectionManager::new_with_config(client, cm).await
}

/// Publishes another server's events; true if there were any.
fn deliver(bytes: &[u8], origin: &str, sink: &SinkSlot) -> bool {
    let note: Note = match serde_json::from_slice(bytes) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "an unreadable event message on the Redis channel");
            return false;
        }
    };
    if note.o == origin {
        return false; // Our own: already published when the script answered.
    }
    let now = Timestamp::from_millis(note.now);
    match note
        .ev
        .into_iter()
        .map(|e| e.into_event(now))
        .collect::<elock_core::Result<Vec<_>>>()
    {
        Ok(events) => {
            sink.publish(events);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "an event from another server could not be read");
            false
        }
    }
}
