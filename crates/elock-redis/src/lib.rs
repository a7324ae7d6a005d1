//! elock's Redis and Redis Cluster store.
//!
//! The lock table of elock-core re-implemented as Lua scripts over Redis data (`scripts/*.lua`):
//! one script per transition, so a grant, its fencing token and its handoff commit atomically,
//! and several elock servers can share one Redis. The conformance suite and the model-based
//! property test of elock-core run unchanged against it (tests/).

mod config;
mod connection;
mod cross;
mod deadlocks;
mod legacy;
mod listener;
mod scripts;
mod shards;
mod store;
mod wire;

#[cfg(feature = "testkit")]
pub mod testing;

pub use config::RedisConfig;
pub use cross::SWEEP_GRACE;
pub use legacy::LegacySync;
pub use shards::{ShardMap, MAX_SHARDS};
pub use store::{RedisStore, TimeSource, RECHECK_INTERVAL};
