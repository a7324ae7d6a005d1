//! The server's configuration (docs/configuration.md): schema, layering and checks.

mod errors;
mod load;
mod reload;
pub mod schema;

pub use errors::{ConfigError, ConfigErrors, Source};
pub use load::{env_overrides, load, text_override, Override};
pub use reload::restart_required;
pub use schema::{Backend, Config};
