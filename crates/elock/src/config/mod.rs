//! The server's configuration (SPEC 5): schema, layering and checks.

mod load;
pub mod schema;

pub use load::{env_overrides, load, text_override, Override};
pub use schema::{Backend, Config};
