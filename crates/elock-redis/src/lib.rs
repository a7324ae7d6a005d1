//! elock's Redis and Redis Cluster store.
//!
//! The lock table of elock-core re-implemented as Lua scripts over Redis data (`scripts/*.lua`):
//! one script per transition, so a grant, its fencing token and its handoff commit atomically,
//! and several elock servers can share one Redis. The conformance suite and the model-based
//! property test of elock-core run unchanged against it (tests/).

// Leaves: no module of this crate below them.
mod config;
mod connection;
mod scripts;
mod shard_map;
mod wire;

// Pure functions over the wire forms.
mod atlantis_format;
mod parts;

// The shards on Redis: what every module below uses to call the scripts.
mod listener;
mod shards;

// Built on the shards.
mod atlantis_watch;
mod deadlocks;
mod spanning;

// The top: the `Store` implementation, which nothing inside the crate imports.
mod store;

#[cfg(feature = "testkit")]
pub mod testing;

pub use atlantis_watch::AtlantisSync;
pub use config::{RedisConfig, RedisSection};
pub use scripts::Script;
pub use shard_map::{ShardMap, MAX_SHARDS};
pub use shards::{TimeSource, RECHECK_INTERVAL};
pub use spanning::SWEEP_GRACE;
pub use store::RedisStore;
