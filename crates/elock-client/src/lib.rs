//! The Rust client of elock.
//!
//! One typed, async [`Client`] for every call of the HTTP API, with the server's own request and
//! answer types (`elock_core::api`), a [`LeaseGuard`] that renews its lease and says when it is
//! lost, and an [`EventStream`] that reconnects by itself.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let started = elock::server::start(elock::server::ServeOptions::in_memory()).await?;
//! # let server = format!("http://{}", started.addr);
//! # tokio::spawn(started.run(std::future::pending()));
//! use std::time::Duration;
//! use elock_client::Client;
//!
//! let client = Client::new(&server)?;
//!
//! // Try once: the lease, or `locked` at once.
//! let lease = client
//!     .lock("acme/infra#42", ["acme/infra/envs/prod/default/"])?
//!     .ttl(Duration::from_secs(60))
//!     .try_acquire()
//!     .await?;
//! let token = lease.fencing_token("acme/infra/envs/prod/default/");
//! assert_eq!(token, Some(1));
//!
//! // Somebody else is refused while it is held...
//! let refused = client
//!     .lock("acme/infra#43", ["acme/infra/envs/prod/default/"])?
//!     .try_acquire()
//!     .await
//!     .unwrap_err();
//! assert!(refused.is_not_granted());
//!
//! // ...until it is released.
//! client.release(lease.id).await?;
//! # Ok(()) }
//! ```
//!
//! Errors are one [`Error`] enum: [`Error::Api`] carries the server's typed
//! [`ErrorCode`](elock_core::api::ErrorCode) and details, the other variants say why no answer
//! came.

#[cfg(feature = "atlantis")]
pub mod atlantis;
mod calls;
mod client;
mod error;
mod events;
mod guard;
mod tls;

pub use calls::{Acquire, Acquired};
pub use client::{
    Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RETRIES, DEFAULT_TIMEOUT,
};
pub use error::{Error, Result};
pub use events::{EventItem, EventStream};
pub use guard::{LeaseGuard, LeaseLoss};
pub use tls::TlsOptions;

/// The API's types, re-exported: what calls take and return.
pub use elock_core::api;
