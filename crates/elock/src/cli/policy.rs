//! `elock policy explain RESOURCE`: which rule of `enhanced-locking.policies` covers a resource
//! and what a request that leaves everything out gets, from the server or from a configuration
//! file (`--config`, no server needed).

use std::path::{Path, PathBuf};

use elock_client::Client;
use elock_core::model::{format_duration, ResourceName};
use elock_core::policy::Explanation;

use super::errors::CliError;
use super::output::{self, Format};
use crate::config;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Show the rule that applies to RESOURCE and the resulting priority, ttl (for a native
    /// request and for a lock taken for Atlantis), max-ttl, wait and max-queue-size.
    ///
    /// Example: elock policy explain acme/infra/envs/prod/default/
    ///          elock policy explain acme/infra/envs/prod/default/ --config /etc/elock/elock.yaml
    Explain {
        /// The resource, e.g. acme/infra/envs/prod/default/.
        resource: String,
        /// Read the rules from this configuration file (and the ATLANTIS_ENHANCED_LOCKING_*
        /// variables) instead of asking the server.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The rules of a configuration file, as the server would load them.
pub fn offline(file: &Path) -> Result<elock_core::config::EngineConfig, CliError> {
    let overrides = config::env_overrides(&|v| std::env::var(v).ok());
    config::load(Some(file), &overrides)
        .map(|c| c.engine())
        .map_err(|errors| CliError::usage(format!("configuration: {}", errors.join("; "))))
}

/// A resource's explanation from the file, when one is given, else from the server.
pub async fn explanation(
    client: Option<&Client>,
    file: Option<&Path>,
    resource: &str,
) -> Result<Explanation, CliError> {
    match (file, client) {
        (Some(file), _) => {
            let engine = offline(file)?;
            let name = ResourceName::new(resource).map_err(|e| CliError::usage(e.to_string()))?;
            Ok(engine.policies.explain(&name, engine.policy_fallback()))
        }
        (None, Some(client)) => Ok(client.policy(resource).await?),
        (None, None) => Err(CliError::usage("give --config FILE or a server")),
    }
}

pub async fn explain(
    client: Option<&Client>,
    file: Option<&Path>,
    resource: &str,
    out: Format,
) -> Result<(), CliError> {
    let e = explanation(client, file, resource).await?;
    match out {
        Format::Json => output::json(&e),
        Format::Table => {
            let ttl = |d: Option<std::time::Duration>| d.map_or("never".into(), format_duration);
            let rule = match (&e.rule_index, &e.rule) {
                (Some(i), Some(r)) => format!("policies[{i}] (match: {})", r.pattern),
                _ => "none (the server's defaults)".into(),
            };
            let rows = vec![
                vec!["resource".into(), e.resource.to_string()],
                vec!["rule".into(), rule],
                vec!["priority".into(), e.priority.to_string()],
                vec!["ttl".into(), ttl(e.ttl)],
                vec!["ttl (Atlantis locks)".into(), ttl(e.atlantis_ttl)],
                vec![
                    "max-ttl".into(),
                    e.max_ttl.map_or("-".into(), format_duration),
                ],
                vec!["wait".into(), format_duration(e.wait)],
                vec!["max-queue-size".into(), e.max_queue_size.to_string()],
            ];
            output::table(&["", ""], &rows);
        }
    }
    Ok(())
}
