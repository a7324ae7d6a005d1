//! The server's configuration (docs/configuration.md): schema, layering and checks.

mod errors;
mod load;
mod reload;
pub mod schema;

pub use errors::{ConfigError, ConfigErrors, Source};
pub use load::{env_overrides, load, text_override, unknown_env, Override};
pub use reload::restart_required;
pub use schema::{Backend, Config};

/// Loads the configuration as the server does: `file`, then the process's environment (an
/// unknown `ATLANTIS_ENHANCED_LOCKING_*` variable is an error), then `flags`. Every problem of
/// every source is returned at once.
pub fn load_from_environment(
    file: Option<&std::path::Path>,
    flags: &[Override],
) -> Result<Config, ConfigErrors> {
    let mut overrides = env_overrides(&|v| std::env::var(v).ok());
    overrides.extend(flags.iter().cloned());
    let unknown = unknown_env(std::env::vars());
    match load(file, &overrides) {
        Ok(c) if unknown.is_empty() => Ok(c),
        Ok(_) => Err(ConfigErrors(unknown)),
        Err(mut e) => {
            e.0.extend(unknown);
            Err(e)
        }
    }
}
