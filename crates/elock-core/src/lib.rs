//! elock's lock engine.
//!
//! Data flows one way: a surface (HTTP, CLI) calls the [`manager::Manager`], which applies its
//! policies (retry, circuit breaker, deadlock detection, statistics, events) and calls a
//! [`store::Store`]. Every store implements the same transitions as the pure, deterministic
//! [`table::LockTable`], which is the single definition of elock's locking semantics.

pub mod api;
pub mod clock;
pub mod config;
pub mod error;
pub mod event;
pub mod manager;
pub mod model;
pub mod policy;
pub mod store;
pub mod table;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{Error, Result};
