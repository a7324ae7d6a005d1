//! The server's configuration (docs/configuration.md): schema, layering and checks.

mod load;
pub mod schema;

pub use load::{env_overrides, load, text_override, Override};
pub use schema::{Backend, Config};
