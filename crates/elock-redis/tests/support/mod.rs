//! The conformance suite's factory for the Redis store: stores on the shared single node or
//! Cluster started by `elock_redis::testing`, each under its own key prefix.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use elock_core::clock::ManualClock;
use elock_core::store::Store;
use elock_core::table::TableConfig;
use elock_core::testkit::StoreFactory;
use elock_redis::testing::{config_for, shared_single_without_functions};
use elock_redis::{RedisConfig, RedisStore, TimeSource};

/// Stores on the shared single node or Cluster, each under its own key prefix. They persist: a
/// reopen connects again to the same data.
pub struct RedisFactory {
    cluster: bool,
    shards: usize,
    atlantis_keys: bool,
    scripts_only: bool,
    current: Mutex<Option<RedisConfig>>,
}

impl RedisFactory {
    pub fn single() -> Self {
        RedisFactory {
            cluster: false,
            shards: 1,
            atlantis_keys: false,
            scripts_only: false,
            current: Mutex::new(None),
        }
    }

    pub fn cluster() -> Self {
        RedisFactory {
            cluster: true,
            shards: 1,
            atlantis_keys: false,
            scripts_only: false,
            current: Mutex::new(None),
        }
    }

    /// The same, with the lock table spread over `n` shards (`redis.shards`).
    pub fn with_shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// The same, keeping Atlantis's keys beside the table (`atlantis_keys`), on database 1 of
    /// the shared node: Atlantis's keys are not prefixed, so the stores doing this must not
    /// share a database with tests that write Atlantis's keys themselves.
    pub fn with_atlantis_keys(mut self) -> Self {
        self.atlantis_keys = true;
        self
    }

    /// The same on a single node without Functions: every transition runs as a script
    /// (`EVALSHA`), the fallback for Redis 6.
    pub fn without_functions(mut self) -> Self {
        assert!(!self.cluster, "the node without Functions is a single node");
        self.scripts_only = true;
        self
    }
}

#[async_trait]
impl StoreFactory for RedisFactory {
    async fn open(&self, config: TableConfig, clock: Arc<ManualClock>) -> Arc<dyn Store> {
        let (cluster, scripts_only) = (self.cluster, self.scripts_only);
        let mut redis = tokio::task::spawn_blocking(move || {
            let mut c = config_for(cluster);
            if scripts_only {
                c.addresses = vec![shared_single_without_functions().address()];
            }
            c
        })
        .await
        .unwrap();
        redis.shards = self.shards;
        if self.atlantis_keys {
            redis.atlantis_keys = true;
            redis.db = 1;
        }
        *self.current.lock().unwrap() = Some(redis.clone());
        Arc::new(
            RedisStore::open(redis, config, TimeSource::Clock(clock))
                .await
                .expect("open the Redis store"),
        )
    }

    fn persists(&self) -> bool {
        true
    }

    async fn reopen(
        &self,
        store: Arc<dyn Store>,
        config: TableConfig,
        clock: Arc<ManualClock>,
    ) -> Arc<dyn Store> {
        drop(store);
        let redis = self
            .current
            .lock()
            .unwrap()
            .clone()
            .expect("a store was opened");
        Arc::new(
            RedisStore::open(redis, config, TimeSource::Clock(clock))
                .await
                .expect("reopen the Redis store"),
        )
    }
}
