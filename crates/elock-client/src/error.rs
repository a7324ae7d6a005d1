//! The client's one error type: what the server refused (with its typed code and details), or
//! why no answer came.

use elock_core::api::{ErrorBody, ErrorCode, ErrorDetails};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error: its code, message and details (docs/api.md).
    #[error("{}: {message}", code.as_str())]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
        details: Box<ErrorDetails>,
    },
    /// No answer: the connection failed, was cut, or the request timed out.
    #[error("cannot reach the elock server at {server}: {source}")]
    Unreachable {
        server: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not what the API promises (a proxy's page, another program on the port).
    #[error("unexpected answer from {server} (HTTP {status}): {message}")]
    Protocol {
        server: String,
        status: u16,
        message: String,
    },
    /// Refused before sending: a bad server address or argument.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The server's error code, when it answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The server's details (`field`, `holder`, `cycle`, ...), when it answered with an error.
    pub fn details(&self) -> Option<&ErrorDetails> {
        match self {
            Error::Api { details, .. } => Some(details),
            _ => None,
        }
    }

    /// Not granted: the resource is held (`locked`) or the wait ran out (`wait_timeout`).
    pub fn is_not_granted(&self) -> bool {
        matches!(
            self.code(),
            Some(ErrorCode::Locked | ErrorCode::WaitTimeout)
        )
    }

    /// The server could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    /// The error body as the server sent it (for `--output json`).
    pub fn body(&self) -> Option<ErrorBody> {
        match self {
            Error::Api {
                code,
                message,
                details,
                ..
            } => Some(ErrorBody::new(*code, message.clone(), (**details).clone())),
            _ => None,
        }
    }

    pub(crate) fn from_body(status: u16, body: ErrorBody) -> Self {
        Error::Api {
            status,
            code: body.error.code,
            message: body.error.message,
            details: Box::new(body.error.details),
        }
    }
}
