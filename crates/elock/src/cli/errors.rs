//! How a command fails: its message, its exit code (derived from the server's typed error code,
//! never from text), and the server's error body for `--output json`.

use elock_client::api::{ErrorBody, ErrorCode};

/// Documented exit codes (docs/cli.md).
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    /// Not granted: locked, or the wait ran out.
    pub const NOT_GRANTED: i32 = 2;
    /// Chosen as a deadlock victim (or refused because the request would close a cycle).
    pub const DEADLOCK: i32 = 3;
    pub const UNREACHABLE: i32 = 4;
}

#[derive(Debug)]
pub struct CliError {
    pub exit: i32,
    pub message: String,
    /// The server's error body, for `--output json`.
    pub body: Option<Box<ErrorBody>>,
}

impl CliError {
    /// A mistake in the command line or in a file it names.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            exit: exit::ERROR,
            message: message.into(),
            body: None,
        }
    }
}

/// The exit code of a client error.
pub fn exit_code(e: &elock_client::Error) -> i32 {
    match e.code() {
        Some(ErrorCode::Locked | ErrorCode::WaitTimeout) => exit::NOT_GRANTED,
        Some(ErrorCode::Deadlock) => exit::DEADLOCK,
        // Ask again later or elsewhere: as good as unreachable for a script.
        Some(ErrorCode::ShuttingDown) => exit::UNREACHABLE,
        Some(_) => exit::ERROR,
        None if e.is_unreachable() => exit::UNREACHABLE,
        None => exit::ERROR,
    }
}

impl From<elock_client::Error> for CliError {
    fn from(e: elock_client::Error) -> Self {
        let message = if e.is_unreachable() {
            format!("{e} (start it with `elock serve`, or set --server / ELOCK_SERVER)")
        } else {
            e.to_string()
        };
        CliError {
            exit: exit_code(&e),
            message,
            body: e.body().map(Box::new),
        }
    }
}
