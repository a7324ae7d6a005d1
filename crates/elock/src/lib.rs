//! `elock`: the lock server (`elock serve`) and the command line that talks to it.
//!
//! The binary is a thin `main` over [`cli::run`]. The library exists so that the server can run
//! inside a test's own process ([`server::start`]) and the router can be exercised without a
//! subprocess.

pub mod cli;
pub mod config;
pub mod migration;
pub mod server;
