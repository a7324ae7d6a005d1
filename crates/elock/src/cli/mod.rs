//! The command line: arguments and dispatch. Each command group lives in its own file:
//! [`serve`] (server and configuration), [`locks`] (lock, unlock, renew, list), [`inspect`]
//! (status, queues, deadlocks, health, events), [`admin`] (force-unlock, cleanup, export,
//! import), [`run`], [`bench`], [`atlantis`], [`compat`] and [`migrate`]. Every client command
//! talks to the server through `elock-client`; exit codes come from its typed errors
//! ([`errors`]).

mod admin;
mod atlantis;
mod atlantis_run;
mod bench;
mod compat;
mod errors;
mod inspect;
mod locks;
mod migrate;
mod output;
mod policy;
mod progress;
mod run;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use elock_client::{Client, TlsOptions};

use atlantis::AtlantisCommand;
use errors::{exit, CliError};
use output::Format;
use serve::{ConfigCommand, ServerFlags};

/// Exit codes of every command but `elock run` (its own table: `elock run --help`).
const EXIT_CODES: &str = "\
Exit codes (every command but `elock run`, which has its own: elock run --help):
  0   ok
  1   error (a refusal of the server, a bad value, a file that cannot be read)
  2   not granted: locked, or the wait ran out
  3   deadlock
  4   the server cannot be reached, or is shutting down
  64  usage error (an unknown command or flag, a missing argument)";

/// Where the client's global options are listed in every command's help, apart from the
/// command's own (`elock serve` does not use them).
const CLIENT: &str = "Client options (every command but serve)";

/// elock: exclusive, fenced, expiring locks with priority queues, for infrastructure automation.
///
/// `elock serve` runs the server; every other command talks to one over HTTP.
#[derive(Parser, Debug)]
#[command(name = "elock", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Args {
    /// The elock server to talk to (http://HOST:PORT, or HOST:PORT).
    #[arg(
        long,
        global = true,
        env = "ELOCK_SERVER",
        default_value = "http://127.0.0.1:4142",
        help_heading = CLIENT
    )]
    server: String,
    /// API token (sent as a bearer token).
    #[arg(
        long,
        global = true,
        env = "ELOCK_TOKEN",
        hide_env_values = true,
        help_heading = CLIENT
    )]
    token: Option<String>,
    /// Trust only the certificate authorities in this PEM file for an https:// server.
    #[arg(long, global = true, env = "ELOCK_CACERT", value_name = "FILE", help_heading = CLIENT)]
    cacert: Option<std::path::PathBuf>,
    /// A client certificate (PEM) for servers that ask for one (mutual TLS); with --key.
    #[arg(long, global = true, env = "ELOCK_CERT", value_name = "FILE", help_heading = CLIENT)]
    cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, global = true, env = "ELOCK_KEY", value_name = "FILE", help_heading = CLIENT)]
    key: Option<std::path::PathBuf>,
    /// Tables for people, JSON for scripts.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "table",
        help_heading = CLIENT
    )]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the lock server (the embedded durable store by default).
    ///
    /// Configuration: defaults, then the YAML file, then ATLANTIS_ENHANCED_LOCKING_* variables,
    /// then flags. SIGHUP (or POST /api/v1/admin/reload) reloads what can change live.
    /// SIGTERM or SIGINT stops it cleanly within seconds.
    ///
    /// Logs go to stderr: plain text, coloured on a terminal; ELOCK_LOG sets the level (info;
    /// e.g. ELOCK_LOG=debug or elock=debug,tower_http=warn), ELOCK_LOG_FORMAT=json one JSON
    /// object a line.
    Serve(ServerFlags),
    /// Check or show the server configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Lock policies (enhanced-locking.policies): which rule covers a resource.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Take a lock on one or more resources (all or none); prints the lease id and fencing tokens.
    ///
    /// Example: elock lock acme/infra/envs/prod/default/ --owner 'acme/infra#42' --wait 10m
    Lock(locks::LockArgs),
    /// Hold a lock while a command runs; the child gets ELOCK_LEASE_ID and ELOCK_FENCING_TOKEN.
    ///
    /// Each run is its own holder (two runs with the same --owner exclude each other). The lease
    /// is renewed at a third of its ttl and the event stream followed; if the lease is lost the
    /// command hears it within a second (TERM, then KILL after --kill-after); the lock is
    /// released when the command ends or on Ctrl-C; the command's exit code is passed on.
    ///
    /// Example: elock run acme/infra/envs/prod/default/ --wait 10m -- terraform apply plan.tfplan
    Run(run::RunArgs),
    /// Release a lease by id, or the lease holding a resource, or every lease of an owner or
    /// of an Atlantis pull request.
    ///
    /// Example: elock unlock --pull acme/infra#42
    Unlock(locks::UnlockArgs),
    /// Show or cancel a ticket (a place in a queue, from `elock lock --detach`).
    #[command(subcommand)]
    Ticket(locks::TicketCommand),
    /// Extend a lease: it expires `ttl` from now (its own ttl if none is given).
    Renew {
        /// The lease id (it may begin with `-`).
        #[arg(allow_hyphen_values = true)]
        lease_id: String,
        /// The new lifetime from now (30s, 10m, 2h); default: the lease's own ttl.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List held leases.
    List(locks::ListArgs),
    /// Health, backend, breaker and statistics.
    Status,
    /// The queues (all non-empty ones, or one resource's).
    QueueStatus {
        /// Only this resource's queue.
        resource: Option<String>,
    },
    /// Deadlocks now, and with --history the last 1,000.
    DeadlockStatus {
        /// Also the deadlocks resolved before (the last 1,000).
        #[arg(long)]
        history: bool,
    },
    /// Release whatever holds RESOURCE (admin).
    ForceUnlock {
        /// The resource whose holder is released (the whole lease goes).
        resource: String,
        /// Why: the holder hears it in its lock.force_released event (and `elock run` prints it).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Read the audit trail (admin): who took, released and force-released what.
    ///
    /// One line per mutating call, oldest first: time, the token or certificate that made it,
    /// the operation, status, owner, resources, and for a force-release the former holder and
    /// the reason. `--output json` prints the records as the API returns them.
    Audit {
        /// From this time on: RFC 3339 (2026-12-08T10:00:00Z) or how long ago (10m, 2h, 1d).
        #[arg(long, value_name = "TIME|DURATION")]
        since: Option<String>,
        /// Only calls that touched a resource under this prefix.
        #[arg(long, value_name = "PREFIX")]
        resource: Option<String>,
        /// Only calls on this owner's leases and tickets (or force-releases of them).
        #[arg(long)]
        owner: Option<String>,
        /// At most this many records, the newest (1 to 10000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Release expired leases, or by force the holder of one resource (admin).
    Cleanup {
        /// Release the leases past their expiry that the server has not reaped yet.
        #[arg(long, conflicts_with_all = ["resource", "force"])]
        expired_only: bool,
        /// Release the holder of this resource (with --force).
        #[arg(long, requires = "force")]
        resource: Option<String>,
        /// Confirms a release by force.
        #[arg(long)]
        force: bool,
    },
    /// Every lease, ticket and fencing counter as JSON, to FILE or standard output (admin).
    Export {
        /// Where to write (default: standard output).
        file: Option<PathBuf>,
        /// Keep credentials found in lease metadata (Atlantis clone URLs imported with
        /// --include-secrets); they are left out by default.
        #[arg(long)]
        include_secrets: bool,
    },
    /// Add the leases and tickets of an export that do not conflict (admin); importing twice
    /// changes nothing.
    Import {
        /// A file `elock export` wrote.
        file: PathBuf,
    },
    /// Follow the event stream (Ctrl-C to stop).
    Events {
        /// Comma-separated event types, e.g. lock.acquired,queue.granted.
        #[arg(long)]
        types: Option<String>,
    },
    /// Exit 0 when the server is healthy or degraded, non-zero otherwise (probes, cron).
    HealthCheck,
    /// Atlantis's data: import its bbolt file.
    #[command(subcommand)]
    Atlantis(AtlantisCommand),
    /// Run Atlantis's lock conformance list against a live server: PASS or FAIL per case.
    ///
    /// The cases use their own repository names, but take and release the server's global
    /// apply lock: point it at a test server, not one an Atlantis is using. Exit 0 when every
    /// case passes, 1 otherwise.
    ///
    /// Example: elock compat-test --server http://127.0.0.1:4142
    CompatTest,
    /// Compare the Atlantis locks of the legacy store with elock's: every lock only in one, or
    /// held by a different pull, or with different details. Exit 0 when identical, 1 otherwise.
    ///
    /// Example: elock compare-backends --legacy-boltdb /var/lib/atlantis/atlantis.db
    CompareBackends(migrate::LegacySource),
    /// Check that the legacy store and elock together obey the server's migration mode: no
    /// lock held twice by different pulls; in shadow, every legacy lock mirrored; in split,
    /// each lock where its key routes; in enhanced, nothing left only in the legacy store.
    /// Exit 0 when consistent, 1 otherwise.
    ///
    /// Example: elock validate-consistency --legacy-redis 127.0.0.1:6379
    ValidateConsistency(migrate::LegacySource),
    /// Shell completions for bash, zsh, fish, elvish or powershell, on standard output.
    ///
    /// Example: elock completions bash > /etc/bash_completion.d/elock
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The manual page (roff), on standard output; with --dir, one page per command in DIR.
    ///
    /// Example: elock man | man -l -
    Man {
        /// Write elock.1 and elock-COMMAND.1 for every command into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Load generator: ops/s and p50/p95/p99/max per scenario, with a /healthz baseline.
    ///
    /// Example: elock bench --scenario baseline --scenario uncontended --concurrency 50 --duration 10s
    Bench(bench::BenchFlags),
}

/// Runs one command line; the process's exit code.
pub async fn run(args: Args) -> i32 {
    let out = args.output;
    let result = match args.command {
        Command::Serve(flags) => return serve::serve(flags).await,
        Command::Config(c) => return serve::config_command(c, out),
        Command::Completions { shell } => {
            let mut cmd = <Args as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "elock", &mut script);
            output::bytes(&script)
                .map_err(|e| CliError::usage(format!("cannot write the completions: {e}")))
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Atlantis(AtlantisCommand::Validate {
            file,
            max_timeout,
            repo,
        }) => atlantis::validate(&file, &max_timeout, repo.as_deref(), out),
        Command::Policy(policy::PolicyCommand::Explain {
            resource,
            config: Some(file),
        }) => policy::explain(None, Some(&file), &resource, out).await,
        Command::Atlantis(AtlantisCommand::Locks {
            file,
            repo,
            pull,
            config: Some(config),
        }) => atlantis::locks(None, &file, &repo, pull, Some(&config), out).await,
        command => match client(
            &args.server,
            args.token,
            TlsOptions {
                ca_file: args.cacert,
                cert_file: args.cert,
                key_file: args.key,
            },
        ) {
            Ok(client) => match command {
                Command::Run(a) => {
                    return match run::run(&client, a).await {
                        Ok(code) => code,
                        Err(e) => {
                            eprintln!("elock run: {}", e.message);
                            e.exit
                        }
                    }
                }
                Command::Atlantis(AtlantisCommand::Run(a)) => {
                    return match atlantis_run::run(&client, a).await {
                        Ok(code) => code,
                        Err(e) => {
                            eprintln!("elock run: {}", e.message);
                            e.exit
                        }
                    }
                }
                command => dispatch(&client, command, out).await,
            },
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            match (&e.body, out) {
                (Some(body), Format::Json) => output::json(body),
                _ => eprintln!("elock: {}", e.message),
            }
            e.exit
        }
    }
}

/// `elock man`: the pages, generated from the same definitions as `--help`.
fn man(dir: Option<&std::path::Path>) -> Result<(), CliError> {
    let cmd = <Args as clap::CommandFactory>::command();
    let write = |e: std::io::Error| CliError::usage(format!("cannot write the manual page: {e}"));
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(write)?;
            output::bytes(&page).map_err(write)
        }
        Some(dir) => clap_mangen::generate_to(cmd, dir).map_err(write),
    }
}

fn client(server: &str, token: Option<String>, tls: TlsOptions) -> Result<Client, CliError> {
    let mut b = Client::builder(server).tls(tls);
    if let Some(t) = token {
        b = b.token(t);
    }
    b.build()
        .map_err(|e| CliError::usage(format!("--server / ELOCK_SERVER: {e}")))
}

/// The client commands.
async fn dispatch(client: &Client, command: Command, out: Format) -> Result<(), CliError> {
    match command {
        Command::Serve(_)
        | Command::Config(_)
        | Command::Run(_)
        | Command::Completions { .. }
        | Command::Man { .. } => {
            unreachable!("run handles these")
        }
        Command::Lock(a) => locks::lock(client, a, out).await,
        Command::Policy(policy::PolicyCommand::Explain { resource, config }) => {
            policy::explain(Some(client), config.as_deref(), &resource, out).await
        }
        Command::Unlock(a) => locks::unlock(client, a, out).await,
        Command::Ticket(c) => locks::ticket(client, c, out).await,
        Command::Renew { lease_id, ttl } => {
            locks::renew(client, &lease_id, ttl.as_deref(), out).await
        }
        Command::List(a) => locks::list(client, a, out).await,
        Command::Status => inspect::status(client, out).await,
        Command::QueueStatus { resource } => inspect::queue_status(client, resource, out).await,
        Command::DeadlockStatus { history } => inspect::deadlock_status(client, history, out).await,
        Command::HealthCheck => inspect::health_check(client, out).await,
        Command::Events { types } => inspect::events(client, types, out).await,
        Command::ForceUnlock { resource, reason } => {
            admin::force_unlock(client, &resource, reason.as_deref(), out).await
        }
        Command::Cleanup {
            expired_only,
            resource,
            force,
        } => admin::cleanup(client, expired_only, resource, force, out).await,
        Command::Audit {
            since,
            resource,
            owner,
            limit,
        } => admin::audit(client, since.as_deref(), resource, owner, limit, out).await,
        Command::Export {
            file,
            include_secrets,
        } => admin::export(client, file, include_secrets).await,
        Command::Import { file } => admin::import(client, &file, out).await,
        Command::CompatTest => compat::run(client, out).await,
        Command::CompareBackends(src) => migrate::compare_backends(client, &src, out).await,
        Command::ValidateConsistency(src) => migrate::validate_consistency(client, &src, out).await,
        Command::Atlantis(c) => atlantis::run(client, c, out).await,
        Command::Bench(flags) => bench::run(client, flags, out).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is for.
    #[test]
    fn every_option_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                if a.is_hide_set() || a.get_id() == "help" || a.get_id() == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Args::command(), "elock", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:#?}");
    }
}
