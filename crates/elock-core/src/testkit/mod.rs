//! Shared test machinery for every store: the conformance suite (scenarios written once) and the
//! model-based property test (random operations on a store and on the pure table, compared).
//!
//! A store crate runs both by implementing [`StoreFactory`] and invoking
//! [`conformance_tests!`](crate::conformance_tests) and [`model_check::run`].

pub mod conformance;
mod harness;
pub mod model_check;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::clock::ManualClock;
use crate::store::{DurableStore, InMemoryStore, Store};
use crate::table::TableConfig;

pub use harness::{try_request, Harness, RecordingSink, Req};

/// Makes stores for the shared tests.
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// A new, empty store.
    async fn open(&self, config: TableConfig, clock: Arc<ManualClock>) -> Arc<dyn Store>;

    /// Whether the store keeps its state across [`StoreFactory::reopen`].
    fn persists(&self) -> bool {
        false
    }

    /// Whether a reopen removes the tickets of attached (not detached) waiters, as a restarted
    /// server does: their connections died with it.
    fn reopen_drops_attached_tickets(&self) -> bool {
        false
    }

    /// Closes `store` (the caller hands over its only handle) and opens it again from what it
    /// persisted. Called only when [`StoreFactory::persists`].
    async fn reopen(
        &self,
        store: Arc<dyn Store>,
        config: TableConfig,
        clock: Arc<ManualClock>,
    ) -> Arc<dyn Store> {
        drop(store);
        self.open(config, clock).await
    }
}

pub struct MemoryFactory;

#[async_trait]
impl StoreFactory for MemoryFactory {
    async fn open(&self, config: TableConfig, clock: Arc<ManualClock>) -> Arc<dyn Store> {
        Arc::new(InMemoryStore::new(config, clock))
    }
}

/// Bytes in the files of a data directory (a compaction may remove one between the listing and
/// its size: such a file counts nothing).
pub fn disk_use(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("a readable data directory")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Durable stores in temporary directories, removed when the factory is dropped.
pub struct DurableFactory {
    dirs: Mutex<Vec<tempfile::TempDir>>,
    options: crate::store::LogOptions,
}

impl Default for DurableFactory {
    /// The default settings, but log space allocated 64 KiB ahead instead of 8 MiB: the suites
    /// open hundreds of stores, and how far ahead space is allocated changes no behaviour.
    fn default() -> Self {
        DurableFactory::with_options(crate::store::LogOptions {
            preallocate: 64 << 10,
            ..Default::default()
        })
    }
}

impl DurableFactory {
    /// Stores with these log settings (a tiny `compact_after` compacts every few operations).
    pub fn with_options(options: crate::store::LogOptions) -> Self {
        DurableFactory {
            dirs: Mutex::default(),
            options,
        }
    }

    fn current_dir(&self) -> PathBuf {
        self.dirs
            .lock()
            .unwrap()
            .last()
            .expect("a store was opened")
            .path()
            .to_path_buf()
    }
}

#[async_trait]
impl StoreFactory for DurableFactory {
    async fn open(&self, config: TableConfig, clock: Arc<ManualClock>) -> Arc<dyn Store> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = DurableStore::open_with_options(dir.path(), config, clock, self.options)
            .expect("open the durable store");
        self.dirs.lock().unwrap().push(dir);
        Arc::new(store)
    }

    fn persists(&self) -> bool {
        true
    }

    fn reopen_drops_attached_tickets(&self) -> bool {
        true
    }

    async fn reopen(
        &self,
        store: Arc<dyn Store>,
        config: TableConfig,
        clock: Arc<ManualClock>,
    ) -> Arc<dyn Store> {
        store.flush().await.expect("flush before reopening");
        // The last handle closes the store (commits what is pending, releases the directory lock).
        drop(store);
        let store =
            DurableStore::open_with_options(&self.current_dir(), config, clock, self.options)
                .expect("reopen the durable store");
        Arc::new(store)
    }
}
