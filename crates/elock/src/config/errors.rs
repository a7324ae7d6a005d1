//! What can be wrong with a configuration: each problem names the setting, its value, where the
//! value came from and what was expected.

use std::fmt;
use std::path::PathBuf;

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The built-in default (nobody set it).
    Default,
    /// The YAML file, at a line (the setting's, or its section's when the setting is absent).
    File(PathBuf, Option<usize>),
    /// An environment variable or a flag, by name (`ATLANTIS_ENHANCED_LOCKING_...`, `--listen`).
    Override(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => Ok(()),
            Source::File(path, None) => write!(f, " (in {})", path.display()),
            Source::File(path, Some(line)) => write!(f, " (in {}, line {line})", path.display()),
            Source::Override(name) => write!(f, " (from {name})"),
        }
    }
}

/// One problem with the configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {message}", path.display())]
    Unreadable { path: PathBuf, message: String },
    /// Not YAML, or not a mapping of sections; `message` says where.
    #[error("{}: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
    /// A setting: `key = value: expected (from where)`.
    #[error("{key}{}: {expected}{origin}", value.as_ref().map(|v| format!(" = {v}")).unwrap_or_default())]
    Setting {
        /// Dotted, as in the file: `priority-queue.max-queue-size`.
        key: String,
        /// The value as given (JSON text), when there is one.
        value: Option<String>,
        /// Where the value came from.
        origin: Source,
        /// What was expected, or what is wrong with it.
        expected: String,
    },
}

/// Every problem found, in the order found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems as text, one per line.
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    pub fn join(&self, separator: &str) -> String {
        self.lines().join(separator)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join("; "))
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
