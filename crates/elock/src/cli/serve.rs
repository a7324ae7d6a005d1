//! `elock serve` and `elock config`: the server's side of the command line.

use std::path::PathBuf;

use clap::Subcommand;

use super::errors::exit;
use super::output::say;
use crate::config::{self, Config, Override};
use crate::server::{self, ServeOptions};

/// The server's configuration sources (names kept from the enhanced locking system).
#[derive(clap::Args, Debug, Clone)]
pub struct ServerFlags {
    /// The YAML configuration file.
    #[arg(long, env = "ELOCK_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the first line printed says which).
    #[arg(long)]
    listen: Option<String>,
    /// Where the embedded store keeps its data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// embedded (alias boltdb), memory, or redis.
    #[arg(long)]
    backend: Option<String>,
    /// false: Atlantis-compatible behaviour only (try-lock, no queue, no expiry, no priority).
    #[arg(long, value_name = "BOOL")]
    enhanced_locking_enabled: Option<String>,
    /// Let native requests ask for leases without expiry (`ttl: null`); locks taken through the
    /// Atlantis adapter never expire whatever this says.
    #[arg(long, value_name = "BOOL")]
    enhanced_locking_allow_no_expiry: Option<String>,
    /// The same as --backend (the enhanced locking system's name).
    #[arg(long, value_name = "BACKEND")]
    enhanced_locking_backend: Option<String>,
    /// Redis addresses (comma-separated; several for a Cluster with redis.cluster-mode).
    #[arg(long, value_name = "HOST:PORT,...")]
    enhanced_locking_redis_addr: Option<String>,
    /// The Redis password (prefer redis.password-env in the file: flags show in `ps`).
    #[arg(long, value_name = "PASSWORD")]
    enhanced_locking_redis_password: Option<String>,
    /// The Redis database number (0 on a Cluster).
    #[arg(long, value_name = "N")]
    enhanced_locking_redis_db: Option<String>,
    /// false: a wait becomes a retry loop (with retry on) or a refusal; no queues.
    #[arg(long, value_name = "BOOL")]
    enhanced_locking_priority_queue: Option<String>,
    /// The client's global options do not apply to the server: declared here, hidden, so that
    /// `elock serve --help` lists only what the server reads (a value given is ignored).
    #[arg(long, hide = true, global = false)]
    server: Option<String>,
    #[arg(long, hide = true, global = false)]
    token: Option<String>,
    #[arg(long, hide = true, global = false, value_enum)]
    output: Option<super::output::Format>,
    #[arg(long, hide = true, global = false)]
    cacert: Option<PathBuf>,
    #[arg(long, hide = true, global = false)]
    cert: Option<PathBuf>,
    #[arg(long, hide = true, global = false)]
    key: Option<PathBuf>,
    /// Retry attempts (0 turns retry off), or true/false.
    #[arg(long, value_name = "N")]
    enhanced_locking_retries: Option<String>,
    /// false: no /metrics.
    #[arg(long, value_name = "BOOL")]
    enhanced_locking_metrics: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key-file); read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    tls_cert_file: Option<String>,
    /// The PEM private key of --tls-cert-file.
    #[arg(long, value_name = "FILE")]
    tls_key_file: Option<String>,
    /// Ask every client for a certificate signed by this PEM CA (mutual TLS; see auth.clients).
    #[arg(long, value_name = "FILE")]
    tls_client_ca_file: Option<String>,
}

impl ServerFlags {
    /// The flag values as configuration overrides.
    pub fn overrides(&self) -> Vec<Override> {
        let data_dir = self.data_dir.as_ref().map(|d| d.display().to_string());
        let pairs: [(&'static str, &Option<String>, &str); 15] = [
            ("tls.cert-file", &self.tls_cert_file, "--tls-cert-file"),
            ("tls.key-file", &self.tls_key_file, "--tls-key-file"),
            (
                "tls.client-ca-file",
                &self.tls_client_ca_file,
                "--tls-client-ca-file",
            ),
            (
                "enhanced-locking.allow-no-expiry",
                &self.enhanced_locking_allow_no_expiry,
                "--enhanced-locking-allow-no-expiry",
            ),
            ("enhanced-locking.listen", &self.listen, "--listen"),
            ("enhanced-locking.data-dir", &data_dir, "--data-dir"),
            ("enhanced-locking.backend", &self.backend, "--backend"),
            (
                "enhanced-locking.enabled",
                &self.enhanced_locking_enabled,
                "--enhanced-locking-enabled",
            ),
            (
                "enhanced-locking.backend",
                &self.enhanced_locking_backend,
                "--enhanced-locking-backend",
            ),
            (
                "redis.addresses",
                &self.enhanced_locking_redis_addr,
                "--enhanced-locking-redis-addr",
            ),
            (
                "redis.password",
                &self.enhanced_locking_redis_password,
                "--enhanced-locking-redis-password",
            ),
            (
                "redis.db",
                &self.enhanced_locking_redis_db,
                "--enhanced-locking-redis-db",
            ),
            (
                "priority-queue.enabled",
                &self.enhanced_locking_priority_queue,
                "--enhanced-locking-priority-queue",
            ),
            (
                "retry",
                &self.enhanced_locking_retries,
                "--enhanced-locking-retries",
            ),
            (
                "metrics.enabled",
                &self.enhanced_locking_metrics,
                "--enhanced-locking-metrics",
            ),
        ];
        pairs
            .into_iter()
            .filter_map(|(key, v, flag)| {
                v.as_ref()
                    .map(|v| config::text_override(key, v, flag.to_string()))
            })
            .flatten()
            .collect()
    }

    /// Loads the effective configuration (file, environment, flags).
    pub fn load(&self) -> Result<Config, config::ConfigErrors> {
        config::load_from_environment(self.config.as_deref(), &self.overrides())
    }
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a configuration file with the environment as the server would read them: every
    /// unknown key or variable and every bad value, each with its source and line. Exit 0 when
    /// valid.
    Validate {
        /// The YAML configuration file.
        file: PathBuf,
    },
    /// The effective configuration (file, environment, flags), secrets redacted: YAML, or JSON
    /// with --output json.
    Show(ServerFlags),
}

pub async fn serve(flags: ServerFlags) -> i32 {
    init_logging();
    let config = match flags.load() {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("elock serve: configuration: {e}");
            }
            return exit::ERROR;
        }
    };
    let opts = ServeOptions {
        config,
        file: flags.config.clone(),
        flags: flags.overrides(),
    };
    match server::serve(opts).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("elock serve: {e}");
            exit::ERROR
        }
    }
}

pub fn config_command(c: ConfigCommand, out: super::output::Format) -> i32 {
    let result = match &c {
        ConfigCommand::Validate { file } => config::load_from_environment(Some(file), &[]),
        ConfigCommand::Show(flags) => flags.load(),
    };
    match (result, c) {
        (Ok(_), ConfigCommand::Validate { file }) => {
            say!("{}: valid", file.display());
            exit::OK
        }
        (Ok(config), ConfigCommand::Show(_)) => {
            match out {
                super::output::Format::Json => super::output::json(&config.redacted()),
                super::output::Format::Table => say!(
                    "{}",
                    serde_yaml_ng::to_string(&config.redacted())
                        .unwrap_or_default()
                        .trim_end()
                ),
            }
            exit::OK
        }
        (Err(errors), _) => {
            for e in errors {
                eprintln!("elock config: {e}");
            }
            exit::ERROR
        }
    }
}

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("ELOCK_LOG").unwrap_or_else(|_| "info".into());
    // Colours only for a person at a terminal: a log file or journald gets plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("ELOCK_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
